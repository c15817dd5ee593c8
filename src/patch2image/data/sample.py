"""What a dataset yields: the files of one case, and the case loaded into arrays."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patch2image.data.field_of_view import FOV_METHOD, field_of_view_mask
from patch2image.data.io import read_image, read_label_values, read_mask
from patch2image.errors import UserError


@dataclass(frozen=True)
class SampleFiles:
    """The files of one case. ``fov`` is None where the dataset has no mask: it is then computed."""

    name: str
    image: Path
    label: Path | None = None
    fov: Path | None = None
    second_label: Path | None = None
    artery_vein: Path | None = None  # LES-AV's artery/vein map, kept for later work (not trained on)


@dataclass
class Sample:
    """One case in memory, at its original size.

    image: (H, W, 3) uint8 RGB. label, fov, second_label: (H, W) bool.
    fov_source: where the mask comes from ("dataset" or the name of the method that computed it).
    """

    name: str
    image: np.ndarray
    label: np.ndarray | None
    fov: np.ndarray
    fov_source: str
    second_label: np.ndarray | None = None
    artery_vein: np.ndarray | None = None  # (H, W) uint8: 0 background, 1 artery, 2 vein, 3 uncertain

    @property
    def original_size(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]


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
    return Sample(files.name, image, label, fov, source, second, _read_artery_vein(files, image))


def _read_artery_vein(files: SampleFiles, image: np.ndarray) -> np.ndarray | None:
    if files.artery_vein is None:
        return None
    values = read_label_values(files.artery_vein)
    if values.shape[:2] != image.shape[:2]:
        raise UserError(size_mismatch(files.artery_vein, values.shape, files.image, image.shape))
    return values.astype(np.uint8)


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
