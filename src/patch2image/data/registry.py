"""The registry of dataset kinds, and opening a dataset from its folder.

Each kind lives in its own module (``drive``, ``stare``, ``chase_db1``, ``idrid``, ``folder``) as a
:class:`DatasetSpec`; adding a dataset is one module and one line here. Layouts: ``docs/datasets.md``.
"""

from pathlib import Path

from patch2image.data import chase_db1, drive, folder, idrid, stare
from patch2image.data.dataset import TASKS, Dataset, DatasetSpec
from patch2image.data.folder import open_folder
from patch2image.errors import UserError

DATASETS: dict[str, DatasetSpec] = {
    spec.kind: spec for spec in (drive.DATASET, stare.DATASET, chase_db1.DATASET, idrid.DATASET, folder.DATASET)
}
"""Every kind, in the order layouts are tried when none is given (``folder``, the loosest, last)."""

_NOT_A_LAYOUT = "not a DRIVE, STARE, CHASE_DB1, IDRiD or images/labels folder layout"


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
        One of ``DATASETS``; detected from the layout when left out.
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
    if kind is not None and kind not in DATASETS:
        raise UserError(f"dataset kind {kind!r} is not one of {', '.join(DATASETS)}")
    if task is not None and task not in TASKS:
        raise UserError(f"task {task!r} is not one of {', '.join(TASKS)}")
    if kind is None:
        kind = next((k for k, spec in DATASETS.items() if spec.detect(root)), None)
        if kind is None:
            raise UserError(f"{root}: {_NOT_A_LAYOUT}")
    elif not DATASETS[kind].detect(root):
        raise UserError(f"{root}: not a {kind} layout ({DATASETS[kind].layout})")
    if kind == "folder":
        return open_folder(root, task or "vessels")
    return DATASETS[kind].open(root)
