"""The machine a benchmark ran on, recorded beside its figures."""

import torch

from patch2image.runtime.auto import processor


def describe_machine() -> str:
    return f"{processor()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
