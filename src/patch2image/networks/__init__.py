"""Network registry: the paper's three FCNs by name, and any user FCN by import path.

Every network takes a batch of pre-processed images (N, C, H, W) and returns logits (N, 1, H, W); C
is its ``in_channels``, 1 (grey, the default) or 3 (``preprocessing.channel: rgb``, passed by the
configuration). The sigmoid is applied by the loss and by inference, which keeps training numerically
stable in bfloat16. H and W must be multiples of the network's ``size_divisor`` attribute (4 when it has none:
the paper's networks halve twice); padding, tiling and export read it with :func:`size_divisor`.

The registry names each network's class by its import path, imported when a network is built: a run
that segments with OpenVINO or onnxruntime never imports PyTorch (a second of start-up).
"""

import importlib
from typing import TYPE_CHECKING

from patch2image.errors import UserError

if TYPE_CHECKING:
    from torch import nn

NETWORKS: dict[str, str] = {
    "light": "patch2image.networks.light:Light",
    "mini-unet": "patch2image.networks.mini_unet:MiniUnet",
    "dense": "patch2image.networks.dense:Dense",
}
"""Every registered network (``module:Class``), in the paper's order (reports list them so)."""
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


ARGUMENT_RANGES = {"in_channels": (1, 4), "width": (1, 64), "growth": (0, 32)}
"""The registered networks' constructor arguments: whole numbers within these bounds (inclusive)."""
MAX_PARAMETERS = 100_000_000
"""Networks with more parameters are refused before any is allocated (Dense has 1,032,588)."""


def network_class(name: str) -> "type[nn.Module]":
    """The class ``name`` stands for: a registered network, or a user's ``module:Class`` once imported.

    Refuses anything that is not a ``torch.nn.Module`` subclass before it is called: a ``module:function``
    in a configuration must not run.
    """
    from torch import nn

    path = NETWORKS.get(name, name) if isinstance(name, str) else name
    if not isinstance(path, str) or ":" not in path:
        raise UserError(f"network {name!r}: unknown; choose one of {', '.join(NETWORKS)} or give module:Class")
    module_name, _, class_name = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UserError(f"network {name!r}: cannot import ({exc})") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        what = "another class" if isinstance(cls, type) else f"a {type(cls).__name__}"
        raise UserError(f"network {name!r}: {class_name} is not a torch.nn.Module subclass (it is {what}); not called")
    return cls


def check_arguments(name: str, kwargs: dict) -> None:
    """A registered network's arguments: known names, whole numbers within :data:`ARGUMENT_RANGES`."""
    if name not in NETWORKS:
        return  # a user network's constructor checks its own
    for key, value in kwargs.items():
        if key not in ARGUMENT_RANGES:
            continue  # the constructor names an unknown argument itself
        low, high = ARGUMENT_RANGES[key]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise UserError(f"network {name!r}: {key} must be a whole number from {low} to {high}, got {value!r}")


def create_network(name: str, **kwargs) -> "nn.Module":
    """Build a registered network (``light``, ``mini-unet``, ``dense``) or a user's ``module:Class``.

    ``kwargs`` go to the network's constructor (``create_network("dense", width=12)``), as a
    configuration's ``network_args`` does. The class and the arguments are checked, and the network is
    built first on PyTorch's meta device (no memory) to count its parameters: one over ``MAX_PARAMETERS``
    is refused before anything is allocated.
    """
    planned_network(name, **kwargs)
    return _construct(name, network_class(name), kwargs)


def planned_network(name: str, **kwargs) -> "nn.Module":
    """The network ``name`` and ``kwargs`` describe, built on the meta device: its shapes, without memory.

    Raises
    ------
    UserError
        Not a network, arguments of the wrong type or range, or more than ``MAX_PARAMETERS`` parameters.
    """
    import torch

    cls = network_class(name)
    check_arguments(name, kwargs)
    with torch.device("meta"):
        network = _construct(name, cls, kwargs)
    count = sum(p.numel() for p in network.parameters())
    if count > MAX_PARAMETERS:
        raise UserError(
            f"network {name!r}: {kwargs or 'its arguments'} give {count:,} parameters, over the limit of "
            f"{MAX_PARAMETERS:,}"
        )
    return network


def _construct(name: str, cls: "type[nn.Module]", kwargs: dict) -> "nn.Module":
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"network {name!r}: {exc}") from None


def count_parameters(network: "nn.Module") -> int:
    """Trainable parameters; BatchNorm running statistics are buffers and do not count."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad)
