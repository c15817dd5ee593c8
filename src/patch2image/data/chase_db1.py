"""CHASE_DB1: 28 photographs (999x960 JPEG), two observers, 4-fold cross-validation, no FOV masks."""

import re
from pathlib import Path

from patch2image.data.dataset import Dataset, DatasetSpec, fold_table
from patch2image.data.pairing import list_images, pair_files

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
    folds = fold_table("CHASE_DB1", lambda i: f"Image_{i}")
    return DATASET.dataset(root, {"all": cases}, folds, problems)


DATASET = DatasetSpec(
    kind="chase_db1",
    title="CHASE_DB1",
    task="vessels",
    layout="expected Image_NN{L,R}.jpg with *_1stHO.png labels",
    detect=_is_chase,
    open=_open_chase,
    paper_size=(460, 500),
    folds_key="CHASE_DB1",
)
