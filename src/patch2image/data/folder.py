"""Your own data: a folder of images/ and labels/ [masks/], or train/ and test/ [val/] each holding them."""

from pathlib import Path

from patch2image.data.dataset import TASKS, Dataset, DatasetSpec, pair_folders
from patch2image.data.pairing import IMAGE_FOLDERS, LABEL_FOLDERS, MASK_FOLDERS, SPLIT_FOLDERS, find_child
from patch2image.errors import UserError


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
    cases, problems = pair_folders(Path(images), _maybe(labels), _maybe(masks))
    return DATASET.dataset(Path(images), {"test": cases}, problems=problems, task=task, labelled=labels is not None)


def _maybe(path) -> Path | None:
    return None if path is None else Path(path)


def _split_folders(root: Path) -> dict[str, Path]:
    folders = {}
    for split, names in SPLIT_FOLDERS.items():
        folder = find_child(root, names)
        if folder is not None and find_child(folder, IMAGE_FOLDERS) is not None:
            folders[split] = folder
    return folders


def _is_folder(root: Path) -> bool:
    return bool(_split_folders(root)) or find_child(root, IMAGE_FOLDERS) is not None


def open_folder(root: Path, task: str) -> Dataset:
    splits = _split_folders(root)
    if not splits:
        splits = {"test": root}
    parts = {split: _subfolders(folder) for split, folder in splits.items()}
    labelled = any(p[1] is not None for p in parts.values())
    groups, problems = {}, []
    for split, (images, labels, masks) in parts.items():
        if labelled and labels is None:
            problems.append(f"{splits[split]}: no labels folder ({', '.join(LABEL_FOLDERS[:4])}, ...)")
        groups[split], found = pair_folders(images, labels, masks)
        problems += found
    return DATASET.dataset(root, groups, problems=problems, task=task, labelled=labelled)


def _subfolders(folder: Path) -> tuple[Path, Path | None, Path | None]:
    return find_child(folder, IMAGE_FOLDERS), find_child(folder, LABEL_FOLDERS), find_child(folder, MASK_FOLDERS)


DATASET = DatasetSpec(
    kind="folder",
    title="Own data",
    task="vessels",
    layout="expected images/ and labels/ [masks/], or train/ and test/ holding them",
    detect=_is_folder,
    open=lambda root: open_folder(root, "vessels"),
)
