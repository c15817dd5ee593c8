"""The paper's pre-processing: resize to the paper's scale, then grey, CLAHE, gamma and rescaling.

The result, the network's input, is an (H, W) array for one channel (grey or green) and a (C, H, W)
array for several (``channel="rgb"``): channels first, as the network takes them, so that code which
works on the last two axes (padding, tiles, flips, patches) treats both alike; :func:`as_channels`
gives the (C, H, W) view of either.

OpenCV's CLAHE is the default: it is about 14x faster than scikit-image's ``equalize_adapthist``
(benchmarks/preprocessing.py) and, with the clip limit converted to OpenCV's convention, close to
it (tests/test_preprocessing.py); ``clahe="skimage"`` gives the reference code's function.
"""

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from patch2image.errors import UserError

ORDERS = ("clahe-gamma", "gamma-clahe")
CHANNELS = ("luma", "green", "rgb")


@dataclass(frozen=True)
class Preprocessing:
    """How a photograph becomes the network's input.

    order: "clahe-gamma" (the reference code, default) or "gamma-clahe" (the paper's text).
    clahe: "opencv" or "skimage". gamma: the exponent of the gamma correction.
    channel: "luma" (ITU-R 601 grey, the paper's), "green" (the green channel alone, where vessels
    contrast most and which many vessel segmentation methods use) or "rgb" (the three colour
    channels, each enhanced on its own as the grey image is: a network with 3 input channels).
    extend_fov: continue the retina past the field of view's edge before enhancing
    (:func:`extend_past_field_of_view`), so that neither CLAHE nor the network meets the dark rim.
    """

    order: str = "clahe-gamma"
    gamma: float = 1.7
    clahe: str = "opencv"
    channel: str = "luma"
    extend_fov: bool = False

    def __post_init__(self):
        if self.order not in ORDERS:
            raise UserError(f"preprocessing.order: {self.order!r} is not one of {', '.join(ORDERS)}")
        if self.clahe not in ("opencv", "skimage"):
            raise UserError(f"preprocessing.clahe: {self.clahe!r} is not one of opencv, skimage")
        if self.channel not in CHANNELS:
            raise UserError(f"preprocessing.channel: {self.channel!r} is not one of {', '.join(CHANNELS)}")
        gamma = self.gamma
        if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not 0 < gamma <= 10:
            raise UserError(f"preprocessing.gamma: {gamma!r} is not a number above 0, at most 10")
        if not isinstance(self.extend_fov, bool):
            raise UserError(f"preprocessing.extend_fov: {self.extend_fov!r} is not true or false")

    @property
    def channels(self) -> int:
        """The number of channels of the network's input: the ``in_channels`` its network is built with."""
        return 3 if self.channel == "rgb" else 1

    def __call__(self, rgb: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W) float32 in [0, 1]; (3, H, W) for ``channel="rgb"``.

        ``fov``: the photograph's field-of-view mask at this size, for ``extend_fov`` (found when not given).
        """
        if self.extend_fov:
            from patch2image.data.field_of_view import field_of_view_mask

            rgb = extend_past_field_of_view(rgb, field_of_view_mask(rgb) if fov is None else fov)
        rgb = rescale(rgb.astype(np.float32))
        if self.channel == "rgb":
            return np.stack([self._enhance(rgb[..., c]) for c in range(3)])
        return self._enhance(to_grey(rgb) if self.channel == "luma" else rgb[..., 1])

    def _enhance(self, channel: np.ndarray) -> np.ndarray:
        """One (H, W) channel rescaled to [0, 1], then CLAHE and gamma in the configured order."""
        channel = rescale(channel)
        steps = {"clahe": lambda x: rescale(self._clahe(x)), "gamma": lambda x: rescale(x**self.gamma)}
        for step in self.order.split("-"):
            channel = steps[step](channel)
        return channel

    def _clahe(self, channel: np.ndarray) -> np.ndarray:
        if self.clahe == "skimage":
            from skimage.exposure import equalize_adapthist

            return equalize_adapthist(channel).astype(np.float32)
        # skimage's default clip limit 0.01 of a tile's pixels over 256 bins is 2.56 times the
        # mean bin height, OpenCV's unit; both default to an 8x8 grid of tiles.
        clahe = cv2.createCLAHE(clipLimit=2.56, tileGridSize=(8, 8))
        return clahe.apply(np.round(channel * 255).astype(np.uint8)).astype(np.float32) / 255


def preprocessing_from(settings: dict) -> Preprocessing:
    """The ``Preprocessing`` a weights file's metadata records (its fields as a dictionary)."""
    try:
        return Preprocessing(**settings)
    except TypeError:
        names = ", ".join(f.name for f in dataclasses.fields(Preprocessing))
        raise UserError(f"weights metadata: preprocessing {settings!r} is not {names}") from None


EXTEND_SMOOTHING = 4.0
"""Gaussian width (pixels) that smooths the continued retina outside the field of view."""


def extend_past_field_of_view(rgb: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """The photograph with the retina continued past the field of view's edge (float32, same shape).

    Why: at the edge of the field of view the retina meets the camera's dark surround. CLAHE spends a
    rim tile's contrast on that step and the network sees a bright-to-dark edge it never sees inside,
    so vessels that reach the edge are found less often there (``benchmarks/rim.py``: for a Mini-Unet
    trained on DRIVE, recall on STARE 0.71 within 4% of the FOV's width from its edge, 0.87 further in).
    Continuing the retina outwards, as Soares et al. (2006) extend the border, removes the step.

    Each pixel outside takes the value of the nearest pixel inside, smoothed by a Gaussian of
    ``EXTEND_SMOOTHING`` pixels so that vessels ending at the edge do not continue as streaks (the
    labels there are background). The outermost 2 pixels of the mask, often dimmed by the camera's
    vignetting and by resizing, count as outside. Inside, nothing changes.
    """
    from scipy import ndimage

    image = rgb.astype(np.float32)
    inside = cv2.erode(fov.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if inside.all() or not inside.any():
        return image
    rows, cols = ndimage.distance_transform_edt(~inside, return_distances=False, return_indices=True)
    continued = cv2.GaussianBlur(image[rows, cols], (0, 0), EXTEND_SMOOTHING).reshape(image.shape)
    return np.where(inside[..., None] if image.ndim == 3 else inside, image, continued)


def as_channels(image: np.ndarray) -> np.ndarray:
    """A pre-processed image, (H, W) or (C, H, W), as (C, H, W) with the same values."""
    return image.reshape(-1, *image.shape[-2:])


def rescale(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return ((x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)).astype(np.float32)


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, the weights of the reference code and of scikit-image's ``rgb2gray`` for 8 bits."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an image or probability map to (height, width): area averaging down, bilinear up."""
    height, width = size
    if array.shape[:2] == (height, width):
        return array
    shrinking = height * width < array.shape[0] * array.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    source = array.astype(np.float32) if array.dtype == bool else array
    return cv2.resize(source, (width, height), interpolation=interpolation)


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a binary mask, then binarise it at 0.5 (as the reference code: labels are binarised after resizing)."""
    return resize(label.astype(np.float32), size) >= 0.5


def round_to_multiple(size: tuple[float, float], divisor: int = 4) -> tuple[int, int]:
    """The nearest sides that are multiples of ``divisor`` (a network that halves twice needs 4)."""
    return tuple(max(divisor, int(round(s / divisor)) * divisor) for s in size)
