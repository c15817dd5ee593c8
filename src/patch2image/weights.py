"""Network weights as safetensors with JSON metadata (:class:`WeightsMetadata`); never pickle.

A weights file names its network and carries what inference needs: the input scale, the
pre-processing and, for shipped models, the test metrics. Shipped models live in
``patch2image/pretrained/NAME.safetensors`` and are addressed by NAME.
"""

import contextlib
import dataclasses
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from safetensors import SafetensorError, safe_open

from patch2image.atomic_files import atomic_write
from patch2image.errors import UserError
from patch2image.networks import create_network, planned_network, with_input_channels
from patch2image.preprocessing import preprocessing_from

if typing.TYPE_CHECKING:  # torch is imported where tensors are read or written: reading metadata needs none
    import torch
    from torch import nn

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
METADATA_KEY = "patch2image"
"""The key of the JSON metadata in a safetensors header and in an exported ONNX model's metadata_props."""
SCHEMA = 2


def _software_version() -> str:
    try:
        return version("patch2image")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class WeightsMetadata:
    """What a weights file says about its network, how it was trained and how to segment with it.

    Written by training and ``scripts/ship_model.py``; read by :class:`patch2image.inference.Segmenter`,
    ``segment``, ``evaluate`` and ``export`` (which embeds it in the ONNX model).
    """

    network: str | None = None  # a registered name, or a user's module:Class
    network_args: dict = field(default_factory=dict)  # keyword arguments of the network's constructor but
    # in_channels, which the pre-processing gives (:attr:`network_arguments`; files of before may hold it too)
    size_divisor: int = 4  # the input sides must be multiples of it
    task: str = "vessels"  # or optic_disc
    input_size: list[int] | None = None  # (height, width) the training images were resized to
    fov_diameter: float | None = None  # median field-of-view width in pixels at input_size
    max_shrink: float | None = None  # the most training shrank a photograph's field of view (original / input)
    max_zoom: float | None = None  # the largest rescaling training's augmentation taught (1: none)
    preprocessing: dict = field(default_factory=dict)  # Preprocessing's fields
    patch_size: int = 32
    threshold: float = 0.5
    protocol: str | None = None
    dataset: str | None = None  # the dataset kind it was trained on
    fold: int | None = None
    test_images: list[str] = field(default_factory=list)  # the images its metrics were measured on
    metrics: dict = field(default_factory=dict)  # {"whole": {...}, "fov": {...}}: means over test_images
    name: str | None = None  # a shipped model's name
    experiment: str | None = None
    seed: int | None = None
    extra: dict = field(default_factory=dict)  # anything else: a shipped model's configuration, wall times
    software: str = field(default_factory=_software_version)
    schema: int = SCHEMA

    @property
    def network_arguments(self) -> dict:
        """The network constructor's arguments, ``in_channels`` derived from ``preprocessing``."""
        return with_input_channels(self.network_args, preprocessing_from(self.preprocessing).channels)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def model_name(self, weights: str | Path | None = None) -> str | None:
        """What reports call the model: its shipped name, else its experiment, else the weights file's stem."""
        stem = Path(weights).stem if isinstance(weights, str | Path) else None
        return self.name or self.experiment or stem

    @classmethod
    def from_dict(cls, raw, source: str = "weights metadata") -> "WeightsMetadata":
        """Read a stored dictionary; files of the first schema (an untyped dictionary) are upgraded.

        Keys this version does not know go to ``extra``; a value of the wrong type is a ``UserError``.
        """
        if not isinstance(raw, dict):
            raise UserError(f"{source}: metadata is {type(raw).__name__}, not a mapping")
        hints = typing.get_type_hints(cls)
        known, extra = {}, dict(raw.get("extra") or {})
        for key, value in raw.items():
            if key == "extra":
                continue
            if key not in hints:
                extra[key] = value
            elif value is not None:
                known[key] = _checked(hints[key], value, f"{source}: metadata {key}")
        if (raw.get("schema") or 1) < SCHEMA:
            known["schema"] = SCHEMA  # the first schema's keys are a subset of this one's
        metadata = cls(**known, extra=extra)
        check_values(metadata, source)
        return metadata

    @classmethod
    def coerce(cls, metadata) -> "WeightsMetadata":
        """A ``WeightsMetadata`` as it is, or one read from a dictionary (older code, tests)."""
        return metadata if isinstance(metadata, cls) else cls.from_dict(metadata or {})


TASKS = ("vessels", "optic_disc")
MAX_SIDE = 20_000
"""The largest image side a weights file may describe (``input_size``, ``fov_diameter``): 400 megapixels."""
MAX_DEPTH = 32
"""Metadata nested deeper than this is refused: no weights file needs it, and deep structures exhaust the stack."""


def check_values(metadata: WeightsMetadata, source: str) -> None:
    """Refuse values of the right type but unusable: every reader of weights (API, CLI, page) gets the same line.

    Raises
    ------
    UserError
        ``SOURCE: metadata KEY: what is wrong``.
    """
    from patch2image.networks import NETWORKS, check_arguments
    from patch2image.preprocessing import preprocessing_from

    def refuse(key: str, what: str, value) -> typing.NoReturn:
        raise UserError(f"{source}: metadata {key}: {what}, got {value!r}")

    m = metadata
    if not (math.isfinite(m.threshold) and 0 < m.threshold < 1):
        refuse("threshold", "must be a number between 0 and 1", m.threshold)
    if not 1 <= m.size_divisor <= 256:
        refuse("size_divisor", "must be a whole number from 1 to 256", m.size_divisor)
    if m.fov_diameter is not None and not (math.isfinite(m.fov_diameter) and 1 <= m.fov_diameter <= MAX_SIDE):
        refuse("fov_diameter", f"must be a number of pixels from 1 to {MAX_SIDE}", m.fov_diameter)
    if m.input_size is not None and not (len(m.input_size) == 2 and all(_whole(s, 1, MAX_SIDE) for s in m.input_size)):
        refuse("input_size", f"must be [height, width], whole numbers from 1 to {MAX_SIDE}", m.input_size)
    if m.task not in TASKS:
        refuse("task", f"must be one of {', '.join(TASKS)}", m.task)
    if not (_whole(m.patch_size, 4, 1024) and m.patch_size % 4 == 0):
        refuse("patch_size", "must be a multiple of 4 from 4 to 1024", m.patch_size)
    if any(not isinstance(key, str) for key in m.network_args):
        refuse("network_args", "must map argument names to values", m.network_args)
    for entry in dataclasses.fields(m):
        if _depth(getattr(m, entry.name)) > MAX_DEPTH:
            raise UserError(f"{source}: metadata {entry.name}: nested more than {MAX_DEPTH} levels deep")
    if not all(isinstance(name, str) for name in m.test_images):
        refuse("test_images", "must be a list of image names", m.test_images)
    for protocol, scores in m.metrics.items():
        if not isinstance(scores, dict) or not all(_number_or_none(v) for v in scores.values()):
            refuse(f"metrics.{protocol}", "must map metric names to numbers", scores)
    if m.network in NETWORKS:
        try:
            check_arguments(m.network, m.network_args)
        except UserError as exc:
            raise UserError(f"{source}: metadata network_args: {exc}") from None
    try:
        preprocessing_from(m.preprocessing)
    except UserError as exc:
        raise UserError(f"{source}: metadata {str(exc).removeprefix('weights metadata: ')}") from None


def _number_or_none(value) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _whole(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _depth(value) -> int:
    """How deeply lists and dictionaries nest in ``value``, without recursion (counted up to ``MAX_DEPTH + 1``)."""
    level, current = 0, [value]
    while current and level <= MAX_DEPTH:
        current = [v for c in current if isinstance(c, dict | list) for v in (c.values() if isinstance(c, dict) else c)]
        level += 1
    return level - 1 if not current else level


def _checked(hint, value, where: str):
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = [o for o in typing.get_args(hint) if o is not type(None)] if union else [hint]
    kinds = tuple(typing.get_origin(o) or o for o in options)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise UserError(f"{where}: expected {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    return value


def save_weights(path: str | Path, network: "nn.Module", metadata: WeightsMetadata) -> None:
    """Write the network's state (parameters and BatchNorm statistics) and ``metadata`` atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}
    write_safetensors(path, tensors, {METADATA_KEY: json.dumps(WeightsMetadata.coerce(metadata).to_dict())})


def write_safetensors(path: str | Path, tensors: "dict[str, torch.Tensor]", metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically; a full disk is a ``UserError`` naming ``path``, the old file kept."""
    from safetensors.torch import save_file

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


def read_safetensors(path: str | Path, device: str = "cpu") -> "tuple[dict[str, torch.Tensor], dict[str, str]]":
    """Tensors and raw string metadata of a safetensors file, reading it once."""
    with safe_open(str(path), framework="pt", device=device) as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}, handle.metadata() or {}


def read_weights(path: str | Path) -> "tuple[dict[str, torch.Tensor], WeightsMetadata]":
    """Tensors and metadata of a safetensors file; anything else is refused with a clear message."""
    path = _weights_file(path)
    with _readable(path):
        tensors, raw = read_safetensors(path)
        metadata = _metadata(raw, path)
    check_finite(tensors, str(path))
    return tensors, metadata


def read_metadata(path: str | Path) -> WeightsMetadata:
    """The metadata of a safetensors file, from its header alone: no tensor is read, and torch is not imported."""
    path = _weights_file(path)
    with _readable(path), safe_open(str(path), framework="numpy") as handle:
        return _metadata(handle.metadata() or {}, path)


def _weights_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: a folder, not a weights file")
    if not path.is_file():
        raise UserError(f"{path}: no such weights file")
    with open(path, "rb") as handle:
        head = handle.read(9)
    # A safetensors file opens with its header's length (8 bytes, any value) and then "{".
    if head[8:9] != b"{" and (head[:1] == b"\x80" or head[:2] == b"PK"):
        raise UserError(f"{path}: a pickle checkpoint; patch2image loads weights only from safetensors")
    return path


@contextlib.contextmanager
def _readable(path: Path):
    """What safetensors and JSON raise on a damaged file, as one line naming it."""
    try:
        yield
    except RecursionError:
        raise UserError(f"{path}: metadata {METADATA_KEY!r} is nested too deeply to read") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable safetensors file ({exc})") from None


def _metadata(raw: dict[str, str], path: Path) -> WeightsMetadata:
    return WeightsMetadata.from_dict(json.loads(raw.get(METADATA_KEY, "{}")), str(path))


def check_finite(tensors: "dict[str, torch.Tensor]", source: str) -> None:
    """Refuse NaN or infinite weights: a network holding them segments nothing, without a word."""
    import torch

    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(f"{source}: tensor {key} holds NaN or infinite values; the weights are damaged")


ALIASES = {"optic-disc": "idrid-mini-unet"}
"""Names by task for the best shipped model of that task (the vessel model ``vessels`` is a file of its own)."""
DEFAULT_MODELS = ("vessels", "drive-mini-unet", "drive-light")
"""The model used when none is named (``segment``, ``demo``, the page): the first of these shipped."""


def default_model() -> str | None:
    # By file name: reading every shipped model's weights to learn their names is not needed.
    return next((m for m in DEFAULT_MODELS if (PRETRAINED_DIR / f"{m}.safetensors").is_file()), None)


def resolve_weights(name_or_path: str | Path) -> Path:
    """A shipped model's name or alias (see ``patch2image models``) or a path to a weights file."""
    name_or_path = ALIASES.get(str(name_or_path), name_or_path)
    shipped = PRETRAINED_DIR / f"{name_or_path}.safetensors"
    return shipped if shipped.is_file() else Path(name_or_path)


def load_model(name_or_path: str | Path, network: str | None = None) -> "tuple[nn.Module, WeightsMetadata]":
    """Build the network the weights name (or ``network``) and load the weights into it, in eval mode.

    The metadata may name only a registered network: a user's ``module:Class`` is imported when the
    caller passes it as ``network``, so that a weights file from elsewhere cannot make us import code.
    """
    path = resolve_weights(name_or_path)
    tensors, metadata = read_weights(path)
    network_name = network_to_build(path, metadata, network)
    try:
        arguments = metadata.network_arguments
        planned = planned_network(network_name, **arguments)  # shapes, no memory
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    check_state(planned, tensors, str(path))
    model = create_network(network_name, **arguments)
    model.load_state_dict(tensors)
    return model.eval(), metadata


def network_to_build(path: Path, metadata: WeightsMetadata, network: str | None = None) -> str:
    """``network``, else the registered network the metadata names; a user's ``module:Class`` only when passed."""
    name = network or metadata.network
    if not name:
        raise UserError(f"{path}: the metadata names no network; pass it with --network")
    if not network and ":" in name:
        raise UserError(f"{path}: the metadata names the user network {name!r}; pass --network {name} to import it")
    return name


def load_state(model: "nn.Module", tensors: "dict[str, torch.Tensor]", source: str) -> None:
    """Load tensors into a model, naming the mismatch when they belong to another network."""
    check_state(model, tensors, source)
    model.load_state_dict(tensors)


def check_state(model: "nn.Module", tensors: "dict[str, torch.Tensor]", source: str) -> None:
    """Refuse tensors that do not fit ``model`` (built on the meta device or not): names, shapes and kinds.

    Integer tensors where the network holds floating-point ones are refused: they load without error,
    then compute in whole numbers.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    kind = [k for k in expected if k in tensors and tensors[k].is_floating_point() != expected[k].is_floating_point()]
    if missing or unexpected or wrong or kind:
        detail = (missing and f"missing {missing[0]}") or (unexpected and f"unexpected {unexpected[0]}")
        detail = detail or (wrong and f"{wrong[0]} has shape {tuple(tensors[wrong[0]].shape)}")
        detail = detail or f"{kind[0]} holds {tensors[kind[0]].dtype} values, not {expected[kind[0]].dtype}"
        raise UserError(f"{source}: weights do not fit the network {type(model).__name__} ({detail})")


def shipped_models() -> list[tuple[str, WeightsMetadata]]:
    """(name, metadata) of every model shipped with the package, the default first."""
    paths = sorted(PRETRAINED_DIR.glob("*.safetensors"), key=lambda p: (p.stem not in DEFAULT_MODELS[:1], p.stem))
    return [(p.stem, read_metadata(p)) for p in paths]
