"""Retinal vessel measurements from a vessel map: ``patch2image.measure(photo)`` and ``measure_masks``.

``patch2image.measure`` is both this package and a function: calling it measures a photograph, a
probability map or a mask (:func:`patch2image.measure.photograph.measure`).
"""

import sys
import types

from patch2image.measure.masks import measure_masks
from patch2image.measure.photograph import measure, measure_files
from patch2image.measure.table import COLUMNS, CSV_COLUMNS, DESCRIPTIONS, UNITS, csv_text


class _CallableModule(types.ModuleType):
    """``patch2image.measure(...)`` calls :func:`measure`, whether or not this package was imported first."""

    def __call__(self, *args, **kwargs):
        return measure(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["COLUMNS", "CSV_COLUMNS", "DESCRIPTIONS", "UNITS", "csv_text", "measure", "measure_files", "measure_masks"]
