"""Numeric precision of the networks' forward passes: float32, or bfloat16 autocast.

bfloat16 halves training and inference times on processors with native bf16 (AMD EPYC here) and is
slower than float32 on others; the choice is a configuration's ``precision`` and ``segment --precision``.
"""

import contextlib

PRECISIONS = ("fp32", "bf16")
LAYOUTS = ("channels_last", "contiguous")  # PyTorch's memory formats, channels-last first


def autocast(precision: str, device="cpu"):
    """A context in which the forward pass runs at ``precision`` on ``device`` (a torch device or its name)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16":
        import torch

        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
