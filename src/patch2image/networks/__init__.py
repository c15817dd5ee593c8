"""Network registry: the paper's three FCNs by name, and any user FCN by import path.

Every network takes a batch of pre-processed images (N, C, H, W) and returns logits (N, 1, H, W); C
is its ``in_channels``, 1 (grey, the default) or 3 (``preprocessing.channel: rgb``, passed by the
configuration). The sigmoid is applied by the loss and by inference, which keeps training numerically
stable in bfloat16. H and W must be multiples of the network's ``size_divisor`` attribute (4 when it has none:
the paper's networks halve twice); padding, tiling and export read it with :func:`size_divisor`.
"""

import importlib

from torch import nn

from patch2image.errors import UserError
from patch2image.networks.dense import Dense
from patch2image.networks.light import Light
from patch2image.networks.mini_unet import MiniUnet

NETWORKS: dict[str, type[nn.Module]] = {"light": Light, "mini-unet": MiniUnet, "dense": Dense}
"""Every registered network, in the paper's order (reports list them so)."""
NETWORK_LABELS = {"light": "Light", "mini-unet": "Mini-Unet", "dense": "Dense"}
"""Each registered network's name in reports and tables."""


def with_input_channels(network_args: dict, channels: int) -> dict:
    """A network's constructor arguments, ``in_channels`` taken from the pre-processing's ``channels``.

    The channel count lives in one place, the pre-processing (``channel: rgb`` gives 3); ``in_channels``
    is left out for one channel, the networks' default, so that user networks without that argument work.
    """
    given = network_args.get("in_channels", channels)
    if given != channels:
        raise UserError(
            f"network_args.in_channels: {given!r}, but the pre-processing gives {channels} channel(s); leave it out"
        )
    arguments = {k: v for k, v in network_args.items() if k != "in_channels"}
    return arguments | ({"in_channels": channels} if channels > 1 else {})


def network_label(network: str) -> str:
    """What reports call a network: its label, else (a user's ``module:Class``) its name."""
    return NETWORK_LABELS.get(network, network)


DEFAULT_SIZE_DIVISOR = 4


def size_divisor(network) -> int:
    """What the network's input sides must be multiples of: its ``size_divisor`` attribute, else 4."""
    return int(getattr(network, "size_divisor", DEFAULT_SIZE_DIVISOR))


def create_network(name: str, **kwargs) -> nn.Module:
    """Build a registered network (``light``, ``mini-unet``, ``dense``) or a user's ``module:Class``.

    ``kwargs`` go to the network's constructor (``create_network("dense", width=12)``), as a
    configuration's ``network_args`` does.
    """
    if name in NETWORKS:
        try:
            return NETWORKS[name](**kwargs)
        except TypeError as exc:
            raise UserError(f"network {name!r}: {exc}") from None
    if ":" not in name:
        raise UserError(f"network {name!r}: unknown; choose one of {', '.join(NETWORKS)} or give module:Class")
    module_name, _, class_name = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"network {name!r}: cannot import ({exc})") from None
    try:
        network = cls(**kwargs)
    except TypeError as exc:
        raise UserError(f"network {name!r}: {exc}") from None
    if not isinstance(network, nn.Module):
        raise UserError(f"network {name!r}: {class_name} is not a torch.nn.Module")
    return network


def count_parameters(network: nn.Module) -> int:
    """Trainable parameters; BatchNorm running statistics are buffers and do not count."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad)
