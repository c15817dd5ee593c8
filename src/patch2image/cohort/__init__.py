"""``patch2image cohort``: segment and measure a whole cohort of photographs, resumably, on Dask.

From a folder, a glob pattern or a manifest to one results table (``results.parquet``), one row per
photograph; a rerun does only what is missing. See ``docs/cohort.md``.
"""

import importlib

_PUBLIC = {
    "Settings": "patch2image.cohort.work",
    "Summary": "patch2image.cohort.run",
    "dask_client": "patch2image.cohort.run",
    "read_inputs": "patch2image.cohort.inputs",
    "run_cohort": "patch2image.cohort.run",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    # Imported when first used: the command line builds its parser without loading Dask, pyarrow or torch.
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
