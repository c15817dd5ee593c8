"""Network registry: the paper's three FCNs by name, and any user FCN by import path.

Every network takes a batch of grey images (N, 1, H, W) with H and W multiples of 4 and returns
logits of the same size; the sigmoid is applied by the loss and by inference, which keeps
training numerically stable in bfloat16.
"""

import importlib

from torch import nn

from patch2image.errors import UserError
from patch2image.networks.dense import Dense
from patch2image.networks.light import Light
from patch2image.networks.mini_unet import MiniUnet

NETWORKS: dict[str, type[nn.Module]] = {"light": Light, "mini-unet": MiniUnet, "dense": Dense}


def create_network(name: str) -> nn.Module:
    """Build a registered network (``light``, ``mini-unet``, ``dense``) or a user's ``module:Class``."""
    if name in NETWORKS:
        return NETWORKS[name]()
    if ":" not in name:
        raise UserError(f"network {name!r}: unknown; choose one of {', '.join(NETWORKS)} or give module:Class")
    module_name, _, class_name = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"network {name!r}: cannot import ({exc})") from None
    network = cls()
    if not isinstance(network, nn.Module):
        raise UserError(f"network {name!r}: {class_name} is not a torch.nn.Module")
    return network


def count_parameters(network: nn.Module) -> int:
    """Trainable parameters; BatchNorm running statistics are buffers and do not count."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad)
