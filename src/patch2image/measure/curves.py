"""A segment's path as a smoothing spline, read at each of its pixels: position, step length, curvature.

Pixel paths go in steps of 1 and sqrt(2), so summing them makes a straight line at 22.5 degrees 8% longer than
it is; as VascX does, each segment is fitted with a parametric cubic smoothing spline (SciPy's ``splprep``)
whose residual is about the pixel grid's own rounding, and lengths and curvatures are read from the spline.
"""

from dataclasses import dataclass

import numpy as np
from scipy import interpolate, ndimage

SMOOTHING_PER_POINT = 0.25
"""``splprep``'s smoothing ``s`` per point (squared distance, pixels^2) for a field of view ``REFERENCE_WIDTH``
wide: a skeleton strays about half a pixel from the centre line. Wider fields of view scale it with the square
of their width, so that the spline smooths the same share of the eye at any resolution: curvature otherwise
measures the pixels' wiggle, and a photograph twice as large measured 40% more squared curvature."""
REFERENCE_WIDTH = 540.0
"""DRIVE's field of view, in pixels."""


def smoothing_for(fov_width: float) -> float:
    return SMOOTHING_PER_POINT * max(1.0, fov_width / REFERENCE_WIDTH) ** 2


PARAMETER_SIGMA = 2.0


@dataclass
class Curve:
    """A smoothed path read at its n pixels: positions (n, 2), step lengths (n - 1), signed curvature (n)."""

    points: np.ndarray
    steps: np.ndarray
    curvature: np.ndarray

    def pieces(self, inside: np.ndarray, min_points: int) -> list["Curve"]:
        """The runs of consecutive points where ``inside`` holds, those of at least ``min_points`` points."""
        edges = np.flatnonzero(np.diff(np.r_[0, inside.astype(np.int8), 0]))
        return [self._slice(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= min_points]

    def _slice(self, a: int, b: int) -> "Curve":
        return Curve(self.points[a:b], self.steps[a : b - 1], self.curvature[a:b])

    @property
    def length(self) -> float:
        return float(self.steps.sum())

    @property
    def chord(self) -> float:
        return float(np.hypot(*(self.points[-1] - self.points[0])))


def fit_curve(path: np.ndarray, smoothing: float = SMOOTHING_PER_POINT) -> Curve | None:
    """The smoothed curve through a path of pixels (row, col), or None for a path too short for a cubic.

    ``smoothing``: ``splprep``'s ``s`` per point (see :func:`smoothing_for`).
    """
    if len(path) < 4:
        return None
    xy = path[:, ::-1].astype(float).T
    # The parameter: distance along the path smoothed over a few pixels, so that the steps of 1 and sqrt(2)
    # do not make the spline speed up and slow down along a smooth vessel.
    smooth = ndimage.gaussian_filter1d(xy, PARAMETER_SIGMA, axis=1, mode="nearest")
    u = np.r_[0, np.cumsum(np.maximum(np.hypot(*np.diff(smooth, axis=1)), 1e-3))]
    try:
        tck, _ = interpolate.splprep(xy, u=u, s=smoothing * len(path), k=3, quiet=2)
    except (ValueError, TypeError):  # degenerate input (a path folded on itself)
        return None
    x, y = interpolate.splev(u, tck)
    dx, dy = interpolate.splev(u, tck, der=1)
    ddx, ddy = interpolate.splev(u, tck, der=2)
    speed = np.hypot(dx, dy)
    with np.errstate(divide="ignore", invalid="ignore"):
        curvature = np.where(speed > 0, (dx * ddy - dy * ddx) / speed**3, 0.0)
    points = np.stack([x, y], axis=1)
    return Curve(points, np.hypot(*np.diff(points, axis=0).T), curvature)
