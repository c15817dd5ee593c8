"""DRIVE: 40 photographs (565x584), official 20/20 split, two observers on the test set, official FOV masks."""

from pathlib import Path

from patch2image.data.dataset import Dataset, DatasetSpec, pair_split_folders
from patch2image.data.pairing import find_child


def _is_drive(root: Path) -> bool:
    training, test = find_child(root, ("training",)), find_child(root, ("test",))
    return (
        training is not None
        and test is not None
        and find_child(training, ("images",)) is not None
        and find_child(training, ("1st_manual",)) is not None
    )


def _open_drive(root: Path) -> Dataset:
    groups, problems = pair_split_folders(root, "1st_manual", second="2nd_manual")
    return DATASET.dataset(root, groups, problems=problems)


DATASET = DatasetSpec(
    kind="drive",
    title="DRIVE",
    task="vessels",
    layout="expected training/{images,1st_manual,mask} and test/{images,1st_manual,mask}",
    detect=_is_drive,
    open=_open_drive,
    paper_size=(584, 568),
)
