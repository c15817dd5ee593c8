"""Micrometres per pixel: given, from the camera's field of view in degrees, or estimated from the optic disc.

The three sources, in the order they are tried (``SCALE_SOURCES``):

``given``
    The user's ``microns_per_pixel``.
``fov_degrees``
    The field of view's width in pixels spans the camera's angle; one degree of visual angle is
    ``MICRONS_PER_DEGREE`` on the retina of the schematic eye.
``disc_estimate``
    The optic disc's equivalent diameter (of a circle of the same area) is taken to be the mean of
    healthy adult eyes, ``MEAN_DISC_DIAMETER_UM``. An estimate: single discs differ from the mean by
    about a quarter (standard deviation of the area 0.70 mm2 around 2.69 mm2), and so does this scale.
"""

import math

from patch2image.errors import UserError

MICRONS_PER_DEGREE = 288.0
"""Retinal distance per degree of visual angle near the posterior pole (Drasdo and Fowler, Br J Ophthalmol
1974;58:709-714, schematic eye)."""

MEAN_DISC_AREA_MM2 = 2.69
"""Mean optic disc area of 319 normal adult eyes, planimetry on magnification-corrected photographs (Jonas,
Gusek and Naumann, Invest Ophthalmol Vis Sci 1988;29:1151-1158)."""

MEAN_DISC_DIAMETER_UM = 1000 * 2 * math.sqrt(MEAN_DISC_AREA_MM2 / math.pi)
"""The equivalent diameter of that mean area: 1851 micrometres."""

SCALE_SOURCES = ("given", "fov_degrees", "disc_estimate", "none")


def check_scale_arguments(microns_per_pixel: float | None, fov_degrees: float | None) -> None:
    """One line for a scale that cannot be right, before any photograph is read."""
    if microns_per_pixel is not None and not (math.isfinite(microns_per_pixel) and microns_per_pixel > 0):
        raise UserError(f"--microns-per-pixel {microns_per_pixel}: must be a positive number")
    if fov_degrees is not None and not (math.isfinite(fov_degrees) and 0 < fov_degrees <= 200):
        raise UserError(f"--fov-degrees {fov_degrees}: must be a camera angle between 0 and 200 degrees")


def microns_per_pixel(
    given: float | None, fov_degrees: float | None, fov_diameter_px: float, disc_diameter_px: float | None
) -> tuple[float | None, str]:
    """(micrometres per pixel, which source gave it); ``(None, "none")`` when no source applies."""
    check_scale_arguments(given, fov_degrees)
    if given is not None:
        return float(given), "given"
    if fov_degrees is not None and fov_diameter_px > 0:
        return fov_degrees * MICRONS_PER_DEGREE / fov_diameter_px, "fov_degrees"
    if disc_diameter_px:
        return MEAN_DISC_DIAMETER_UM / disc_diameter_px, "disc_estimate"
    return None, "none"
