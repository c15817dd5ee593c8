"""The measurements of a vessel result on the page: as JSON for its table, as CSV for the ZIP.

The photograph and its probabilities are the result's own (``rgb.npy``, ``prob.npy``); the vessel mask is cut
at the page's threshold, the optic disc segmented once with the shipped disc model (kept as ``disc.npy``), and
the row comes from :class:`patch2image.measure.photograph.Measurer`, as for ``patch2image measure``.
"""

import json
import threading
from pathlib import Path

import numpy as np

KINDS = {"measurements.json": "application/json", "measurements.csv": "text/csv; charset=utf-8"}
SHOWN = ("vessel_density", "fractal_dimension", "calibre_px", "calibre_um", "distance_tortuosity",
         "tortuosity_density_per_mm", "segments")  # fmt: skip
"""The features in the page's table, one row each, for the field of view and zones B and C."""

_DISC_LOCK = threading.Lock()  # one disc network, shared by the server's threads


def measure_result(folder: Path, threshold: float) -> dict:
    """The measurement row of one result at ``threshold`` (its disc segmented on first use)."""
    from patch2image.data import field_of_view_mask
    from patch2image.measure.photograph import DISC_MODEL, Measurer, shared_segmenter

    rgb = np.load(folder / "rgb.npy")
    fov = field_of_view_mask(rgb)
    disc_file = folder / "disc.npy"
    if disc_file.is_file():
        disc = np.load(disc_file)
    else:
        with _DISC_LOCK:
            disc = Measurer(disc=shared_segmenter(DISC_MODEL)).disc_mask(rgb, fov)
        np.save(disc_file, disc)
    return Measurer().masks(np.load(folder / "prob.npy") >= threshold, fov, disc)


def measurement_bytes(folder: Path, stem: str, kind: str, threshold: float) -> bytes:
    from patch2image.measure import UNITS, csv_text

    row = measure_result(folder, threshold)
    if kind == "measurements.csv":
        return csv_text([{"image": stem} | row]).encode()
    return json.dumps({"threshold": threshold, "row": row, "units": UNITS, "shown": SHOWN}).encode()
