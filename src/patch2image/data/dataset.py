"""What a dataset is: its files and splits (:class:`Dataset`), and what describes a kind of dataset
(:class:`DatasetSpec`) in the registry of ``patch2image.data.registry``.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from patch2image.data.pairing import find_child, list_images, pair_files
from patch2image.data.sample import SampleFiles
from patch2image.errors import UserError

SPLITS = ("train", "val", "test", "all")
TASKS = ("vessels", "optic_disc")


@dataclass(frozen=True)
class DatasetSpec:
    """One kind of dataset: how to recognise its layout and open it, and what the paper did with it.

    Parameters
    ----------
    kind : str
        The name in configurations and on the command line (``chase_db1``).
    title : str
        The name in reports (``CHASE_DB1``).
    task : {"vessels", "optic_disc"}
    layout : str
        The expected layout, for the message when a folder does not match.
    detect : callable Path -> bool
        Whether a folder has this layout.
    open : callable Path -> Dataset
    paper_size : (height, width) or None
        The size the paper resizes every image to (a multiple of 4); None: the images' own.
    folds_key : str or None
        Its key in the package's ``folds.json`` when it is evaluated by cross-validation.
    """

    kind: str
    title: str
    task: str
    layout: str
    detect: Callable[[Path], bool]
    open: Callable[[Path], "Dataset"]
    paper_size: tuple[int, int] | None = None
    folds_key: str | None = None

    def folds(self) -> list[int]:
        """The cross-validation folds, ``[]`` for a dataset with a train/test split."""
        return sorted(fold_table(self.folds_key)) if self.folds_key else []

    def dataset(self, root, groups, fold_table=None, problems=(), task=None, labelled=True) -> "Dataset":
        """A dataset of this kind, its files found by the kind's reader (``task``: a folder's own)."""
        return Dataset(self.kind, root, task or self.task, groups, fold_table, problems, labelled, self.paper_size)


class Dataset:
    """The files of a dataset and its splits.

    Parameters
    ----------
    kind : {"drive", "stare", "chase_db1", "idrid", "folder"}
    root : Path
    task : {"vessels", "optic_disc"}
    groups : dict of str to list of SampleFiles
        Official splits ("train", "test", optionally "val"), or "all" for datasets with folds.
    fold_table : dict of int to dict of str to list of str, optional
        Case names per fold and split ("train", "val", "test").
    problems : list of str
        What was wrong with the layout (missing labels, unpaired files), one line each.
    labelled : bool
        Whether every image should have a label.
    paper_size : tuple (height, width) or None
        The size the paper resizes this dataset to; None for folders.
    """

    def __init__(self, kind, root, task, groups, fold_table=None, problems=(), labelled=True, paper_size=None):
        self.kind = kind
        self.root = Path(root)
        self.task = task
        self.paper_size = paper_size
        self.groups = groups
        self.fold_table = fold_table or {}
        self.problems = list(problems)
        self.labelled = labelled

    def __repr__(self) -> str:
        return f"Dataset(kind={self.kind!r}, root={str(self.root)!r}, task={self.task!r}, cases={len(self.cases())})"

    def folds(self) -> list[int]:
        """The cross-validation folds (``[]`` for datasets with an official train/test split)."""
        return sorted(self.fold_table)

    def cases(self) -> list[SampleFiles]:
        """Every case, sorted by name, with no check (``check_dataset`` reports what is wrong)."""
        return sorted((c for group in self.groups.values() for c in group), key=lambda c: c.name)

    def files(self, split: str, fold: int | None = None, val_fraction: float = 0.2, seed: int = 0) -> list[SampleFiles]:
        """The cases of one split.

        Parameters
        ----------
        split : {"train", "val", "test", "all"}
        fold : int, optional
            Required for "train", "val" and "test" of datasets with folds (STARE, CHASE_DB1);
            must be left out for the others.
        val_fraction : float, default 0.2
            Without folds or a ``val`` folder: the share of the training images held out for
            validation, rounded to the nearest count (at least one when there are two or more).
        seed : int, default 0
            Seeds ``numpy.random.default_rng`` for choosing the validation images.

        Returns
        -------
        files : list of SampleFiles, sorted by name

        Raises
        ------
        UserError
            Unknown split, missing or unknown fold, a split the layout lacks, or a case whose
            label is missing in a labelled dataset.
        """
        if split not in SPLITS:
            raise UserError(f"split {split!r} is not one of {', '.join(SPLITS)}")
        if not 0 <= val_fraction < 1:
            raise UserError(f"val_fraction {val_fraction} must be at least 0 and below 1")
        if self.fold_table:
            chosen = self._fold_files(split, fold)
        else:
            if fold is not None:
                raise UserError(f"{self.kind} has no folds (it has a train/test split); leave the fold unset")
            chosen = self._split_files(split, val_fraction, seed)
        if self.labelled:
            for case in chosen:
                if case.label is None:
                    raise UserError(f"{case.image}: no label pairs with this image (see `patch2image data check`)")
        return chosen

    def _fold_files(self, split: str, fold: int | None) -> list[SampleFiles]:
        if split == "all":
            return self.cases()
        span = f"folds {min(self.fold_table)}-{max(self.fold_table)}"
        if fold is None:
            raise UserError(f"{self.kind} uses cross-validation: choose a fold for the {split} split ({span})")
        if fold not in self.fold_table:
            raise UserError(f"fold {fold} does not exist for {self.kind} ({span})")
        by_name = {c.name: c for c in self.cases()}
        missing = [n for n in self.fold_table[fold][split] if n not in by_name]
        if missing:
            raise UserError(f"{self.root}: {', '.join(missing)} (fold {fold}, {split}) missing from the dataset")
        return sorted((by_name[n] for n in self.fold_table[fold][split]), key=lambda c: c.name)

    def _split_files(self, split: str, val_fraction: float, seed: int) -> list[SampleFiles]:
        if split == "all":
            return self.cases()
        if split == "test":
            return self._group("test")
        training = self._group("train")
        if "val" in self.groups:
            return training if split == "train" else self.groups["val"]
        n_val = held_out_count(len(training), val_fraction)
        held_out = set(np.random.default_rng(seed).permutation(len(training))[:n_val].tolist())
        return [c for i, c in enumerate(training) if (i in held_out) == (split == "val")]

    def _group(self, name: str) -> list[SampleFiles]:
        group = self.groups.get(name)
        if group is None:
            where = "train/" if name == "train" else "test/"
            raise UserError(f"{self.root}: no {name} split in this layout (a {where} folder with images/ and labels/)")
        if not group:
            raise UserError(f"{self.root}: the {name} split has no images")
        return group


def held_out_count(n_train: int, val_fraction: float) -> int:
    """How many of ``n_train`` training images are held out: rounded, at least 1 and at most n - 1 when n >= 2."""
    n_val = int(np.floor(n_train * val_fraction + 0.5))
    if val_fraction > 0 and n_train >= 2:
        n_val = min(max(n_val, 1), n_train - 1)
    return min(n_val, n_train)


def pair_folders(images: Path, labels: Path | None, masks: Path | None, second: Path | None = None):
    found = {}
    problems = []
    for role, folder in (("images", images), ("labels", labels), ("masks", masks), ("second", second)):
        if folder is None:
            found[role] = None
            continue
        found[role] = list_images(folder)
        if not found[role]:
            problems.append(f"{folder}: empty folder (no image files)")
            if role != "images":
                found[role] = None  # one line for the folder, not one per image
    cases, pairing = pair_files(
        found["images"], found["labels"], found["masks"], found["second"], label_place=str(labels)
    )
    return cases, problems + pairing


def fold_table(dataset: str, name_of=str) -> dict[int, dict[str, list[str]]]:
    """{fold: {split: case names}} of ``dataset`` in the package's folds.json."""
    text = resources.files("patch2image.data").joinpath("folds.json").read_text()
    return {
        entry["fold"]: {split: [name_of(i) for i in entry[split]] for split in ("train", "val", "test")}
        for entry in json.loads(text)[dataset]
    }


def pair_split_folders(root: Path, labels: str, second: str | None = None) -> tuple[dict, list[str]]:
    """``training/`` and ``test/``, each holding ``images/``, ``LABELS/`` and ``mask/`` (the test split also
    ``SECOND/``, a second observer's labels): {"train": cases, "test": cases} and what is wrong, one line each."""
    groups, problems = {}, []
    for split, name in (("train", "training"), ("test", "test")):
        folder = find_child(root, (name,))
        images = find_child(folder, ("images",)) if folder is not None else None
        if images is None:
            problems.append(f"{(folder or root / name) / 'images'}: missing folder")
            groups[split] = []
            continue
        found_labels = find_child(folder, (labels,))
        if found_labels is None:
            problems.append(f"{folder / labels}: missing folder (the labels)")
        found_second = find_child(folder, (second,)) if second and split == "test" else None
        groups[split], found = pair_folders(images, found_labels, find_child(folder, ("mask",)), found_second)
        problems += found
    return groups, problems
