"""An experiment's configuration: one YAML file in ``configs/``, checked key by key.

The defaults are the paper's protocol; a file lists only what differs (at least ``name`` and the
dataset), so a run is reproduced from its file and seed alone. Phases: without ``phases`` an
experiment runs the paper's three (patch, finetune, scratch); with it, the phases it names, each
key it leaves out taken from the paper's setting for that phase. Patch sampling defaults to the
paper's for the dataset's task: a grid for vessels, balanced classes for the optic disc. Unknown
keys, wrong types and missing paths are refused with the key's dotted name and the type expected.
"""

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from patch2image.data.datasets import DATASETS
from patch2image.errors import UserError
from patch2image.preprocessing import Preprocessing

DATASET_KINDS = (*DATASETS, "synthetic")


@dataclass(frozen=True)
class DatasetConfig:
    kind: str = "synthetic"
    path: str | None = None
    fold: int | None = None
    val_fraction: float = 0.2
    size: list[int] | None = None  # (height, width) the images are resized to; default the paper's
    synthetic_images: int = 16  # synthetic only: train images (a quarter as many test images)
    synthetic_size: int = 128


@dataclass(frozen=True)
class PatchConfig:
    size: int = 32
    sampling: str = "grid"  # grid, balanced or random; a file that leaves it out gets its task's (module docstring)
    stride: int = 16
    per_class: int = 500
    count: int = 1000


@dataclass(frozen=True)
class AugmentationConfig:
    flip: bool = True  # random horizontal flips
    vertical_flip: bool = True
    translate: float = 0.1  # random shifts up to this fraction of the width and height
    level: str = "image"  # patch phase: augment whole images, then cut patches (reference code), or each "patch"


@dataclass(frozen=True)
class PhaseConfig:
    epochs: int = 300
    patience: int | None = None  # early stopping; None trains all epochs
    batch_size: int = 1
    lr: float = 1.0


PAPER_PHASES = {
    "patch": PhaseConfig(epochs=300, patience=30, batch_size=32),
    "finetune": PhaseConfig(epochs=300, batch_size=1),
    "scratch": PhaseConfig(epochs=300, batch_size=1),
}
"""The paper's training: patches in mini-batches of 32 until 30 epochs bring no improvement,
whole images one at a time for 300 epochs; AdaDelta at learning rate 1.0 throughout."""
PHASES = tuple(PAPER_PHASES)
PROTOCOLS = ("paper", "budget", "demo", "smoke")
"""paper: the published settings; budget: fewer epochs (and a coarser Patch row) to fit 2 CPU cores;
demo: minutes on the embedded synthetic data; smoke: seconds, for tests. Reports keep each protocol
in its own section."""


@dataclass(frozen=True)
class EvaluationConfig:
    patch_stride: int = 2  # stride of the patch-level segmentation that scores the Patch row
    threshold: float | str = 0.5  # or "validation": the Dice-maximising threshold on the validation images


@dataclass(frozen=True)
class Config:
    name: str
    network: str = "light"  # a registered network, or a user's module:Class
    network_args: dict = field(default_factory=dict)  # keyword arguments of the network's constructor
    seed: int = 0
    protocol: str = "paper"  # one of PROTOCOLS
    precision: str = "bf16"  # bf16 autocast where the CPU supports it, or fp32
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    patches: PatchConfig = field(default_factory=PatchConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    phases: dict[str, PhaseConfig] = field(default_factory=lambda: dict(PAPER_PHASES))
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_config(path: str | Path, fold: int | None = None) -> Config:
    """Read and check a configuration file; ``fold`` replaces its ``dataset.fold`` (cross-validation)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such configuration file") from None
    except yaml.YAMLError as exc:
        # "expected ',' or '}' ... at line 3, column 1": the problem and where, on one line.
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{path}: not valid YAML ({problem}{where})") from None
    if fold is not None and isinstance(raw, dict):
        raw["dataset"] = {**(raw.get("dataset") or {}), "fold": fold}
    config = config_from_dict(raw, source=str(path))
    if config.dataset.path is not None:
        data_path = Path(config.dataset.path)
        if not data_path.is_absolute():
            data_path = (path.parent / data_path).resolve()
            # Paths in configs/ are relative to the project root, the usual working directory.
            if not data_path.exists() and Path(config.dataset.path).exists():
                data_path = Path(config.dataset.path).resolve()
        if not data_path.exists():
            raise UserError(f"{path}: dataset.path {config.dataset.path!r} does not exist")
        config = dataclasses.replace(config, dataset=dataclasses.replace(config.dataset, path=str(data_path)))
    return config


def config_from_dict(raw, source: str = "configuration") -> Config:
    if raw is None:
        raise UserError(f"{source}: empty; expected a mapping of keys (at least name)")
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of keys, got {type(raw).__name__}")
    phases = raw.get("phases")
    if isinstance(phases, dict):
        for phase, value in phases.items():
            if phase not in PHASES:
                raise UserError(f"{source}: phases.{phase}: unknown phase; expected one of {', '.join(PHASES)}")
            if isinstance(value, dict | None):  # keys left out keep the paper's setting for this phase
                phases[phase] = dataclasses.asdict(PAPER_PHASES[phase]) | (value or {})
    config = _build(Config, raw, source, "")
    _check_choice(source, "dataset.kind", config.dataset.kind, DATASET_KINDS)
    _check_choice(source, "protocol", config.protocol, PROTOCOLS)
    if "sampling" not in (raw.get("patches") or {}):
        task = DATASETS[config.dataset.kind].task if config.dataset.kind in DATASETS else "vessels"
        sampling = "balanced" if task == "optic_disc" else "grid"
        config = dataclasses.replace(config, patches=dataclasses.replace(config.patches, sampling=sampling))
    _check_choice(source, "precision", config.precision, ("bf16", "fp32"))
    _check_choice(source, "augmentation.level", config.augmentation.level, ("image", "patch"))
    if config.patches.sampling not in ("grid", "balanced", "random"):
        raise UserError(f"{source}: patches.sampling: {config.patches.sampling!r} is not grid, balanced or random")
    if config.dataset.kind != "synthetic" and not config.dataset.path:
        raise UserError(f"{source}: dataset.path: required for dataset kind {config.dataset.kind}")
    _check_fold(config.dataset, source)
    _check_ranges(config, source)
    return config


def _check_choice(source: str, key: str, value, choices) -> None:
    if value not in choices:
        raise UserError(f"{source}: {key}: {value!r} is not one of {', '.join(choices)}")


def _check_fold(dataset: DatasetConfig, source: str) -> None:
    """A fold the dataset has, or none for a dataset with a train/test split: checked before any run starts."""
    kind, fold = dataset.kind, dataset.fold
    folds = DATASETS[kind].folds() if kind in DATASETS else []
    if not folds:
        if fold is not None:
            raise UserError(f"{source}: dataset.fold: {kind} has no folds (it has a train/test split); leave it unset")
        return
    span = f"folds {folds[0]}-{folds[-1]}"
    if fold is None:
        raise UserError(f"{source}: dataset.fold: required for {kind}, which uses cross-validation ({span})")
    if fold not in folds:
        raise UserError(f"{source}: dataset.fold: fold {fold} does not exist for {kind} ({span})")


def _check_ranges(config: Config, source: str) -> None:
    """Values of the right type but out of range would fail deep in training, with a traceback."""
    size, threshold = config.patches.size, config.evaluation.threshold
    threshold_ok = threshold == "validation" or (isinstance(threshold, float) and 0 <= threshold <= 1)
    checks = [
        ("patches.size", size, size >= 8 and size % 4 == 0, "a multiple of 4, at least 8 (the networks halve twice)"),
        ("patches.stride", config.patches.stride, config.patches.stride >= 1, "at least 1"),
        ("patches.per_class", config.patches.per_class, config.patches.per_class >= 1, "at least 1"),
        ("patches.count", config.patches.count, config.patches.count >= 1, "at least 1"),
        ("augmentation.translate", config.augmentation.translate, 0 <= config.augmentation.translate < 0.5, "< 0.5"),
        ("dataset.val_fraction", config.dataset.val_fraction, 0 <= config.dataset.val_fraction < 1, "in [0, 1)"),
        ("dataset.size", config.dataset.size, _is_size(config.dataset.size), "[height, width], each at least 8"),
        ("dataset.synthetic_images", config.dataset.synthetic_images, config.dataset.synthetic_images >= 2, ">= 2"),
        ("dataset.synthetic_size", config.dataset.synthetic_size, config.dataset.synthetic_size >= 16, ">= 16"),
        ("evaluation.patch_stride", config.evaluation.patch_stride, config.evaluation.patch_stride >= 1, ">= 1"),
        ("evaluation.threshold", threshold, threshold_ok, "validation, or a number in [0, 1]"),
    ]
    for name, phase in config.phases.items():
        checks += [
            (f"phases.{name}.epochs", phase.epochs, phase.epochs >= 1, "at least 1"),
            (f"phases.{name}.batch_size", phase.batch_size, phase.batch_size >= 1, "at least 1"),
            (f"phases.{name}.lr", phase.lr, phase.lr > 0, "above 0"),
            (f"phases.{name}.patience", phase.patience, phase.patience is None or phase.patience >= 1, "at least 1"),
        ]
    for key, value, ok, expected in checks:
        if not ok:
            raise UserError(f"{source}: {key}: {value!r} is out of range; expected {expected}")


def _is_size(size: list[int] | None) -> bool:
    return size is None or (len(size) == 2 and all(side >= 8 for side in size))


def _build(cls, raw: dict, source: str, prefix: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in names:
            raise UserError(f"{source}: {prefix}{key}: unknown key; expected one of {', '.join(sorted(names))}")
        values[key] = _convert(hints[key], value, source, f"{prefix}{key}")
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in values:
            raise UserError(f"{source}: {prefix}{f.name}: required key missing ({_type_name(hints[f.name])})")
    try:
        return cls(**values)
    except TypeError as exc:
        raise UserError(f"{source}: {prefix.rstrip('.') or 'top level'}: {exc}") from None


def _convert(hint, value, source: str, key: str):
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise UserError(f"{source}: {key}: expected a mapping, got {value!r}")
        return _build(hint, value, source, key + ".")
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        options = [o for o in options if o is not type(None)]
        for option in options if len(options) > 1 else []:
            try:
                return _convert(option, value, source, key)
            except UserError:
                pass
        if len(options) > 1:
            raise UserError(f"{source}: {key}: expected {' or '.join(map(_type_name, options))}, got {value!r}")
        hint = options[0]
        origin = typing.get_origin(hint)
    if origin is dict:
        value_hint = typing.get_args(hint)[1]
        if not isinstance(value, dict):
            raise UserError(f"{source}: {key}: expected a mapping, got {value!r}")
        return {k: _convert(value_hint, v or {}, source, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
            raise UserError(f"{source}: {key}: expected a list of integers, got {value!r}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise UserError(f"{source}: {key}: expected {hint.__name__}, got {value!r}")
    return value


def _type_name(hint) -> str:
    return getattr(hint, "__name__", str(hint))
