"""Reading run directories and grouping them: one section per dataset, one group per network.

A run directory is what ``patch2image train`` writes (config.yaml, run.json, history.csv,
metrics/<row>.json, predictions/). Runs of one dataset, network and protocol that differ only in their
cross-validation fold form one group, whose rows merge the folds' evaluations into one test set.
"""

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from patch2image.atomic_files import read_json, read_yaml
from patch2image.config import TRAINING_PROTOCOLS
from patch2image.data import DATASETS
from patch2image.errors import UserError
from patch2image.evaluation import PROTOCOLS, ROWS, SECOND_OBSERVER, merge_evaluations, read_run_metrics
from patch2image.networks import NETWORKS

DATASET_NAMES = {kind: spec.title for kind, spec in DATASETS.items()} | {"synthetic": "Synthetic data"}
NETWORK_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", re.ASCII)
"""A user network, ``module:Class``, as ``network:`` names it in a configuration."""


def slug(name: str) -> str:
    """A name from a run folder made safe as a part of a file name: lower case, ``a-z 0-9 _ -`` only."""
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower())


@dataclass
class Run:
    """One run directory, as read from disk."""

    path: Path
    name: str
    network: str
    dataset: str
    fold: int | None
    protocol: str
    results: dict[str, dict]  # row (or "second_observer") -> evaluation result
    history: list[dict]  # history.csv rows, numbers as floats
    info: dict  # run.json
    config: dict = field(default_factory=dict)  # config.yaml

    def epochs(self, phase: str) -> tuple[int, int | None]:
        """Epochs ``phase`` ran (from the history) and the most its configuration allowed."""
        ran = sum(1 for row in self.history if row.get("phase") == phase)
        allowed = ((self.config.get("phases") or {}).get(phase) or {}).get("epochs")
        return ran, allowed

    @property
    def label(self) -> str:
        if self.fold is None or f"fold{self.fold}" in self.name.replace("-", "").replace("_", ""):
            return self.name
        return f"{self.name} (fold {self.fold})"


@dataclass
class Group:
    """The runs of one network on one dataset under one protocol, their folds merged.

    ``results[row]`` merges the folds that scored ``row``; ``coverage[row]`` says how many did.
    """

    network: str
    runs: list[Run]
    results: dict[str, dict] = field(default_factory=dict)
    coverage: dict[str, int] = field(default_factory=dict)


@dataclass
class Section:
    """Everything the report shows for one dataset under one training protocol."""

    dataset: str
    protocol: str
    groups: list[Group]

    @property
    def title(self) -> str:
        title = " + ".join(DATASET_NAMES.get(kind, kind) for kind in self.dataset.split("+"))
        return title if self.protocol == "paper" else f"{title}, {self.protocol} protocol"

    @property
    def slug(self) -> str:
        return slug(self.dataset if self.protocol == "paper" else f"{self.dataset}-{self.protocol}")

    @property
    def runs(self) -> list[Run]:
        return [run for group in self.groups for run in group.runs]

    def second_observer(self) -> dict | None:
        """The second observer's scores, from the group that covers the most folds."""
        best = max(self.groups, key=lambda g: g.coverage.get(SECOND_OBSERVER, 0))
        return best.results.get(SECOND_OBSERVER)


def find_run_dirs(paths: list[str | Path]) -> list[Path]:
    """The run directories named, a directory holding run directories standing for all of them."""
    found = []
    for path in map(Path, paths):
        if (path / "config.yaml").is_file():
            found.append(path)
        elif path.is_dir() and (children := sorted(p.parent for p in path.glob("*/config.yaml"))):
            found.extend(children)
        else:
            raise UserError(f"{path}: not a run directory (no config.yaml) nor a folder of run directories")
    return list(dict.fromkeys(p.resolve() for p in found))


def load_run(path: Path) -> Run:
    source = path / "config.yaml"
    config = read_yaml(source) or {}
    if not isinstance(config, dict):
        raise UserError(f"{source}: not a configuration (a mapping of keys to values)")
    datasets = config.get("dataset") or {}
    datasets = datasets if isinstance(datasets, list) else [datasets]  # a list: trained on several at once
    if not datasets or not all(isinstance(d, dict) for d in datasets):
        raise UserError(f"{source}: dataset: expected a mapping or a list of them, got {config.get('dataset')!r}")
    kinds = [_known(source, "dataset.kind", d.get("kind") or "folder", DATASET_NAMES) for d in datasets]
    results = read_run_metrics(path)
    for row, result in results.items():
        try:
            _checked(result)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{path / 'metrics' / row}.json: not an evaluation result ({exc!r})") from None
    return Run(
        path=path,
        name=str(config.get("name") or path.name),
        network=_network(source, config.get("network") or "unknown"),
        dataset="+".join(kinds),
        fold=_fold(source, datasets[0].get("fold")) if len(datasets) == 1 else None,
        protocol=_known(source, "protocol", config.get("protocol") or "paper", TRAINING_PROTOCOLS),
        results=results,
        history=_read_history(path / "history.csv"),
        info=_read_info(path / "run.json"),
        config=config,
    )


# The names below become parts of the report's file names: a run folder is not trusted to keep them inside --out.


def _network(source: Path, value) -> str:
    """``network``: a registered network or a ``module:Class`` import path ("unknown" when not given)."""
    if value == "unknown" or (isinstance(value, str) and (value in NETWORKS or NETWORK_PATH.fullmatch(value))):
        return value
    raise UserError(
        f"{source}: network: {value!r} is neither a registered network ({', '.join(NETWORKS)}) "
        "nor a module:Class import path"
    )


def _known(source: Path, key: str, value, known) -> str:
    if isinstance(value, str) and value in known:
        return value
    raise UserError(f"{source}: {key}: {value!r} is not one of {', '.join(known)}")


def _fold(source: Path, value) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise UserError(f"{source}: dataset.fold: {value!r} is not a fold number")


def _checked(result: dict) -> dict:
    """``result`` if it has the evaluation's shape, at least for one protocol; else a KeyError names the gap."""
    protocols = [p for p in PROTOCOLS if p in result]
    if not protocols:
        raise KeyError(f"none of the protocols {', '.join(PROTOCOLS)}")
    for protocol in protocols:
        for key in ("mean", "pooled", "images"):
            if key not in result[protocol]:
                raise KeyError(f"{protocol}.{key}")
    return result


def _read_info(path: Path) -> dict:
    """run.json: the network's parameter count and each phase's wall time."""
    info = read_json(path) or {}
    seconds = info.get("wall_seconds", {}) if isinstance(info, dict) else None
    if not isinstance(seconds, dict) or not all(isinstance(v, int | float) for v in seconds.values()):
        raise UserError(f"{path}: not a run's record (expected an object whose wall_seconds maps phases to seconds)")
    return info


HISTORY_COLUMNS = ("phase", "epoch", "loss", "val_loss")
"""The columns of history.csv the report reads (training writes these and more)."""


def _read_history(path: Path) -> list[dict]:
    """history.csv's rows, numbers as floats (NaN where a value is missing); a file of another shape is refused."""
    if not path.is_file():
        return []
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            table = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: not a training history ({type(exc).__name__}: {exc})") from None
    missing = [column for column in HISTORY_COLUMNS if column not in (reader.fieldnames or [])]
    if missing:
        raise UserError(
            f"{path}: not a training history (no column {missing[0]!r}; expected {', '.join(HISTORY_COLUMNS)})"
        )
    rows = []
    for line, row in enumerate(table, start=2):
        if not isinstance(row.get("phase"), str) or None in row:
            raise UserError(f"{path}: line {line} does not have the header's columns")
        rows.append({key: row[key] if key == "phase" else _number(row.get(key)) for key in row})
    return rows


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def load_sections(paths: list[str | Path]) -> list[Section]:
    """Read the run directories and group them: sections in a stable order, folds merged."""
    runs = [load_run(path) for path in find_run_dirs(paths)]
    keyed: dict[tuple, dict[str, list[Run]]] = {}
    for run in runs:
        keyed.setdefault((run.dataset, run.protocol), {}).setdefault(run.network, []).append(run)
    sections = []
    for (dataset, protocol), networks in sorted(keyed.items(), key=lambda item: _dataset_key(*item[0])):
        groups = [_group(network, networks[network]) for network in sorted(networks, key=_network_key)]
        sections.append(Section(dataset, protocol, groups))
    return sections


def _group(network: str, runs: list[Run]) -> Group:
    runs = sorted(runs, key=lambda run: (run.fold is not None, run.fold or 0, str(run.path)))
    folds: dict = {}
    for run in runs:
        if run.fold in folds:
            raise UserError(
                f"{folds[run.fold].path} and {run.path}: two {run.dataset} runs of {network} "
                f"({run.protocol} protocol, fold {run.fold}); report them separately"
            )
        folds[run.fold] = run
    group = Group(network, runs)
    for row in (*ROWS, SECOND_OBSERVER):
        parts = [run.results[row] for run in runs if row in run.results]
        if parts:
            group.results[row] = merge_evaluations(parts) if len(parts) > 1 else parts[0]
            group.coverage[row] = len(parts)
    return group


def _network_key(network: str) -> tuple:
    order = list(NETWORKS)
    return (order.index(network), "") if network in order else (len(order), network)


def _dataset_key(dataset: str, protocol: str) -> tuple:
    order = list(DATASET_NAMES)
    return (order.index(dataset) if dataset in order else len(order), dataset, protocol != "paper", protocol)
