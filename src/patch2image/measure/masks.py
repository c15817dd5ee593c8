"""From a vessel mask, a field-of-view mask and an optic disc mask to one row of measurements."""

import numpy as np

from patch2image.data.field_of_view import fov_diameter
from patch2image.errors import UserError
from patch2image.measure import features
from patch2image.measure.curves import fit_curve, smoothing_for
from patch2image.measure.scale import microns_per_pixel as scale_of
from patch2image.measure.segments import skeleton_of
from patch2image.measure.table import COLUMNS
from patch2image.measure.zones import find_disc, zone_masks

MIN_SEGMENT_SHARE = 1 / 50
"""A segment is measured (calibre, tortuosity) when it has at least this share of the field of view's width in
pixels (11 on DRIVE; AutoMorph takes 10 pixels at any size): the same share of the eye at any resolution."""


def measure_masks(
    vessels: np.ndarray,
    fov: np.ndarray,
    disc: np.ndarray | None = None,
    *,
    microns_per_pixel: float | None = None,
    fov_degrees: float | None = None,
) -> dict:
    """One row of measurements (keys exactly ``COLUMNS``) from boolean (H, W) masks.

    Parameters
    ----------
    vessels, fov : (H, W) bool arrays
        The vessel mask and the field of view; vessels outside the field of view are ignored.
    disc : (H, W) bool array, optional
        The optic disc mask (its largest region is the disc); without it zones B and C are left empty.
    microns_per_pixel, fov_degrees : float, optional
        The scale, or the camera's angle across the field of view's width; else estimated from the disc.
    """
    vessels, fov = _as_mask(vessels, "vessels"), _as_mask(fov, "fov")
    if vessels.shape != fov.shape or (disc is not None and np.shape(disc) != fov.shape):
        raise UserError(f"vessel, field-of-view and disc masks differ in size: {vessels.shape}, {fov.shape}")
    vessels = vessels & fov
    width_px = fov_diameter(fov)
    found = find_disc(None if disc is None else _as_mask(disc, "disc"), fov, width_px)
    mpp, source = scale_of(microns_per_pixel, fov_degrees, width_px, found.diameter)
    row = dict.fromkeys(COLUMNS)
    row.update(
        disc_found=int(found.found), disc_reason=found.reason, disc_centre_x=found.centre_x,
        disc_centre_y=found.centre_y, disc_diameter_px=found.diameter, fov_diameter_px=width_px,
        microns_per_pixel=mpp, scale_source=source,
    )  # fmt: skip
    shared = None
    for name, (mask, share, reason) in zone_masks(found, fov).items():
        row[f"{name}_reason"], row[f"{name}_inside_fov"] = reason, share
        if mask is not None:
            shared = shared or _shared(vessels, width_px)
            _measure_region(row, name, mask, vessels, shared, mpp)
    return row


def _as_mask(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise UserError(f"the {name} mask must be a 2-D array, not of shape {array.shape}")
    return array.astype(bool, copy=False)


def _shared(vessels: np.ndarray, width_px: float) -> dict:
    """What every region reads: the skeleton, its curves, the widths and the box sizes, computed once."""
    skeleton = skeleton_of(vessels)
    min_points = max(4, round(width_px * MIN_SEGMENT_SHARE))
    long_enough = [path for path in skeleton.segments if len(path) >= min_points]
    centre_line = np.zeros_like(vessels)
    for path in long_enough:  # not the spurs a skeleton grows at a vessel's corners, thinner than the vessel
        centre_line[path[:, 0], path[:, 1]] = True
    smoothing = smoothing_for(width_px)
    fitted = ((path, fit_curve(path, smoothing)) for path in long_enough)
    return {
        "skeleton": skeleton,
        "paths": long_enough,
        "curves": [(path, curve) for path, curve in fitted if curve is not None],
        "width": features.widths(vessels, skeleton.pixels),
        "centre_line": centre_line,
        "sizes": features.box_sizes(width_px),
        "min_points": min_points,
    }


def _measure_region(row: dict, name: str, region: np.ndarray, vessels: np.ndarray, shared: dict, mpp) -> None:
    per_mm = 1000 / mpp if mpp else None
    pieces = [
        piece
        for path, curve in shared["curves"]
        for piece in curve.pieces(region[path[:, 0], path[:, 1]], shared["min_points"])
    ]
    calibre = features.mean_calibre(shared["width"], shared["centre_line"], region)
    main = features.main_calibre(shared["width"], shared["paths"], region, shared["min_points"])
    squared = features.mean_or_none([features.squared_curvature(p) for p in pieces])
    density = features.mean_or_none([features.tortuosity_density(p) for p in pieces])
    skeleton = shared["skeleton"]
    values = {
        "area_px": int(np.count_nonzero(region)),
        "vessel_density": features.vessel_density(vessels, region),
        "fractal_dimension": features.fractal_dimension(vessels & region, shared["sizes"]),
        "calibre_px": calibre,
        "calibre_um": calibre * mpp if calibre is not None and mpp else None,
        "main_calibre_px": main,
        "main_calibre_um": main * mpp if main is not None and mpp else None,
        "distance_tortuosity": features.mean_or_none(
            [features.distance_factor(p, features.MAX_DISTANCE_FACTOR) for p in pieces]
        ),
        "squared_curvature_per_px": squared,
        "squared_curvature_per_mm": squared * per_mm if squared is not None and per_mm else None,
        "tortuosity_density_per_px": density,
        "tortuosity_density_per_mm": density * per_mm if density is not None and per_mm else None,
        "segments": len(pieces),
        "branch_points": _count_inside(skeleton.branch_points, region),
        "end_points": _count_inside(skeleton.end_points, region),
    }
    row.update({f"{name}_{key}": value for key, value in values.items()})


def _count_inside(points: np.ndarray, region: np.ndarray) -> int:
    if len(points) == 0:
        return 0
    rc = np.round(points).astype(int)
    return int(np.count_nonzero(region[rc[:, 0], rc[:, 1]]))
