"""The features of one region of a vessel mask: density, fractal dimension, calibre, tortuosity.

Definitions (docs/measurements.md cites each source):

- vessel density: vessel pixels over the region's pixels (AutoMorph, VascX);
- fractal dimension: box counting, the slope of log(occupied boxes) against log(1 / box size) fitted by least
  squares over box sizes of 1/8 to 1/256 of the field of view's width (at least 2 pixels; ``BOX_FRACTIONS``),
  whole boxes laid from the region's corner (AutoMorph fits 4 pixels up to the image's size, and counts only the
  boxes partly filled);
- calibre: the vessel's width at each skeleton pixel from the Euclidean distance transform (see :func:`widths`),
  averaged over the region's skeleton pixels outside junctions; the main vessels' calibre, the mean of the
  widths of the six widest segments (each its median width), the largest vessels as CRAE and CRVE take them
  (Knudtson et al. 2003), arteries and veins together;
- tortuosity of each segment piece of at least ``min_points`` pixels: distance factor, arc length over chord
  (Hart et al. 1999; AutoMorph); total squared curvature, the integral of curvature squared along the arc
  (Hart et al. 1999); tortuosity density (Grisan et al. 2008), (n - 1) / n * (1 / L) * sum over the n arcs
  between inflection points of (arc / chord - 1). Each is averaged over the region's pieces (AutoMorph).
"""

import cv2
import numpy as np

from patch2image.measure.curves import Curve

BOX_FRACTIONS = 2.0 ** -np.arange(3, 8.01, 0.25)
"""Box sizes for the fractal dimension, as shares of the field of view's width: 1/8 down to 1/256 in steps of
2^(1/4). Sizes in a fine geometric series, not only powers of two, average out the swing of the counts with
the boxes' phase against a pattern (a Sierpinski carpet measured 1.86 with powers of two, 1.89 with these)."""
MIN_BOX = 2


def vessel_density(vessels: np.ndarray, region: np.ndarray) -> float:
    return float(np.count_nonzero(vessels & region) / np.count_nonzero(region))


def box_sizes(fov_diameter: float) -> np.ndarray:
    """Box sides in pixels for a field of view this wide: the same shares of it at any resolution."""
    sizes = np.unique(np.round(fov_diameter * BOX_FRACTIONS).astype(int))
    return sizes[sizes >= MIN_BOX]


def box_counts(vessels: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """How many boxes of each size hold a vessel pixel, over the mask's bounding box.

    Boxes are laid from the bounding box's corner; only whole boxes are counted, and their count is scaled by
    the bounding box's area over theirs, so that a box size that does not divide the pattern does not count
    the slivers at its far edges as whole boxes (which flattens the fit).
    """
    rows, cols = np.flatnonzero(vessels.any(axis=1)), np.flatnonzero(vessels.any(axis=0))
    if rows.size == 0:
        return np.zeros(len(sizes))
    crop = vessels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    counts = []
    for size in sizes:
        n_r, n_c = max(h // size, 1), max(w // size, 1)
        whole = crop[: n_r * size, : n_c * size]
        kept = whole.shape[0] * whole.shape[1]  # a side shorter than one box is padded, not cut
        whole = np.pad(whole, ((0, n_r * size - whole.shape[0]), (0, n_c * size - whole.shape[1])))
        occupied = np.count_nonzero(whole.reshape(n_r, size, n_c, size).any(axis=(1, 3)))
        counts.append(occupied * (h * w) / kept)
    return np.array(counts, float)


def fractal_dimension(vessels: np.ndarray, sizes: np.ndarray) -> float | None:
    """Box-counting dimension of a binary pattern over the given box sizes (None without two sizes or a pattern)."""
    counts = box_counts(vessels, sizes)
    if len(sizes) < 2 or counts.min() == 0:
        return None
    slope, _ = np.polyfit(np.log(1.0 / sizes), np.log(counts), 1)
    return float(slope)


def widths(vessels: np.ndarray, skeleton: np.ndarray) -> np.ndarray:
    """The vessel's local width in pixels at each skeleton pixel (0 elsewhere): exact for straight vessels.

    With d the Euclidean distance to the background, a skeleton pixel's width is d plus the largest d of
    its neighbours off the skeleton, the pixels beside the centre line: an odd width w = 2k + 1 has d = k + 1
    on the centre line and k beside it; an even width 2k has its centre between two pixels, both at d = k. Twice
    d alone would be one pixel too wide for odd widths and one too narrow for even ones, as the widths of
    AutoMorph's inscribed circles are (it corrects them by counting border pixels).
    """
    # OpenCV's exact Euclidean transform (DIST_MASK_PRECISE): SciPy's gives the same, 10 times slower.
    distance = cv2.distanceTransform(vessels.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    beside = cv2.dilate(np.where(skeleton, 0, distance).astype(np.float32), np.ones((3, 3), np.uint8))
    return np.where(skeleton, distance + beside, 0.0)


def mean_calibre(width: np.ndarray, centre_line: np.ndarray, region: np.ndarray) -> float | None:
    """Mean width over the centre-line pixels in the region (None without one)."""
    values = width[centre_line & region]
    return float(values.mean()) if values.size else None


MAIN_VESSELS = 6
"""How many of the widest segments :func:`main_calibre` averages: CRAE and CRVE each combine the six largest
arterioles or venules crossing zone B."""


def main_calibre(width: np.ndarray, paths: list[np.ndarray], region: np.ndarray, min_points: int) -> float | None:
    """Mean of the median widths of the ``MAIN_VESSELS`` widest segments with ``min_points`` pixels in the region.

    The mean over every centre-line pixel is mostly the thin vessels, and moves with how many of them a mask
    holds; the widest few are found in every mask and are what a clinical calibre measures.
    """
    medians = []
    for path in paths:
        inside = path[region[path[:, 0], path[:, 1]]]
        if len(inside) >= min_points:
            medians.append(float(np.median(width[inside[:, 0], inside[:, 1]])))
    return float(np.mean(sorted(medians)[-MAIN_VESSELS:])) if medians else None


MAX_DISTANCE_FACTOR = 1.5
"""Pieces whose arc is more than 1.5 times their chord are left out of the distance tortuosity, as VascX leaves
them out (``max_tortuosity``): between two branch points a vessel hardly bends back on itself, a skeleton's
loop around a hole in a wide vessel does, and one such piece moved a photograph's mean from 1.04 to 1.16."""


def distance_factor(curve: Curve, limit: float = np.inf) -> float | None:
    """Arc length over chord; None for a closed piece or one above ``limit``."""
    chord = curve.chord
    factor = curve.length / chord if chord >= 1 else None
    return factor if factor is not None and factor <= limit else None


def squared_curvature(curve: Curve) -> float:
    """The integral of the squared curvature along the arc (trapezoids between the pixels): per pixel."""
    k2 = curve.curvature**2
    return float(np.sum(0.5 * (k2[1:] + k2[:-1]) * curve.steps))


def tortuosity_density(curve: Curve) -> float | None:
    """Grisan et al.'s tortuosity density: per pixel; 0 for a curve without an inflection."""
    length = curve.length
    if length <= 0:
        return None
    sign = np.sign(curve.curvature)
    flips = np.flatnonzero(sign[1:] * sign[:-1] < 0) + 1  # the first point of each new arc
    n = len(flips) + 1
    if n == 1:
        return 0.0
    cumulative = np.r_[0, np.cumsum(curve.steps)]
    bounds = np.r_[0, flips, len(curve.points) - 1]
    total = 0.0
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        chord = np.hypot(*(curve.points[b] - curve.points[a]))
        if chord > 0:
            total += (cumulative[b] - cumulative[a]) / chord - 1
    return float((n - 1) / n * total / length)


def mean_or_none(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None
