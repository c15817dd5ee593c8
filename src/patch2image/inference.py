"""Segmentation of pre-processed images, whole or patch by patch, and of photographs at any scale.

Three levels:

- :func:`predict_image`: the image-level segmentation, one forward pass, or overlapping tiles with
  blending when the image exceeds a pixel budget, so that memory is bounded by the tile, not the image.
- :func:`predict_patches`: the paper's patch-level segmentation ("Patch" row): 32x32 patches at a
  stride, overlapping predictions averaged, vectorised with ``unfold``/``fold`` one band of patch rows
  at a time.
- :class:`Segmenter`: a photograph at its original size -> probabilities at its original size, through
  the scale and pre-processing the weights' metadata records (see :func:`working_size`).

A pre-processed image is (H, W) for a one-channel network and (C, H, W) for C channels (colour input,
``preprocessing.channel: rgb``); see :mod:`patch2image.preprocessing`. ``model`` is either a
``torch.nn.Module`` returning logits (the registered networks) or any object with a
``probabilities(x: ndarray (N,C,H,W) float32) -> ndarray (N,1,H,W)`` method (a runner of
:mod:`patch2image.runtime.backends`). Image mode imports PyTorch only for a ``torch.nn.Module``.

Memory bound of :func:`predict_image` in tiles: the full-size arrays are the input and its padded
copy (4 bytes per pixel and channel each), the blended sum and the weight sum (4 bytes per pixel each),
plus the caller's RGB and output, and the network works on one tile of at most ``max_pixels`` pixels
at a time (``tta`` runs its flips one by one).
A tile's activations take about 160 bytes per pixel for Light, 830 for Mini-Unet and 1,400 for Dense
(measured peaks), so 0.25, 1.2 and 2.1 GB with the default budget of 1.5 megapixels, whatever the
image size. Measured with Light on a 4288x2848 IDRiD-sized image: +418 MiB peak in tiles, +1,915 MiB
in one pass (tests/test_inference.py checks the bound on a smaller image).
"""

import contextlib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from patch2image.data import field_of_view_mask, fov_diameter, read_image
from patch2image.data.io import MAX_MEGAPIXELS
from patch2image.errors import UserError
from patch2image.fundus_check import check_photograph, with_check
from patch2image.networks import size_divisor
from patch2image.parameters import COUNT, POSITIVE, SCALE, Interval, OneOf, check
from patch2image.postprocessing import Postprocessing
from patch2image.preprocessing import as_channels, preprocessing_from, resize, resize_label, round_to_multiple
from patch2image.runtime.backends import load_backend
from patch2image.runtime.precision import PRECISIONS
from patch2image.weights import WeightsMetadata

DEFAULT_MAX_PIXELS = 1_500_000
"""Images with more pixels (after padding to the network's size divisor) are segmented in tiles."""

DEFAULT_OVERLAP = 192
"""Tile overlap in pixels. Each tile ignores its outer ``overlap // 4`` pixels at inner edges, so the
result equals one pass exactly for networks whose receptive-field radius is within that margin (48 px:
Light has 21, Mini-Unet 40); Dense (about 90) is blended smoothly across the overlap instead."""

DEFAULT_BATCH_SIZE = 256
"""Patches per forward pass in patch mode (Light: about 0.15 GB of activations)."""


# --------------------------------------------------------------------------- forward passes


def _is_torch_module(model) -> bool:
    torch = sys.modules.get("torch")  # not imported yet: then no torch.nn.Module exists to be this model
    return torch is not None and isinstance(model, torch.nn.Module)


@contextlib.contextmanager
def _predictor(model, precision: str = "fp32"):
    """Yield an object with ``probabilities(x)``; a torch model runs in eval mode, restored afterwards."""
    if not _is_torch_module(model):
        yield model
        return
    import torch

    from patch2image.runtime.torch_runner import TorchProbabilities

    was_training = model.training
    model.eval()
    model.to(memory_format=torch.channels_last)
    try:
        with torch.inference_mode():
            yield TorchProbabilities(model, precision)
    finally:
        model.train(was_training)


def _as_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim not in (2, 3):
        raise ValueError(f"expected a pre-processed image of shape (H, W) or (C, H, W), got shape {image.shape}")
    if image.size == 0:
        raise ValueError("empty image")
    return image


def _pad_sides(image: np.ndarray, before: tuple[int, int], after: tuple[int, int]) -> np.ndarray:
    """``image`` padded on its last two axes (height, width), channels untouched."""
    # Reflect (not zeros) so the padded border looks like image to the network.
    pad = [(0, 0)] * (image.ndim - 2) + list(zip(before, after, strict=True))
    return np.pad(image, pad, mode="reflect" if min(image.shape[-2:]) > 1 else "edge")


def _pad_to_multiple(image: np.ndarray, divisor: int) -> np.ndarray:
    height, width = image.shape[-2:]
    return _pad_sides(image, (0, 0), (-height % divisor, -width % divisor))


def _batch_of_one(image: np.ndarray) -> np.ndarray:
    """(H, W) or (C, H, W) -> the network's (1, C, H, W)."""
    return np.ascontiguousarray(as_channels(image))[None]


FLIPS = ((), (-1,), (-2,), (-2, -1))
"""Test-time augmentation: the image as it is, mirrored left-right, upside down, and both (vessels have
no preferred orientation). Across cameras it adds .006-.008 Dice for four times the time."""


def _flip(x: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    """``x`` flipped along ``dims``; the flip is its own inverse."""
    return np.ascontiguousarray(np.flip(x, dims)) if dims else x


def _forward(predictor, image: np.ndarray, tta: bool) -> np.ndarray:
    """(H, W) probabilities of one image whose sides fit the network; with TTA, the mean over ``FLIPS``."""
    x = _batch_of_one(image)
    flips = FLIPS if tta else FLIPS[:1]
    prob = sum(_flip(predictor.probabilities(_flip(x, dims)), dims) for dims in flips) / len(flips)
    return prob.reshape(image.shape[-2:])


# --------------------------------------------------------------------------- image mode


def predict_image(
    model,
    image: np.ndarray,
    *,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    precision: str = "fp32",
    tta: bool = False,
) -> np.ndarray:
    """Image-level segmentation of a pre-processed image.

    Parameters
    ----------
    model : torch.nn.Module or object with ``probabilities``
        A network returning logits (run in eval mode, restored afterwards), or a probability runner
        such as ``patch2image.runtime.export.OnnxModel``.
    image : ndarray of shape (H, W), or (C, H, W) for a network with C input channels
        The pre-processed image, float in [0, 1], at the network's training scale.
    tile : int, optional
        Largest tile side in pixels (rounded down to a multiple of the network's size divisor). By default the image is
        segmented in one pass when it has at most ``max_pixels`` pixels, and in tiles of at most
        ``max_pixels`` pixels otherwise.
    overlap : int
        Overlap of neighbouring tiles in pixels, at most half the tile side; see ``DEFAULT_OVERLAP``.
    max_pixels : int
        Pixel budget of one forward pass, which bounds the network's memory.
    precision : {"fp32", "bf16"}
        bf16 runs the torch network under autocast; ignored by other runners.
    tta : bool
        Average the predictions of the image and its three flips (``FLIPS``).

    Returns
    -------
    prob : ndarray of shape (H, W), float32
        Probabilities in [0, 1].
    """
    image = _as_image(image)
    height, width = image.shape[-2:]
    divisor = size_divisor(model)
    padded = _pad_to_multiple(image, divisor)
    tile_size = _tile_size(padded.shape[-2:], tile, max_pixels, divisor)
    with _predictor(model, precision) as predictor:
        if tile_size == padded.shape[-2:]:
            prob = _forward(predictor, padded, tta)
        else:
            prob = _predict_tiles(predictor, padded, tile_size, overlap, tta, divisor)
    return prob[:height, :width]


def _tile_size(shape: tuple[int, int], tile: int | None, max_pixels: int, d: int = 4) -> tuple[int, int]:
    """(height, width) of the tiles, multiples of the size divisor ``d``; ``shape`` itself means one pass."""
    height, width = shape
    if tile is not None:
        side = max(d, tile // d * d)
        return min(height, side), min(width, side)
    if height * width <= max_pixels:
        return height, width
    side = max(d, math.isqrt(int(max_pixels)) // d * d)
    # Long thin images get long thin tiles: fewer seams for the same budget.
    tile_h = min(height, side)
    tile_w = min(width, max(d, max_pixels // tile_h // d * d))
    tile_h = min(height, max(d, max_pixels // tile_w // d * d))
    return tile_h, tile_w


def tile_starts(length: int, tile: int, overlap: int, divisor: int = 4) -> list[int]:
    """Starts of tiles of side ``tile`` covering ``length`` pixels, overlapping by at least ``overlap``.

    All multiples of ``divisor``, the network's size divisor (so its down-sampling grid is the same in
    every tile as in the whole image), spread evenly, the first at 0 and the last at ``length - tile``.
    """
    if length <= tile:
        return [0]
    step = max(divisor, (tile - overlap) // divisor * divisor)
    count = math.ceil((length - tile) / step) + 1
    spread = (length - tile) / (count - 1)
    return [int(i * spread) // divisor * divisor for i in range(count - 1)] + [length - tile]


def _ramp(length: int, lead: bool, trail: bool, overlap: int) -> np.ndarray:
    """1-D blending weight: 0 on the outer quarter of the overlap at inner edges, then linear up to 1.

    Two neighbours' ramps sum to 1 across a nominal overlap, and every pixel keeps a positive weight in
    some tile as long as tiles overlap by more than half of ``overlap``.
    """
    margin = overlap // 4
    width = max(1, overlap - 2 * margin)
    distance = np.arange(length, dtype=np.float32) + 0.5
    weight = np.ones(length, np.float32)
    if lead:
        weight = np.minimum(weight, np.clip((distance - margin) / width, 0, 1))
    if trail:
        weight = np.minimum(weight, np.clip((distance[::-1] - margin) / width, 0, 1))
    return weight


def _predict_tiles(predictor, padded, tile_size: tuple[int, int], overlap: int, tta: bool, divisor: int) -> np.ndarray:
    height, width = padded.shape[-2:]
    tile_h, tile_w = tile_size
    # A tile must reach past its own zero-weight margins.
    overlap = max(0, min(overlap, min(tile_h, tile_w) // 2 // divisor * divisor))
    total = np.zeros((height, width), np.float32)
    weights = np.zeros((height, width), np.float32)
    for y in tile_starts(height, tile_h, overlap, divisor):
        wy = _ramp(tile_h, y > 0, y + tile_h < height, overlap)
        for x in tile_starts(width, tile_w, overlap, divisor):
            wx = _ramp(tile_w, x > 0, x + tile_w < width, overlap)
            weight = wy[:, None] * wx[None, :]
            prob = _forward(predictor, padded[..., y : y + tile_h, x : x + tile_w], tta)
            total[y : y + tile_h, x : x + tile_w] += weight * prob
            weights[y : y + tile_h, x : x + tile_w] += weight
    np.divide(total, weights, out=total, where=weights > 0)
    return total


# --------------------------------------------------------------------------- patch mode


def predict_patches(
    model,
    image: np.ndarray,
    patch_size: int = 32,
    stride: int = 2,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    precision: str = "fp32",
) -> np.ndarray:
    """The paper's patch-level segmentation: every patch predicted alone, overlapping predictions averaged.

    The image is reflect-padded by ``patch_size - stride`` before and enough after that every pixel is
    covered by the same number of patches ((patch_size / stride)^2 when the stride divides the size).
    Patches are cut with ``unfold`` and their predictions summed back with ``fold``, one band of patch
    rows at a time, so memory is bounded by ``batch_size`` patches (plus one band of about
    ``batch_size`` patches when a single row holds more).

    Parameters
    ----------
    model : torch.nn.Module or object with ``probabilities``
    image : ndarray of shape (H, W), or (C, H, W) for a network with C input channels
        The pre-processed image at the network's training scale.
    patch_size : int
        Side of the square patches, a multiple of 4 (32 in the paper).
    stride : int
        Distance between neighbouring patches, at most ``patch_size`` (2 in the paper's tables).
    batch_size : int
        Patches per forward pass.
    precision : {"fp32", "bf16"}

    Returns
    -------
    prob : ndarray of shape (H, W), float32
    """
    import torch
    from torch.nn import functional as F

    image = _as_image(image)
    if patch_size % 4 or patch_size <= 0:
        raise ValueError(f"patch_size must be a positive multiple of 4, got {patch_size}")
    if not 1 <= stride <= patch_size:
        raise ValueError(f"stride must be between 1 and patch_size ({patch_size}), got {stride}")
    height, width = image.shape[-2:]
    before = patch_size - stride
    rows = (before + height - 1) // stride + 1
    cols = (before + width - 1) // stride + 1
    after_y = (rows - 1) * stride + patch_size - before - height
    after_x = (cols - 1) * stride + patch_size - before - width
    padded = torch.from_numpy(_batch_of_one(_pad_sides(image, (before, before), (after_y, after_x))))
    channels, padded_height, padded_width = padded.shape[1:]
    total = torch.zeros((padded_height, padded_width), dtype=torch.float32)
    band_rows = max(1, batch_size // cols)
    with _predictor(model, precision) as predictor:
        for row in range(0, rows, band_rows):
            count = min(band_rows, rows - row)
            top, band_height = row * stride, (count - 1) * stride + patch_size
            band = padded[:, :, top : top + band_height]
            columns = F.unfold(band, patch_size, stride=stride)  # (1, C*P*P, count * cols)
            patches = columns[0].T.reshape(-1, channels, patch_size, patch_size)
            batches = (patches[i : i + batch_size].numpy() for i in range(0, len(patches), batch_size))
            prob = torch.from_numpy(np.concatenate([predictor.probabilities(batch) for batch in batches]))
            columns = prob.reshape(len(patches), -1).T[None]
            summed = F.fold(columns, (band_height, padded_width), patch_size, stride=stride)
            total[top : top + band_height] += summed[0, 0]
    counts = np.outer(
        _coverage(padded_height, rows, patch_size, stride), _coverage(padded_width, cols, patch_size, stride)
    )
    prob = total.numpy() / counts
    return prob[before : before + height, before : before + width]


def _coverage(length: int, count: int, patch_size: int, stride: int) -> np.ndarray:
    """How many patches, starting every ``stride`` pixels, cover each of ``length`` pixels."""
    delta = np.zeros(length + 1, np.float32)
    starts = np.arange(count) * stride
    np.add.at(delta, starts, 1)
    np.add.at(delta, starts + patch_size, -1)
    return np.maximum(np.cumsum(delta)[:length], 1)


# --------------------------------------------------------------------------- photographs


TRAINING_SIZE = "training"
"""``size=TRAINING_SIZE`` in :func:`working_size` and :class:`Segmenter`: the weights' training size
(metadata ``input_size``) exactly, whatever the photograph's aspect ratio."""


def working_size(
    rgb: np.ndarray,
    metadata: WeightsMetadata | dict,
    size: tuple[int, int] | str | None = None,
    fov: np.ndarray | None = None,
    scale: float = 1.0,
) -> tuple[tuple[int, int], str]:
    """The size at which a photograph is segmented: the model's training scale, by a documented rule.

    By default (``size=None``):

    1. The metadata has ``fov_diameter`` (median width in pixels of the training images' field of view
       at the training size): the photograph is resized by ``fov_diameter / its own FOV width``, so
       that the eye has the size the network learnt, whatever the camera or resolution. A photograph
       whose field of view is wider than any training photograph's was, relative to the training size
       (metadata ``max_shrink``), is shrunk only as far as training shrank its photographs, and at
       most ``max_zoom`` (the rescaling training's augmentation taught) above the eye's learnt size:
       shrinking further erases the thin vessels that a high-resolution camera shows and its
       annotators draw, at an image statistics the network never saw. Weights without ``max_shrink``
       (trained before it was recorded) or with ``max_zoom`` 1 keep the plain rule.
    2. Else the metadata has ``input_size`` and the photograph has the same aspect ratio (within 2%):
       the photograph is resized to ``input_size``.
    3. Else the photograph keeps its size.

    ``scale`` then multiplies the chosen size (a user who knows better). The result is rounded to
    multiples of the network's size divisor. Rule 1 is skipped when no field
    of view is found (no dark surround: a cropped photograph) or it is narrower than 16 pixels.

    Parameters
    ----------
    rgb : ndarray of shape (H, W, 3)
        The photograph at its original size.
    metadata : WeightsMetadata
        The weights' metadata (``fov_diameter``, ``input_size``, ``size_divisor``).
    size : None, "training" or (height, width)
        An override of the rule. ``"training"`` (:data:`TRAINING_SIZE`): the training size
        ``metadata["input_size"]`` exactly, whatever the aspect ratio, as training resizes its test
        images before scoring them; use it to score weights on the dataset they were trained on
        (``patch2image evaluate`` does). ``(height, width)``: that size, rounded to the divisor.
    fov : ndarray of shape (H, W), bool, optional
        The photograph's field-of-view mask, when the caller has it already (else computed here).
    scale : float, default 1
        Multiplies the rule's size (not a given or training size).

    Returns
    -------
    size : (height, width)
    rule : str
        One line saying which rule applied, for logs.

    Raises
    ------
    UserError
        ``size="training"`` and the metadata has no ``input_size``.
    """
    metadata = WeightsMetadata.coerce(metadata)
    height, width = rgb.shape[:2]

    def fit(sides) -> tuple[int, int]:
        return round_to_multiple(sides, metadata.size_divisor)

    if isinstance(size, str):
        if size != TRAINING_SIZE:
            raise ValueError(f"size must be None, {TRAINING_SIZE!r} or (height, width), got {size!r}")
        if not metadata.input_size:
            raise UserError("weights metadata: no input_size, so there is no training size to segment at")
        in_h, in_w = (int(s) for s in metadata.input_size)
        return fit((in_h, in_w)), f"training size {in_h}x{in_w} (exactly)"
    if size is not None:
        out_h, out_w = (int(s) for s in size)
        return fit((out_h, out_w)), f"given size {out_h}x{out_w}"
    times = "" if scale == 1 else f", x{scale:g} as asked"
    model_diameter = metadata.fov_diameter
    if model_diameter:
        mask = field_of_view_mask(rgb) if fov is None else fov
        diameter = float(fov_diameter(mask))
        # An all-True mask means no dark surround was found: the width says nothing about the eye.
        if not mask.all() and math.isfinite(diameter) and diameter >= 16:
            factor = float(model_diameter) / diameter
            finer = _finer_than_the_rule(1 / factor, metadata)
            size = fit((height * factor * finer * scale, width * factor * finer * scale))
            rule = f"field of view {diameter:.0f} px -> {float(model_diameter):.0f} px (x{factor:.3g})"
            if finer > 1:
                rule += f", x{finer:.3g} finer: shrunk at most x{metadata.max_shrink:.3g} as in training"
            return size, rule + times
    if metadata.input_size:
        in_h, in_w = metadata.input_size
        if abs((height / width) / (in_h / in_w) - 1) <= 0.02:
            return fit((in_h * scale, in_w * scale)), f"training size {in_h}x{in_w}{times}"
    return fit((height * scale, width * scale)), f"original size{times}"


def _finer_than_the_rule(shrink: float, metadata: WeightsMetadata) -> float:
    """How much larger than the plain rule's size a photograph shrunk by ``shrink`` is segmented at."""
    if not metadata.max_shrink or not metadata.max_zoom or shrink <= metadata.max_shrink:
        return 1.0
    return min(shrink / metadata.max_shrink, metadata.max_zoom)


@dataclass
class Segmenter:
    """A photograph at original size -> vessel (or optic disc) probabilities at original size.

    The API, ``patch2image segment`` and the web page all segment through this class, and all apply its
    :mod:`patch2image.postprocessing`, so they give the same probabilities and masks for the same options.
    Every parameter is checked here (:mod:`patch2image.parameters`), for all three.

    Parameters
    ----------
    model : torch.nn.Module or a runner with ``probabilities``
    metadata : WeightsMetadata
        The weights' metadata: ``fov_diameter``, ``input_size``, ``preprocessing``, ``patch_size``,
        ``task``, ``threshold`` (a dictionary of these is read as one).
    mode : {"image", "patch"}
        Image-level segmentation (one pass or tiles) or the paper's patch-level segmentation.
    stride : int
        Patch mode: distance between patches, from 1 to the patch size.
    tta : bool
        Average the predictions of the image and its three flips (``FLIPS``).
    tile, overlap, max_pixels, precision :
        As in :func:`predict_image` (``precision`` applies to a ``torch.nn.Module``; a runner has its own).
    batch_size : int
        Patch mode: patches per forward pass.
    size : None, "training" or (height, width)
        The size the photograph is segmented at, as :func:`working_size` takes it: None, the scale
        rule; ``"training"``, the weights' training size exactly (scoring weights on the dataset they
        were trained on: then the segmentation is training's own scoring, image resized to
        ``input_size``, pre-processed, segmented, probabilities resized back).
    scale : float, default 1
        Multiplies the rule's size (0.1 to 4), for a user who knows their camera better than the rule.
    inside_fov, largest_region : bool
        Post-processing (:class:`patch2image.postprocessing.Postprocessing`): clear outside the field of
        view; keep the optic disc's largest region in :meth:`mask`.
    check_fundus : bool, default True
        Check each photograph for looking like a fundus photograph (:mod:`patch2image.fundus_check`);
        scoring labelled photographs (``evaluate``) turns it off, as it knows them to be.

    Examples
    --------
    >>> model, metadata = load_model("weights.safetensors")  # doctest: +SKIP
    >>> prob = Segmenter(model, metadata)(read_image("01_test.tif"))  # doctest: +SKIP
    """

    model: object
    metadata: WeightsMetadata = field(default_factory=WeightsMetadata)
    mode: str = "image"
    stride: int = 2
    tta: bool = False
    tile: int | None = None
    overlap: int = DEFAULT_OVERLAP
    max_pixels: int = DEFAULT_MAX_PIXELS
    precision: str = "fp32"
    batch_size: int = DEFAULT_BATCH_SIZE
    size: tuple[int, int] | str | None = None
    scale: float = 1.0
    inside_fov: bool = True
    largest_region: bool = True
    check_fundus: bool = True

    def __post_init__(self):
        if isinstance(self.size, str) and self.size != TRAINING_SIZE:
            raise ValueError(f"size must be None, {TRAINING_SIZE!r} or (height, width), got {self.size!r}")
        self.metadata = WeightsMetadata.coerce(self.metadata)
        stride = Interval(1, self.metadata.patch_size, integer=True, high_is="the patch size")
        check(
            {
                "mode": OneOf(("image", "patch")),
                "stride": stride if self.mode == "patch" else COUNT,
                "tile": Interval(8, integer=True, optional=True),
                "overlap": Interval(0, integer=True),
                "max_pixels": POSITIVE,
                "precision": OneOf(PRECISIONS),
                "batch_size": COUNT,
                "scale": SCALE,
            },
            vars(self),
        )  # refused before any image is read
        self.preprocessing = preprocessing_from(self.metadata.preprocessing)
        self.postprocessing = Postprocessing(self.metadata.task, self.inside_fov, self.largest_region)

    def __call__(self, rgb) -> np.ndarray:
        """(H, W, 3) uint8 RGB, or an image file's path -> (H, W) float32 probabilities at its size, post-processed.

        The probabilities are a :class:`patch2image.fundus_check.Probabilities` array: ``.looks_like_fundus``
        is False, and ``.fundus.warning`` says why, when the photograph does not look like a fundus photograph.
        """
        if isinstance(rgb, str | Path):
            rgb = read_image(rgb)
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise UserError(f"expected an RGB image of shape (H, W, 3) and dtype uint8, got {rgb.shape} {rgb.dtype}")
        from patch2image.data.io import check_pixels

        check_pixels("image array", rgb.shape[1], rgb.shape[0], "array holds")  # the limit files have
        fov = field_of_view_mask(rgb)  # once, for the working scale, clearing outside the eye and the fundus check
        prob = self.finish(self.predict(self.prepare(rgb, fov)), fov)
        return with_check(prob, check_photograph(rgb, fov) if self.check_fundus else None)

    @property
    def threshold(self) -> float:
        """The threshold the model was scored at (0.5, or the one chosen on its validation images)."""
        return self.metadata.threshold

    def mask(self, rgb, threshold: float | None = None) -> np.ndarray:
        """(H, W) bool: the vessels (or the optic disc) at ``threshold`` (default :attr:`threshold`)."""
        return self.mask_of(self(rgb), threshold)

    def mask_of(self, prob: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """The mask of probabilities :meth:`__call__` or :meth:`finish` gave, at ``threshold`` (default the model's)."""
        return self.postprocessing.mask(prob, self.threshold if threshold is None else threshold)

    # The three steps of __call__, apart so that a batch command can run ``prepare`` and ``finish`` in
    # other processes while this one runs the network (``patch2image segment --workers``).

    def prepare(self, rgb: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> the network's input, pre-processed at :func:`working_size`: (H, W) or (C, H, W).

        ``fov``: the photograph's field-of-view mask, when the caller has it already. Uses only the
        metadata, never the model, so it runs as well on a copy whose ``model`` is None.
        """
        size, rule = working_size(rgb, self.metadata, self.size, fov, self.scale)
        if size[0] * size[1] > MAX_MEGAPIXELS * 1e6:  # a tiny field of view found in what is no fundus photograph
            raise UserError(
                f"the model would segment it at {size[1]}x{size[0]} = {size[0] * size[1] / 1e6:,.0f} megapixels "
                f"({rule}); refusing over {MAX_MEGAPIXELS} megapixels"
            )
        return self.preprocessing(resize(rgb, size), None if fov is None else resize_label(fov, size))

    def predict(self, image: np.ndarray) -> np.ndarray:
        """(H, W) probabilities of a :meth:`prepare` output, at its size."""
        prob = self._predict(image)
        if self.tta and self.mode == "patch":
            flipped = [_flip(self._predict(_flip(image, dims)), dims) for dims in FLIPS[1:]]
            prob = (prob + sum(flipped)) / len(FLIPS)
        if not np.isfinite(prob).all():  # a mask thresholded from NaN is empty, and would pass for a result
            name = self.metadata.model_name()
            model = f"model {name!r}" if name else "the model (its metadata gives no name)"
            raise UserError(f"{model} gave NaN or infinite probabilities; its weights are damaged")
        return prob

    def finish(self, prob: np.ndarray, fov: np.ndarray) -> np.ndarray:
        """A :meth:`predict` output post-processed at the photograph's size: ``fov`` is its field-of-view mask."""
        return self.postprocessing.probabilities(prob, fov)

    def _predict(self, image: np.ndarray) -> np.ndarray:
        if self.mode == "patch":
            patch_size = int(self.metadata.patch_size)
            return predict_patches(
                self.model, image, patch_size, self.stride, self.batch_size, precision=self.precision
            )
        return predict_image(
            self.model,
            image,
            tile=self.tile,
            overlap=self.overlap,
            max_pixels=self.max_pixels,
            precision=self.precision,
            tta=self.tta,
        )


def load_segmenter(
    name_or_path: str | Path,
    *,
    backend: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    network: str | None = None,
    announce=None,
    **options,
) -> Segmenter:
    """A :class:`Segmenter` for a shipped model's name, a weights file or an ``.onnx`` file.

    The Python API (:func:`patch2image.load`), ``segment`` and ``evaluate`` all load through here, so
    they share the defaults: ``backend="auto"`` and ``precision="auto"`` (the fastest measured on this
    machine, :func:`patch2image.runtime.backends.load_backend`). ``options`` go to :class:`Segmenter`.
    """
    runner, metadata, _ = load_backend(name_or_path, backend, threads, network, precision, announce)
    return Segmenter(runner, metadata, **options)
