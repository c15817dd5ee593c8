"""LES-AV: 22 photographs (1620x1444, one 2196x1958; a 30 degree camera), the source repository's 11/11 split,
vessel labels, artery/vein labels and FOV masks."""

import dataclasses
from pathlib import Path

from patch2image.data.dataset import Dataset, DatasetSpec, pair_split_folders
from patch2image.data.pairing import find_child, list_images, sample_name

ARTERY_VEIN_CLASSES = {0: "background", 1: "artery", 2: "vein", 3: "uncertain"}
"""The grey values of ``av/N.png``."""


def _is_les_av(root: Path) -> bool:
    training = find_child(root, ("training",))
    return (
        training is not None
        and find_child(training, ("vessels",)) is not None
        and find_child(training, ("av",)) is not None
    )


def _open_les_av(root: Path) -> Dataset:
    groups, problems = pair_split_folders(root, "vessels")
    for split, name in (("train", "training"), ("test", "test")):
        folder = find_child(root, (name,))
        groups[split] = _with_artery_vein(groups[split], folder and find_child(folder, ("av",)), problems)
    return DATASET.dataset(root, groups, problems=problems)


def _with_artery_vein(cases, folder: Path | None, problems: list[str]):
    if folder is None:
        return cases
    by_name = {sample_name(path): path for path in list_images(folder)}
    for name in sorted(set(by_name) - {case.name for case in cases}):
        problems.append(f"{by_name[name]}: artery/vein label without an image")
    return [dataclasses.replace(case, artery_vein=by_name.get(case.name)) for case in cases]


DATASET = DatasetSpec(
    kind="les_av",
    title="LES-AV",
    task="vessels",
    layout="expected training/{images,vessels,av,mask} and test/{images,vessels,av,mask}",
    detect=_is_les_av,
    open=_open_les_av,
)
