"""Datasets: DRIVE, STARE, CHASE_DB1, IDRiD in their official layouts, and folders of images and labels.

A :class:`Dataset` knows its files and splits; :func:`load_sample` turns one case's files into arrays.
Layouts, sizes and folds: ``datasets/README.md`` and ``folds.json`` (package data).
"""

import json
import re
from importlib import resources
from pathlib import Path

import numpy as np

from patch2image.data.field_of_view import FOV_METHOD, field_of_view_mask
from patch2image.data.folder import (
    IMAGE_FOLDERS,
    LABEL_FOLDERS,
    MASK_FOLDERS,
    SPLIT_FOLDERS,
    find_child,
    list_images,
    pair_files,
)
from patch2image.data.io import read_image, read_mask
from patch2image.data.sample import Sample, SampleFiles
from patch2image.errors import UserError

KINDS = ("drive", "stare", "chase_db1", "idrid", "folder")
SPLITS = ("train", "val", "test", "all")
TASKS = ("vessels", "optic_disc")
PAPER_SIZES = {"drive": (584, 568), "stare": (508, 600), "chase_db1": (460, 500), "idrid": (284, 428)}
"""(height, width) every image is resized to before processing, as in the paper."""

_NOT_A_LAYOUT = "not a DRIVE, STARE, CHASE_DB1, IDRiD or images/labels folder layout"


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

    Attributes
    ----------
    paper_size : tuple (height, width) or None
        The size the paper resizes this dataset to; None for folders.
    """

    def __init__(self, kind, root, task, groups, fold_table=None, problems=(), labelled=True):
        self.kind = kind
        self.root = Path(root)
        self.task = task
        self.paper_size = PAPER_SIZES.get(kind)
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


def load_sample(files: SampleFiles) -> Sample:
    """Read one case: image, label, second label and field-of-view mask (the dataset's or computed).

    Raises
    ------
    UserError
        A file is unreadable, or a label or mask differs in size from its image.
    """
    image = read_image(files.image)
    label = _read_matching(files.label, files.image, image)
    second = _read_matching(files.second_label, files.image, image)
    if files.fov is not None:
        fov, source = _read_matching(files.fov, files.image, image), "dataset"
    else:
        fov, source = field_of_view_mask(image), f"computed: {FOV_METHOD}"
    return Sample(files.name, image, label, fov, source, second)


def _read_matching(path: Path | None, image_path: Path, image: np.ndarray) -> np.ndarray | None:
    if path is None:
        return None
    mask = read_mask(path)
    if mask.shape != image.shape[:2]:
        raise UserError(size_mismatch(path, mask.shape, image_path, image.shape))
    return mask


def size_mismatch(path: Path, shape: tuple, image_path: Path, image_shape: tuple) -> str:
    """The one-line message for a label or mask whose size differs from its image's."""
    return f"{path}: size {shape[1]}x{shape[0]} differs from its image {image_path} {image_shape[1]}x{image_shape[0]}"


def open_dataset(path: str | Path, kind: str | None = None, task: str | None = None) -> Dataset:
    """Open a dataset from its root folder.

    Parameters
    ----------
    path : str or Path
        DRIVE (``training/``, ``test/``), STARE (``stare-images/``, ``labels-ah/``, gzipped or
        not), CHASE_DB1 (flat ``Image_NN{L,R}*``), IDRiD (``A. Segmentation/``), or a folder: one
        holding ``images/`` and ``labels/`` [``masks/``], or ``train/`` and ``test/`` [``val/``] each
        holding them.
    kind : str, optional
        One of ``KINDS``; detected from the layout when left out.
    task : {"vessels", "optic_disc"}, optional
        For folders (default "vessels"); the official datasets know theirs.

    Raises
    ------
    UserError
        The path is missing or its layout matches no kind (or not the given one).
    """
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder" if not root.exists() else f"{root}: not a folder")
    if kind is not None and kind not in KINDS:
        raise UserError(f"dataset kind {kind!r} is not one of {', '.join(KINDS)}")
    if task is not None and task not in TASKS:
        raise UserError(f"task {task!r} is not one of {', '.join(TASKS)}")
    if kind is None:
        kind = next((k for k in KINDS if _DETECT[k](root)), None)
        if kind is None:
            raise UserError(f"{root}: {_NOT_A_LAYOUT}")
    elif not _DETECT[kind](root):
        raise UserError(f"{root}: not a {kind} layout ({_EXPECTED[kind]})")
    if kind == "folder":
        return _open_folder(root, task or "vessels")
    return _READERS[kind](root)


def folder_dataset(images, labels=None, masks=None, task: str = "vessels") -> Dataset:
    """A dataset from separate folders (``--images DIR --labels DIR [--masks DIR]``), all in "test" and "all".

    Without ``labels`` the images stand alone (for segmenting); with it, an image whose label is
    missing is a problem for ``check_dataset`` and an error for ``Dataset.files``.
    """
    folders = [Path(images)] + [Path(p) for p in (labels, masks) if p is not None]
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder" if not folder.exists() else f"{folder}: not a folder")
    if task not in TASKS:
        raise UserError(f"task {task!r} is not one of {', '.join(TASKS)}")
    cases, problems = _pair_folders(Path(images), _maybe(labels), _maybe(masks))
    return Dataset("folder", Path(images), task, {"test": cases}, problems=problems, labelled=labels is not None)


def _maybe(path) -> Path | None:
    return None if path is None else Path(path)


def _pair_folders(images: Path, labels: Path | None, masks: Path | None, second: Path | None = None):
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


# --- folders -------------------------------------------------------------------------------------------------


def _split_folders(root: Path) -> dict[str, Path]:
    folders = {}
    for split, names in SPLIT_FOLDERS.items():
        folder = find_child(root, names)
        if folder is not None and find_child(folder, IMAGE_FOLDERS) is not None:
            folders[split] = folder
    return folders


def _is_folder(root: Path) -> bool:
    return bool(_split_folders(root)) or find_child(root, IMAGE_FOLDERS) is not None


def _open_folder(root: Path, task: str) -> Dataset:
    splits = _split_folders(root)
    if not splits:
        splits = {"test": root}
    parts = {split: _subfolders(folder) for split, folder in splits.items()}
    labelled = any(p[1] is not None for p in parts.values())
    groups, problems = {}, []
    for split, (images, labels, masks) in parts.items():
        if labelled and labels is None:
            problems.append(f"{splits[split]}: no labels folder ({', '.join(LABEL_FOLDERS[:4])}, ...)")
        groups[split], found = _pair_folders(images, labels, masks)
        problems += found
    return Dataset("folder", root, task, groups, problems=problems, labelled=labelled)


def _subfolders(folder: Path) -> tuple[Path, Path | None, Path | None]:
    return find_child(folder, IMAGE_FOLDERS), find_child(folder, LABEL_FOLDERS), find_child(folder, MASK_FOLDERS)


# --- DRIVE ---------------------------------------------------------------------------------------------------


def _is_drive(root: Path) -> bool:
    training, test = find_child(root, ("training",)), find_child(root, ("test",))
    return (
        training is not None
        and test is not None
        and find_child(training, ("images",)) is not None
        and find_child(training, ("1st_manual",)) is not None
    )


def _open_drive(root: Path) -> Dataset:
    groups, problems = {}, []
    for split, name in (("train", "training"), ("test", "test")):
        folder = find_child(root, (name,))
        images = find_child(folder, ("images",))
        if images is None:
            problems.append(f"{folder / 'images'}: missing folder")
            groups[split] = []
            continue
        labels = find_child(folder, ("1st_manual",))
        if labels is None:
            problems.append(f"{folder / '1st_manual'}: missing folder (the labels)")
        masks = find_child(folder, ("mask",))
        second = find_child(folder, ("2nd_manual",)) if split == "test" else None
        groups[split], found = _pair_folders(images, labels, masks, second)
        problems += found
    return Dataset("drive", root, "vessels", groups, problems=problems)


# --- STARE ---------------------------------------------------------------------------------------------------


def _stare_folders(root: Path):
    return (
        find_child(root, ("stare-images", "stare_images", "images")),
        find_child(root, ("labels-ah", "labels_ah")),
        find_child(root, ("labels-vk", "labels_vk")),
    )


def _is_stare(root: Path) -> bool:
    images, labels, _ = _stare_folders(root)
    return images is not None and labels is not None


def _open_stare(root: Path) -> Dataset:
    images, labels, second = _stare_folders(root)
    cases, problems = _pair_folders(images, labels, None, second)
    folds = _fold_table("STARE", lambda i: f"im{int(i):04d}")
    return Dataset("stare", root, "vessels", {"all": cases}, folds, problems)


# --- CHASE_DB1 -----------------------------------------------------------------------------------------------

_CHASE = re.compile(r"^image_\d+[lr](_(1st|2nd)ho)?\.", re.IGNORECASE)


def _is_chase(root: Path) -> bool:
    return any(_CHASE.match(p.name) for p in list_images(root))


def _open_chase(root: Path) -> Dataset:
    files = [p for p in list_images(root) if _CHASE.match(p.name)]
    kinds = {"": [], "1st": [], "2nd": []}
    for path in files:
        kinds[_CHASE.match(path.name).group(2) or ""].append(path)
    cases, problems = pair_files(kinds[""], kinds["1st"], None, kinds["2nd"], label_place=f"{root} (*_1stHO)")
    if not kinds[""]:
        problems.append(f"{root}: no Image_NN{{L,R}} images")
    folds = _fold_table("CHASE_DB1", lambda i: f"Image_{i}")
    return Dataset("chase_db1", root, "vessels", {"all": cases}, folds, problems)


# --- IDRiD ---------------------------------------------------------------------------------------------------


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _child_containing(folder: Path | None, *parts: str) -> Path | None:
    """The subfolder whose name, lower-cased and without punctuation, contains one of ``parts``."""
    if folder is None or not folder.is_dir():
        return None
    return next((p for p in sorted(folder.iterdir()) if p.is_dir() and any(s in _norm(p.name) for s in parts)), None)


def _idrid_base(root: Path) -> Path | None:
    for base in (root, _child_containing(root, "segmentation")):
        if _child_containing(base, "originalimages") is not None:
            return base
    return None


def _is_idrid(root: Path) -> bool:
    return _idrid_base(root) is not None


def _open_idrid(root: Path) -> Dataset:
    base = _idrid_base(root)
    originals = _child_containing(base, "originalimages")
    truths = _child_containing(base, "groundtruths", "groundtruth")
    groups, problems = {}, []
    for split, part in (("train", "training"), ("test", "testing")):
        images = _child_containing(originals, part)
        if images is None:
            problems.append(f"{originals}: no {part} set folder")
            groups[split] = []
            continue
        labels = _child_containing(_child_containing(truths, part), "opticdisc")
        if labels is None:
            problems.append(f"{truths or base}: no optic disc ground truths for the {part} set")
        groups[split], found = _pair_folders(images, labels, None)
        problems += found
    return Dataset("idrid", root, "optic_disc", groups, problems=problems)


# --- shared --------------------------------------------------------------------------------------------------


def _fold_table(dataset: str, name_of) -> dict[int, dict[str, list[str]]]:
    text = resources.files("patch2image.data").joinpath("folds.json").read_text()
    return {
        entry["fold"]: {split: [name_of(i) for i in entry[split]] for split in ("train", "val", "test")}
        for entry in json.loads(text)[dataset]
    }


_DETECT = {
    "drive": _is_drive,
    "stare": _is_stare,
    "chase_db1": _is_chase,
    "idrid": _is_idrid,
    "folder": _is_folder,
}
_READERS = {"drive": _open_drive, "stare": _open_stare, "chase_db1": _open_chase, "idrid": _open_idrid}
_EXPECTED = {
    "drive": "expected training/{images,1st_manual,mask} and test/{images,1st_manual,mask}",
    "stare": "expected stare-images/ and labels-ah/",
    "chase_db1": "expected Image_NN{L,R}.jpg with *_1stHO.png labels",
    "idrid": "expected A. Segmentation/1. Original Images and 2. All Segmentation Groundtruths",
    "folder": "expected images/ and labels/ [masks/], or train/ and test/ holding them",
}
