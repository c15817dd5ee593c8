"""STARE: 20 photographs (700x605, gzipped PPM or plain), two observers, 5-fold cross-validation, no FOV masks."""

from pathlib import Path

from patch2image.data.dataset import Dataset, DatasetSpec, fold_table, pair_folders
from patch2image.data.pairing import find_child


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
    cases, problems = pair_folders(images, labels, None, second)
    folds = fold_table("STARE", lambda i: f"im{int(i):04d}")
    return DATASET.dataset(root, {"all": cases}, folds, problems)


DATASET = DatasetSpec(
    kind="stare",
    title="STARE",
    task="vessels",
    layout="expected stare-images/ and labels-ah/",
    detect=_is_stare,
    open=_open_stare,
    paper_size=(508, 600),
    folds_key="STARE",
)
