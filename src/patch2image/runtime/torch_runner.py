"""The PyTorch runner: a registered network (which returns logits) as a probability function."""

import copy

import numpy as np
import torch
from torch import nn

from patch2image.networks import size_divisor
from patch2image.runtime.precision import PRECISIONS, autocast


def build(source, precision: str, layout: str = "channels_last") -> "TorchProbabilities":
    """The backend registry's entry (:data:`patch2image.runtime.backends.BACKENDS`): the weights' network as a runner.

    ``source.threads``, when given, becomes PyTorch's thread count (one setting for the whole process, as
    PyTorch has). ``contiguous`` runs a copy of the network, since a module has one layout at a time and
    ``auto`` may hold both runners.
    """
    if source.threads:
        torch.set_num_threads(source.threads)
    if layout == "contiguous":
        model = copy.deepcopy(source.model).eval().to(memory_format=torch.contiguous_format)
        return TorchProbabilities(model, precision, torch.contiguous_format)
    return TorchProbabilities(source.model.eval().to(memory_format=torch.channels_last), precision)


class TorchProbabilities:
    """A logits network as a probability function: eval mode, no autograd, channels-last (by default), optional bf16."""

    def __init__(self, model: nn.Module, precision: str = "fp32", memory_format=torch.channels_last):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.model = model
        self.precision = precision
        self.memory_format = memory_format
        self.size_divisor = size_divisor(model)
        parameter = next(model.parameters(), None)
        self.device = parameter.device if parameter is not None else torch.device("cpu")

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 pre-processed images -> (N, 1, H, W) probabilities, as every runner."""
        tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        with torch.inference_mode(), autocast(self.precision, self.device):
            logits = self.model(tensor.contiguous(memory_format=self.memory_format))
        return torch.sigmoid(logits.float()).cpu().numpy()
