"""IDRiD, optic disc: 81 photographs (4288x2848 JPEG), official 54/27 split, no FOV masks."""

import re
from pathlib import Path

from patch2image.data.dataset import Dataset, DatasetSpec, pair_folders


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
        groups[split], found = pair_folders(images, labels, None)
        problems += found
    return DATASET.dataset(root, groups, problems=problems)


DATASET = DatasetSpec(
    kind="idrid",
    title="IDRiD (optic disc)",
    task="optic_disc",
    layout="expected A. Segmentation/1. Original Images and 2. All Segmentation Groundtruths",
    detect=_is_idrid,
    open=_open_idrid,
    paper_size=(284, 428),
)
