"""What a dataset yields: the files of one case, and the case loaded into arrays."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SampleFiles:
    """The files of one case. ``fov`` is None where the dataset has no mask: it is then computed."""

    name: str
    image: Path
    label: Path | None = None
    fov: Path | None = None
    second_label: Path | None = None


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

    @property
    def original_size(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]
