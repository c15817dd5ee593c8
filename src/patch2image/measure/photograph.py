"""Measuring photographs: segment the vessels and the optic disc, then :func:`measure_masks`.

The API (``patch2image.measure``), ``patch2image measure``, ``segment --measure`` and the web page all go
through :class:`Measurer`, so that the same masks give the same numbers wherever they are measured.
"""

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patch2image.errors import UserError
from patch2image.measure.masks import measure_masks

DISC_MODEL = "optic-disc"


@dataclass
class Measurer:
    """Segmenters for the vessels and the disc (either None when its mask is given), and the scale options."""

    vessels: object = None  # a Segmenter
    disc: object = None  # a Segmenter of an optic disc model
    threshold: float | None = None  # the vessel mask's; default: the vessel model's own
    microns_per_pixel: float | None = None
    fov_degrees: float | None = None

    def photograph(self, rgb: np.ndarray, fov=None, vessels=None, disc=None) -> dict:
        """A row for an (H, W, 3) uint8 photograph; ``fov``, ``vessels``, ``disc``: its masks where known."""
        from patch2image.data import field_of_view_mask
        from patch2image.postprocessing import inside_field_of_view

        fov = field_of_view_mask(rgb) if fov is None else fov
        if vessels is None:
            if self.vessels is None:
                raise UserError("no vessel model to segment the photograph with")
            threshold = self.vessels.threshold if self.threshold is None else self.threshold
            vessels = inside_field_of_view(self.vessels(rgb), fov) >= threshold
        if disc is None and self.disc is not None:
            disc = self.disc_mask(rgb, fov)
        return self.masks(vessels, fov, disc)

    def disc_mask(self, rgb: np.ndarray, fov: np.ndarray) -> np.ndarray:
        from patch2image.postprocessing import inside_field_of_view

        return inside_field_of_view(self.disc(rgb), fov) >= self.disc.threshold

    def masks(self, vessels: np.ndarray, fov: np.ndarray, disc: np.ndarray | None) -> dict:
        return measure_masks(vessels, fov, disc, microns_per_pixel=self.microns_per_pixel, fov_degrees=self.fov_degrees)


@functools.lru_cache(maxsize=4)
def shared_segmenter(name: str):
    import patch2image

    return patch2image.load(name)


def measure(
    source,
    *,
    model: str | None = None,
    disc_model: str | None = DISC_MODEL,
    fov: np.ndarray | None = None,
    disc: np.ndarray | None = None,
    threshold: float | None = None,
    microns_per_pixel: float | None = None,
    fov_degrees: float | None = None,
) -> dict:
    """Vessel measurements of a photograph, a probability map or a mask: one row, keys ``COLUMNS``.

    Parameters
    ----------
    source : path, (H, W, 3) uint8 array, or (H, W) array
        A photograph (segmented with ``model``, default the package's vessel model); or its vessel
        probabilities (float in [0, 1], cut at ``threshold``, default 0.5) or mask (bool, or 0/255).
    model, disc_model : str, optional
        Vessel and optic disc models (names or weights files); ``disc_model=None``: no disc, unless ``disc``.
    fov, disc : (H, W) bool arrays, optional
        The field of view (default: found in the photograph; the whole array for a map or mask) and the
        optic disc (default: segmented in the photograph with ``disc_model``; none for a map or mask).
    microns_per_pixel, fov_degrees : float, optional
        The scale, or the camera's angle across the field of view; default: estimated from the disc.

    Examples
    --------
    >>> import patch2image
    >>> row = patch2image.measure("01_test.tif")  # doctest: +SKIP
    >>> row["zone_b_vessel_density"], row["scale_source"]  # doctest: +SKIP
    """
    from patch2image.data import read_image

    if isinstance(source, str | Path):
        source = read_image(source)
    array = np.asarray(source)
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        if model is None:
            from patch2image.weights import default_model

            model = default_model()
        measurer = Measurer(
            shared_segmenter(str(model)), shared_segmenter(disc_model) if disc_model and disc is None else None,
            threshold, microns_per_pixel, fov_degrees,
        )  # fmt: skip
        return measurer.photograph(array, fov, disc=disc)
    if array.ndim != 2:
        raise UserError(f"expected a photograph (H, W, 3) uint8 or a 2-D map or mask, got shape {array.shape}")
    vessels = to_mask(array, 0.5 if threshold is None else threshold)
    fov = np.ones(array.shape, bool) if fov is None else np.asarray(fov, bool)
    return Measurer(None, None, threshold, microns_per_pixel, fov_degrees).masks(vessels, fov, disc)


def to_mask(array: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """A vessel mask from a bool mask, probabilities in [0, 1] (float) or grey levels (integers, of 255 or 65535)."""
    if array.dtype == bool:
        return array
    if np.issubdtype(array.dtype, np.floating):
        return array >= threshold
    top = 65535 if array.dtype == np.uint16 else 255
    return array >= threshold * top


def measure_files(files: list[Path], measurer: Measurer, report) -> list[dict]:
    """One row per photograph that could be read and measured (``image``: its name); ``report(path, exc)``."""
    from patch2image.data import read_image
    from patch2image.segment import output_stem

    return _rows(files, lambda path: {"image": output_stem(path)} | measurer.photograph(read_image(path)), report)


def _rows(items, row_of, report) -> list[dict]:
    """``row_of(item)`` for each item, each reported; one bad file must not stop the others."""
    rows = []
    for item in items:
        try:
            row = row_of(item)
        except Exception as exc:
            report(item, exc)
        else:
            rows.append(row)
            report(item, None)
    return rows


def mask_stem(path: Path) -> str:
    """``01_test_mask.png`` (segment's output) -> ``01_test``; any other name -> its stem."""
    from patch2image.segment import output_stem

    stem = output_stem(path)
    return stem.removesuffix("_mask").removesuffix("_prob") or stem


def measure_mask_files(
    files: list[Path], measurer: Measurer, report, disc_dir: Path | None = None, fov_dir: Path | None = None
) -> list[dict]:
    """Rows for vessel masks (or probability maps, cut at half their range) already on disk.

    The disc and field-of-view masks, where given, are the files of the same name in ``disc_dir`` and
    ``fov_dir`` (as ``segment`` writes them into two ``--out`` folders); the field of view defaults to the
    whole image.
    """
    from patch2image.data import read_mask

    def row_of(path: Path) -> dict:
        vessels = read_mask(path)
        fov = _beside(fov_dir, path, vessels.shape)
        disc = _beside(disc_dir, path, vessels.shape)
        return {"image": mask_stem(path)} | measurer.masks(vessels, np.ones_like(vessels) if fov is None else fov, disc)

    return _rows(files, row_of, report)


def _beside(folder: Path | None, path: Path, shape) -> np.ndarray | None:
    from patch2image.data import read_mask

    if folder is None:
        return None
    other = Path(folder) / path.name
    if not other.is_file():
        raise UserError(f"{other}: no such file (the mask of the same name as {path})")
    mask = read_mask(other)
    if mask.shape != shape:
        raise UserError(f"{other}: {mask.shape[1]}x{mask.shape[0]}, but {path} is {shape[1]}x{shape[0]}")
    return mask


def measure_segmented(masks: dict[Path, Path], measurer: Measurer, report) -> list[dict]:
    """Rows for photographs already segmented (``segment --measure``): photograph -> its vessel mask file."""
    from patch2image.data import read_image, read_mask
    from patch2image.segment import output_stem

    def row_of(photo: Path) -> dict:
        return {"image": output_stem(photo)} | measurer.photograph(read_image(photo), vessels=read_mask(masks[photo]))

    return _rows(masks, row_of, report)
