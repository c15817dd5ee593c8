"""The optic disc as the zones see it, and the regions measured: the field of view, zones B and C.

Zones are annuli around the disc centre, measured from the disc margin in disc diameters (DD), as
SIVA and AutoMorph define them: zone B from 0.5 to 1 DD beyond the margin, zone C from 0.5 to 2 DD.
With the disc's radius r = DD / 2, zone B holds the radii [DD, 1.5 DD) and zone C [DD, 2.5 DD).
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

ZONES = {"zone_b": (0.5, 1.0), "zone_c": (0.5, 2.0)}
"""Zone name -> (inner, outer) distance from the disc margin, in disc diameters."""

DISC_DIAMETER_RANGE = (0.06, 0.35)
"""A disc's plausible diameter as a share of the field of view's width: 0.12 to 0.19 on 45-degree photographs
(DRIVE, STARE, CHASE_DB1, IDRiD), about 0.2 at 30 degrees (LES-AV); below 0.06 the model found a speck, above
0.35 a bright patch. Outside this range the disc counts as not found."""

MIN_ZONE_INSIDE = 0.5
"""A zone is measured when at least this share of its annulus lies inside the field of view; otherwise it is
left empty with the reason (the disc sits at the edge of the photograph)."""


@dataclass(frozen=True)
class Disc:
    """The optic disc the zones are drawn around; ``reason`` says why there is none (centre and diameter None)."""

    centre_x: float | None = None
    centre_y: float | None = None
    diameter: float | None = None
    reason: str = ""

    @property
    def found(self) -> bool:
        return self.diameter is not None


def find_disc(disc_mask: np.ndarray | None, fov: np.ndarray, fov_diameter: float) -> Disc:
    """The largest region of the disc mask, its centroid and equivalent diameter, if it is plausibly a disc."""
    if disc_mask is None:
        return Disc(reason="no optic disc mask")
    labels, count = ndimage.label(np.asarray(disc_mask, bool), structure=np.ones((3, 3)))
    if count == 0:
        return Disc(reason="the disc model found no disc")
    areas = np.bincount(labels.ravel())[1:]
    cy, cx = np.argwhere(labels == 1 + int(np.argmax(areas))).mean(axis=0)
    diameter = float(2 * np.sqrt(areas.max() / np.pi))
    share = diameter / fov_diameter if fov_diameter else np.inf
    low, high = DISC_DIAMETER_RANGE
    if not low <= share <= high:
        size = "small" if share < low else "large"
        return Disc(reason=f"disc implausibly {size}: {diameter:.0f} px, {share:.3f} of the field of view's width")
    inside = 0 <= round(cy) < fov.shape[0] and 0 <= round(cx) < fov.shape[1] and fov[round(cy), round(cx)]
    if not inside:
        return Disc(reason="disc centre outside the field of view")
    return Disc(float(cx), float(cy), diameter)


def zone_masks(disc: Disc, fov: np.ndarray) -> dict[str, tuple[np.ndarray | None, float, str]]:
    """For each region: (its mask inside the field of view or None, share of it inside the field of view, reason)."""
    regions = {"fov": (fov, 1.0, "" if fov.any() else "empty field of view")}
    if not disc.found:
        for name in ZONES:
            regions[name] = (None, 0.0, f"no optic disc ({disc.reason})")
        return regions
    rows, cols = np.ogrid[: fov.shape[0], : fov.shape[1]]
    radius = np.hypot(rows - disc.centre_y, cols - disc.centre_x)
    for name, (inner, outer) in ZONES.items():
        r_in, r_out = disc.diameter * (0.5 + inner), disc.diameter * (0.5 + outer)
        annulus = (radius >= r_in) & (radius < r_out)
        full_area = np.pi * (r_out**2 - r_in**2)  # the whole annulus, also where it leaves the photograph
        inside = annulus & fov
        share = float(inside.sum() / full_area)
        reason = "" if share >= MIN_ZONE_INSIDE else f"only {share:.0%} of the zone lies inside the field of view"
        regions[name] = (inside if not reason else None, share, reason)
    return regions
