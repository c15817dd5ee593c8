"""An experiment's configuration: one YAML file in ``configs/``, checked key by key.

The defaults are the paper's protocol; a file lists only what differs (at least ``name`` and the
dataset), so a run is reproduced from its file and seed alone. Phases: without ``phases`` an
experiment runs the paper's three (patch, finetune, scratch); with it, the phases it names, each
key it leaves out taken from the paper's setting for that phase. Patch sampling defaults to the
paper's for the dataset's task: a grid for vessels, balanced classes for the optic disc. Unknown
keys, wrong types and missing paths are refused with the key's dotted name and the type expected.

``dataset`` is one mapping, or a list of them to train on several datasets at once (each with its
own fold): the first sets the working scale, and the others are resized so that their eyes have the
same width (the field-of-view rule of ``segment``).
"""

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from patch2image.atomic_files import read_yaml
from patch2image.data.dataset import TASKS
from patch2image.data.registry import DATASETS
from patch2image.errors import UserError
from patch2image.networks import with_input_channels
from patch2image.preprocessing import Preprocessing
from patch2image.runtime.precision import LAYOUTS, PRECISIONS

DATASET_KINDS = (*DATASETS, "synthetic")


@dataclass(frozen=True)
class DatasetConfig:
    kind: str = "synthetic"
    path: str | None = None
    fold: int | None = None
    task: str | None = None  # folder only: vessels (default) or optic_disc; the official datasets know theirs
    val_fraction: float = 0.2
    hold_out_test: bool = True  # false: the test images train too (a model to ship); no rows are scored on them
    size: list[int] | None = None  # (height, width) the images are resized to; default the paper's (or the
    # first dataset's scale, for the second and later datasets of a list)
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
    scale: list[float] | None = None  # [low, high]: random rescaling by a factor in this range (robustness)
    rotate: float = 0.0  # random rotations by up to this many degrees either way (robustness)
    contrast: float = 0.0  # random gamma 2**u, u uniform in [-contrast, contrast], on the pre-processed input


@dataclass(frozen=True)
class PhaseConfig:
    epochs: int = 300
    patience: int | None = None  # early stopping; None trains all epochs
    batch_size: int = 1
    lr: float = 1.0
    batchnorm: str = "train"  # train: as the paper; frozen, precise: variants (BATCHNORM_MODES)


PAPER_PHASES = {
    "patch": PhaseConfig(epochs=300, patience=30, batch_size=32),
    "finetune": PhaseConfig(epochs=300, batch_size=1),
    "scratch": PhaseConfig(epochs=300, batch_size=1),
}
"""The paper's training: patches in mini-batches of 32 until 30 epochs bring no improvement,
whole images one at a time for 300 epochs; AdaDelta at learning rate 1.0 throughout."""
PHASES = tuple(PAPER_PHASES)
BATCHNORM_MODES = {
    "patch": ("train", "precise"),
    "finetune": ("train", "frozen", "precise"),
    "scratch": ("train", "precise"),
}
"""How BatchNorm's running statistics, the ones evaluation uses, are kept. ``train``, the paper's:
each batch moves them by the network's momentum (Keras' 1% for Dense) from their start (variance 1).
``precise`` recomputes them after each epoch as the plain average over the epoch's training inputs
(before augmentation) with that epoch's weights: 20 epochs of 14 photographs are 280 batches, after
which 1% steps still keep 0.99**280 = 6% of the starting variance, and Dense trained from scratch on
STARE so kept a first-layer variance of 0.061 where its weights' own is 0.0012, and marked no vessel.
``frozen`` keeps the statistics the patches gave (the ones the Image/Frozen row uses) while
fine-tuning whole images one at a time: a whole photograph's own statistics can be far from its
patches' (on IDRiD a third of their variance), and a deep network normalised by them starts
fine-tuning far from its transferred behaviour. Only fine-tuning has transferred statistics to keep."""
TRAINING_PROTOCOLS = ("paper", "budget", "demo", "smoke")
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
    protocol: str = "paper"  # one of TRAINING_PROTOCOLS
    precision: str = "auto"  # fp32, bf16 autocast, or auto: the faster here, measured before each phase
    layout: str = "auto"  # channels_last, contiguous, or auto: the faster here, measured with the precision
    dataset: DatasetConfig | list[DatasetConfig] = field(default_factory=DatasetConfig)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    patches: PatchConfig = field(default_factory=PatchConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    phases: dict[str, PhaseConfig] = field(default_factory=lambda: dict(PAPER_PHASES))
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    @property
    def datasets(self) -> list[DatasetConfig]:
        """The datasets trained on, the first setting the working scale."""
        return list(self.dataset) if isinstance(self.dataset, list) else [self.dataset]

    @property
    def network_arguments(self) -> dict:
        """The network constructor's keyword arguments: ``network_args``, and ``in_channels`` for colour input."""
        return with_input_channels(self.network_args, self.preprocessing.channels)

    @property
    def dataset_name(self) -> str:
        """``drive``, or ``drive+stare+chase_db1`` for several."""
        return "+".join(d.kind for d in self.datasets)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_config(path: str | Path, fold: int | None = None, seed: int | None = None) -> Config:
    """Read and check a configuration file; ``fold`` replaces its ``dataset.fold`` (cross-validation),
    ``seed`` its ``seed`` (the same experiment again, to see how much of a result is chance)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such configuration file")
    raw = read_yaml(path)
    if fold is not None and isinstance(raw, dict):
        raw["dataset"] = _with_fold(raw.get("dataset"), fold)
    if seed is not None and isinstance(raw, dict):
        raw["seed"] = seed
    config = config_from_dict(raw, source=str(path))
    datasets = [_resolved_path(d, path) for d in config.datasets]
    return dataclasses.replace(config, dataset=datasets if isinstance(config.dataset, list) else datasets[0])


def _with_fold(dataset, fold: int):
    """``--fold N``: the fold of the dataset, or of every dataset of a list that has folds."""
    if isinstance(dataset, list):
        folded = [
            d for d in dataset if isinstance(d, dict) and DATASETS.get(d.get("kind")) and DATASETS[d["kind"]].folds()
        ]
        return [{**d, "fold": fold} if d in folded else d for d in dataset]
    return {**(dataset or {}), "fold": fold}


def _resolved_path(dataset: DatasetConfig, config_path: Path) -> DatasetConfig:
    if dataset.path is None:
        return dataset
    data_path = Path(dataset.path)
    if not data_path.is_absolute():
        data_path = (config_path.parent / data_path).resolve()
        # Paths in configs/ are relative to the project root, the usual working directory.
        if not data_path.exists() and Path(dataset.path).exists():
            data_path = Path(dataset.path).resolve()
    if not data_path.exists():
        raise UserError(f"{config_path}: dataset.path {dataset.path!r} does not exist")
    return dataclasses.replace(dataset, path=str(data_path))


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
    tasks = set()
    for key, dataset in _dataset_keys(config):
        _check_choice(source, f"{key}.kind", dataset.kind, DATASET_KINDS)
        if dataset.kind != "synthetic" and not dataset.path:
            raise UserError(f"{source}: {key}.path: required for dataset kind {dataset.kind}")
        _check_fold(dataset, source, key)
        own = DATASETS[dataset.kind].task if dataset.kind in DATASETS and dataset.kind != "folder" else None
        if dataset.task is not None:
            _check_choice(source, f"{key}.task", dataset.task, TASKS)
            if own and dataset.task != own:
                raise UserError(f"{source}: {key}.task: {dataset.kind} is a {own} dataset, not {dataset.task}")
        tasks.add(dataset.task or own or "vessels")
    if not config.datasets:
        raise UserError(f"{source}: dataset: an empty list; name at least one dataset")
    if len(tasks) > 1:
        raise UserError(f"{source}: dataset: the datasets have different tasks ({', '.join(sorted(tasks))})")
    _check_choice(source, "protocol", config.protocol, TRAINING_PROTOCOLS)
    if "sampling" not in (raw.get("patches") or {}):
        sampling = "balanced" if tasks == {"optic_disc"} else "grid"
        config = dataclasses.replace(config, patches=dataclasses.replace(config.patches, sampling=sampling))
    _check_choice(source, "precision", config.precision, ("auto", *PRECISIONS))
    _check_choice(source, "layout", config.layout, ("auto", *LAYOUTS))
    _check_choice(source, "augmentation.level", config.augmentation.level, ("image", "patch"))
    if config.patches.sampling not in ("grid", "balanced", "random"):
        raise UserError(f"{source}: patches.sampling: {config.patches.sampling!r} is not grid, balanced or random")
    _check_ranges(config, source)
    try:
        config.network_arguments  # noqa: B018 - an in_channels that the pre-processing contradicts is refused here
    except UserError as exc:
        raise UserError(f"{source}: {exc} (preprocessing.channel: {config.preprocessing.channel})") from None
    return config


def _dataset_keys(config: Config) -> list[tuple[str, DatasetConfig]]:
    """(dotted key, dataset) of each dataset: ``dataset``, or ``dataset[0]``, ``dataset[1]``, ... for a list."""
    if isinstance(config.dataset, list):
        return [(f"dataset[{i}]", d) for i, d in enumerate(config.dataset)]
    return [("dataset", config.dataset)]


def _check_choice(source: str, key: str, value, choices) -> None:
    if value not in choices:
        raise UserError(f"{source}: {key}: {value!r} is not one of {', '.join(choices)}")


def _check_fold(dataset: DatasetConfig, source: str, key: str) -> None:
    """A fold the dataset has, or none for a dataset with a train/test split: checked before any run starts."""
    kind, fold = dataset.kind, dataset.fold
    folds = DATASETS[kind].folds() if kind in DATASETS else []
    if not folds:
        if fold is not None:
            raise UserError(f"{source}: {key}.fold: {kind} has no folds (it has a train/test split); leave it unset")
        return
    span = f"folds {folds[0]}-{folds[-1]}"
    if fold is None:
        raise UserError(f"{source}: {key}.fold: required for {kind}, which uses cross-validation ({span})")
    if fold not in folds:
        raise UserError(f"{source}: {key}.fold: fold {fold} does not exist for {kind} ({span})")


def _check_ranges(config: Config, source: str) -> None:
    """Values of the right type but out of range would fail deep in training, with a traceback."""
    size, threshold, scale = config.patches.size, config.evaluation.threshold, config.augmentation.scale
    threshold_ok = threshold == "validation" or (isinstance(threshold, float) and 0 <= threshold <= 1)
    checks = [
        ("patches.size", size, size >= 8 and size % 4 == 0, "a multiple of 4, at least 8 (the networks halve twice)"),
        ("patches.stride", config.patches.stride, config.patches.stride >= 1, "at least 1"),
        ("patches.per_class", config.patches.per_class, config.patches.per_class >= 1, "at least 1"),
        ("patches.count", config.patches.count, config.patches.count >= 1, "at least 1"),
        ("augmentation.translate", config.augmentation.translate, 0 <= config.augmentation.translate < 0.5, "< 0.5"),
        ("augmentation.scale", scale, scale is None or (len(scale) == 2 and 0 < scale[0] <= scale[1]), "[low, high]"),
        ("augmentation.rotate", config.augmentation.rotate, 0 <= config.augmentation.rotate <= 180, "in [0, 180]"),
        ("augmentation.contrast", config.augmentation.contrast, 0 <= config.augmentation.contrast <= 2, "in [0, 2]"),
        ("evaluation.patch_stride", config.evaluation.patch_stride, config.evaluation.patch_stride >= 1, ">= 1"),
        ("evaluation.threshold", threshold, threshold_ok, "validation, or a number in [0, 1]"),
    ]
    for key, d in _dataset_keys(config):
        checks += [
            (f"{key}.val_fraction", d.val_fraction, 0 <= d.val_fraction < 1, "in [0, 1)"),
            (f"{key}.size", d.size, _is_size(d.size), "[height, width], each at least 8"),
            (f"{key}.synthetic_images", d.synthetic_images, d.synthetic_images >= 2, ">= 2"),
            (f"{key}.synthetic_size", d.synthetic_size, d.synthetic_size >= 16, ">= 16"),
        ]
    for name, phase in config.phases.items():
        checks += [
            (f"phases.{name}.epochs", phase.epochs, phase.epochs >= 1, "at least 1"),
            (f"phases.{name}.batch_size", phase.batch_size, phase.batch_size >= 1, "at least 1"),
            (f"phases.{name}.lr", phase.lr, phase.lr > 0, "above 0"),
            (f"phases.{name}.patience", phase.patience, phase.patience is None or phase.patience >= 1, "at least 1"),
            (f"phases.{name}.batchnorm", phase.batchnorm, phase.batchnorm in BATCHNORM_MODES[name], _modes(name)),
        ]
    for key, value, ok, expected in checks:
        if not ok:
            raise UserError(f"{source}: {key}: {value!r} is out of range; expected {expected}")
    if "finetune" in config.phases and "patch" not in config.phases:
        raise UserError(f"{source}: phases.finetune needs phases.patch, whose weights it starts from")


def _modes(phase: str) -> str:
    return ", ".join(BATCHNORM_MODES[phase]) + ("" if phase == "finetune" else " (only fine-tuning may freeze it)")


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
    except UserError as exc:  # a section's own check (``Preprocessing``'s): its message names the key, not the file
        raise UserError(f"{source}: {exc}") from None


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
        # A mapping or a list goes to the option of its shape, so that its own errors are the ones shown.
        shaped = [o for o in options if _shape(o) == _shape(type(value))]
        if len(shaped) == 1 or len(options) == 1:
            return _convert((shaped or options)[0], value, source, key)
        for option in options:
            try:
                return _convert(option, value, source, key)
            except UserError:
                pass
        raise UserError(f"{source}: {key}: expected {' or '.join(map(_type_name, options))}, got {value!r}")
    if origin is dict:
        value_hint = typing.get_args(hint)[1]
        if not isinstance(value, dict):
            raise UserError(f"{source}: {key}: expected a mapping, got {value!r}")
        return {k: _convert(value_hint, v or {}, source, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list):
            raise UserError(f"{source}: {key}: expected a list of {_type_name(item)}, got {value!r}")
        return [_convert(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise UserError(f"{source}: {key}: expected {hint.__name__}, got {value!r}")
    return value


def _shape(hint) -> str:
    if dataclasses.is_dataclass(hint) or hint is dict or typing.get_origin(hint) is dict:
        return "mapping"
    return "list" if hint is list or typing.get_origin(hint) is list else "value"


def _type_name(hint) -> str:
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))
