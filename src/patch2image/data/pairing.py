"""Pairing images with their labels, masks and second-observer labels by file name.

Two files pair when their *keys* match: the file name without its extensions (``.ppm.gz`` counts
as one), lower-cased, with the usual label/mask suffixes removed from its end as often as they
occur (``21_training_mask.gif`` -> ``21``, ``im0001.ah.ppm.gz`` -> ``im0001``,
``Image_01L_1stHO.png`` -> ``image_01l``). The sample's name is the image's key with its case kept.
"""

import re
from pathlib import Path

from patch2image.data.sample import SampleFiles

IMAGE_EXTENSIONS = tuple(
    ".png .jpg .jpeg .jpe .tif .tiff .gif .ppm .pgm .pbm .pnm .bmp .webp .jp2 .j2k .tga .ico".split()
)
"""The image files patch2image reads (optionally gzipped: ``.ppm.gz``), in datasets and for ``segment``."""

SUFFIXES = (
    "mask",
    "masks",
    "manual",
    r"manual\d",
    "gt",
    "label",
    "labels",
    "seg",
    "segmentation",
    "annotation",
    "groundtruth",
    r"\d(st|nd|rd|th)ho",
    "od",
    "training",
    "train",
    "test",
    "testing",
    "fov",
    "roi",
    "ah",
    "vk",
)
_SUFFIX = re.compile(r"[._\- ](" + "|".join(SUFFIXES) + r")$", re.IGNORECASE)

IMAGE_FOLDERS = ("images", "image", "img", "imgs", "original", "originals", "raw", "input", "inputs")
LABEL_FOLDERS = (
    "labels",
    "label",
    "manual",
    "1st_manual",
    "gt",
    "groundtruth",
    "ground_truth",
    "annotations",
    "annotation",
    "masks_gt",
    "mask_gt",
    "targets",
    "target",
    "segmentations",
)
MASK_FOLDERS = ("masks", "mask", "fov", "fovs", "fov_masks", "roi", "rois")
SPLIT_FOLDERS = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}


def is_image_file(path: Path) -> bool:
    """Whether the name has an image extension (optionally followed by ``.gz``); hidden files are not."""
    name = path.name.lower()
    if name.startswith("."):
        return False
    if name.endswith(".gz"):
        name = name[:-3]
    return name.endswith(IMAGE_EXTENSIONS)


def list_images(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name."""
    return sorted((p for p in folder.iterdir() if p.is_file() and is_image_file(p)), key=lambda p: p.name)


def without_image_extension(name: str) -> str:
    """``01_test.tif`` -> ``01_test``; ``im0001.ppm.gz`` -> ``im0001``; other names are kept."""
    if name.lower().endswith(".gz"):
        name = name[:-3]
    stem, dot, extension = name.rpartition(".")
    return stem if dot and "." + extension.lower() in IMAGE_EXTENSIONS else name


def sample_name(path: Path) -> str:
    """The name without extensions and known suffixes, case kept (``21_training.tif`` -> ``21``)."""
    name = without_image_extension(path.name)
    while True:
        shorter = _SUFFIX.sub("", name)
        if shorter == name or not shorter:
            return name
        name = shorter


def pair_key(path: Path) -> str:
    return sample_name(path).lower()


def find_child(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The subfolder of ``folder`` whose name is one of ``names`` (case, spaces and dashes ignored)."""
    wanted = {_folder_key(n) for n in names}
    matches = (
        sorted(p for p in folder.iterdir() if p.is_dir() and _folder_key(p.name) in wanted) if folder.is_dir() else []
    )
    if not matches:
        return None
    # Prefer the earliest name in ``names``: "images" over "raw" when a folder holds both.
    order = {_folder_key(n): i for i, n in reversed(list(enumerate(names)))}
    return min(matches, key=lambda p: order[_folder_key(p.name)])


def _folder_key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def pair_files(
    images: list[Path],
    labels: list[Path] | None = None,
    masks: list[Path] | None = None,
    second: list[Path] | None = None,
    label_place: str = "the labels folder",
) -> tuple[list[SampleFiles], list[str]]:
    """Pair image files with label, mask and second-label files by key.

    Parameters
    ----------
    images : list of Path
    labels, masks, second : list of Path or None
        None: the dataset has none of these (no problem is reported for their absence).
    label_place : str
        Where labels were looked for, for the "missing label" message.

    Returns
    -------
    cases : list of SampleFiles, sorted by name
        A missing label, mask or second label is None.
    problems : list of str
        One line per problem, naming the file: image without label, file without image, two
        files with the same key.
    """
    problems: list[str] = []
    by_key = _index(images, problems)
    others = {}
    for role, files in (("label", labels), ("mask", masks), ("second-observer label", second)):
        if files is None:
            continue
        index = _index(files, problems)
        for key, path in index.items():
            if key not in by_key:
                problems.append(f"{path}: {role} without an image (no image is named {sample_name(path)!r})")
        others[role] = index

    cases = []
    for key, image in by_key.items():
        found = {role: index.get(key) for role, index in others.items()}
        if labels is not None and found["label"] is None:
            problems.append(f"{image}: missing label (nothing in {label_place} pairs with it)")
        if masks is not None and found["mask"] is None:
            problems.append(f"{image}: missing field-of-view mask (one will be computed)")
        if second is not None and found["second-observer label"] is None:
            problems.append(f"{image}: missing second-observer label")
        cases.append(
            SampleFiles(
                sample_name(image), image, found.get("label"), found.get("mask"), found.get("second-observer label")
            )
        )
    cases.sort(key=lambda c: c.name)
    return cases, problems


def _index(files: list[Path], problems: list[str]) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in sorted(files):
        key = pair_key(path)
        if key in index:
            problems.append(f"{path}: same name as {index[key].name} once suffixes are removed; pairing is ambiguous")
            continue
        index[key] = path
    return index
