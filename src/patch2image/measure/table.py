"""The measurement table: its columns in order, their units and meanings, and writing it as CSV.

``COLUMNS`` are the keys of :func:`patch2image.measure.measure_masks`'s row; ``measurements.csv`` holds
``image`` then these. docs/measurements.md is this module's ``data_dictionary()``.
"""

import csv
import io
import math

REGIONS = {
    "fov": "the whole field of view",
    "zone_b": "zone B, 0.5 to 1 disc diameter from the disc margin",
    "zone_c": "zone C, 0.5 to 2 disc diameters from the disc margin",
}

_HEAD = [
    ("disc_found", "0/1", "1 when an optic disc was found and is plausible, else 0"),
    ("disc_reason", "text", "why no disc: no mask, none found, implausible size, centre outside the field of view"),
    ("disc_centre_x", "px", "the disc's centroid, column (from the left)"),
    ("disc_centre_y", "px", "the disc's centroid, row (from the top)"),
    ("disc_diameter_px", "px", "the disc's equivalent diameter (of a circle of the same area)"),
    ("fov_diameter_px", "px", "the field of view's width"),
    ("microns_per_pixel", "um/px", "the scale; empty when no source gives one"),
    ("scale_source", "text", "given, fov_degrees, disc_estimate (an estimate from the mean disc) or none"),
]

_PER_REGION = [
    ("reason", "text", "why the region is left empty; empty when measured"),
    ("inside_fov", "share", "the share of the region's annulus inside the field of view (1 for the field of view)"),
    ("area_px", "px2", "the region's area inside the field of view"),
    ("vessel_density", "share", "vessel pixels over the region's pixels"),
    ("fractal_dimension", "1", "box-counting dimension of the vessel mask in the region"),
    ("calibre_px", "px", "mean vessel width along the centre lines (distance transform), junctions left out"),
    ("calibre_um", "um", "the same in micrometres"),
    ("main_calibre_px", "px", "mean width of the six widest segments (each its median), arteries and veins together"),
    ("main_calibre_um", "um", "the same in micrometres"),
    ("distance_tortuosity", "1", "mean over segments of arc length over chord (1: straight)"),
    ("squared_curvature_per_px", "1/px", "mean over segments of the integral of squared curvature along the arc"),
    ("squared_curvature_per_mm", "1/mm", "the same per millimetre"),
    ("tortuosity_density_per_px", "1/px", "mean over segments of Grisan's tortuosity density"),
    ("tortuosity_density_per_mm", "1/mm", "the same per millimetre"),
    ("segments", "count", "vessel segments between branch and end points, cut at the region's edge, long enough"),
    ("branch_points", "count", "branch points of the skeleton in the region"),
    ("end_points", "count", "end points of the skeleton in the region"),
]

COLUMNS: tuple[str, ...] = tuple(
    [name for name, _, _ in _HEAD] + [f"{region}_{name}" for region in REGIONS for name, _, _ in _PER_REGION]
)
UNITS: dict[str, str] = {name: unit for name, unit, _ in _HEAD} | {
    f"{region}_{name}": unit for region in REGIONS for name, unit, _ in _PER_REGION
}
DESCRIPTIONS: dict[str, str] = {name: text for name, _, text in _HEAD} | {
    f"{region}_{name}": f"{text} ({where})" for region, where in REGIONS.items() for name, _, text in _PER_REGION
}
CSV_COLUMNS = ("image", *COLUMNS)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def csv_text(rows: list[dict]) -> str:
    """``image`` and ``COLUMNS``, one row per photograph; empty cells for values not measured."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name in CSV_COLUMNS])
    return buffer.getvalue()


def data_dictionary() -> str:
    """The Markdown table of the columns, their units and meanings (docs/measurements.md's core)."""
    lines = [
        "| column | unit | meaning |",
        "|---|---|---|",
        "| image | text | the photograph's file name, without extension |",
    ]
    lines += [f"| {name} | {UNITS[name]} | {DESCRIPTIONS[name]} |" for name in COLUMNS]
    return "\n".join(lines) + "\n"
