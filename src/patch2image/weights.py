"""Network weights as safetensors with JSON metadata; never pickle.

A weights file names its network and carries what inference needs: the input scale, the
pre-processing and, for shipped models, the test metrics. Shipped models live in
``patch2image/pretrained/NAME.safetensors`` and are addressed by NAME.
"""

import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from patch2image.errors import UserError
from patch2image.files import atomic_write
from patch2image.networks import create_network

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
_KEY = "patch2image"


def save_weights(path: str | Path, network: nn.Module, metadata: dict) -> None:
    """Write the network's state (parameters and BatchNorm statistics) and ``metadata`` atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}
    write_safetensors(path, tensors, {_KEY: json.dumps(metadata)})


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically; a full disk is a ``UserError`` naming ``path``, the old file kept."""
    with atomic_write(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as exc:
            # safetensors reports I/O failures as its own error, "... No space left on device (os error 28) ...":
            # make it the OSError it is, which atomic_write turns into one line.
            code = re.search(r"os error (\d+)", str(exc))
            if code:
                raise OSError(int(code[1]), os.strerror(int(code[1]))) from exc
            raise OSError(str(exc)) from exc


def read_safetensors(path: str | Path, device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and raw string metadata of a safetensors file, reading it once."""
    with safe_open(str(path), framework="pt", device=device) as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}, handle.metadata() or {}


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a safetensors file; anything else is refused with a clear message."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: a folder, not a weights file")
    if not path.is_file():
        raise UserError(f"{path}: no such weights file")
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head[:1] == b"\x80" or head == b"PK":
        raise UserError(f"{path}: a pickle checkpoint; patch2image loads weights only from safetensors")
    try:
        tensors, raw = read_safetensors(path)
        metadata = json.loads(raw.get(_KEY, "{}"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable safetensors file ({exc})") from None
    return tensors, metadata


def resolve_weights(name_or_path: str | Path) -> Path:
    """A shipped model's name (see ``patch2image models``) or a path to a weights file."""
    shipped = PRETRAINED_DIR / f"{name_or_path}.safetensors"
    return shipped if shipped.is_file() else Path(name_or_path)


def load_model(name_or_path: str | Path, network: str | None = None) -> tuple[nn.Module, dict]:
    """Build the network the weights name (or ``network``) and load the weights into it, in eval mode.

    The metadata may name only a registered network: a user's ``module:Class`` is imported when the
    caller passes it as ``network``, so that a weights file from elsewhere cannot make us import code.
    """
    path = resolve_weights(name_or_path)
    tensors, metadata = read_weights(path)
    network_name = network or metadata.get("network")
    if not network_name:
        raise UserError(f"{path}: the metadata names no network; pass it with --network")
    if not network and ":" in network_name:
        raise UserError(
            f"{path}: the metadata names the user network {network_name!r}; pass --network {network_name} to import it"
        )
    try:
        model = create_network(network_name)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    load_state(model, tensors, f"{path}")
    return model.eval(), metadata


def load_state(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load tensors into a model, naming the mismatch when they belong to another network."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = (missing and f"missing {missing[0]}") or (unexpected and f"unexpected {unexpected[0]}")
        detail = detail or f"{wrong[0]} has shape {tuple(tensors[wrong[0]].shape)}"
        raise UserError(f"{source}: weights do not fit the network {type(model).__name__} ({detail})")
    model.load_state_dict(tensors)


def shipped_models() -> list[tuple[str, dict]]:
    """(name, metadata) of every model shipped with the package."""
    return [(p.stem, read_weights(p)[1]) for p in sorted(PRETRAINED_DIR.glob("*.safetensors"))]
