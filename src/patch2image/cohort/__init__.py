"""``patch2image cohort``: segment and measure a whole cohort of photographs, resumably, on Dask.

From a folder, a glob pattern or a manifest to one results table (``results.parquet``), one row per
photograph; a rerun does only what is missing. See ``docs/cohort.md``.
"""

from patch2image.cohort.inputs import read_inputs
from patch2image.cohort.run import Summary, dask_client, run_cohort
from patch2image.cohort.work import Settings

__all__ = ["Settings", "Summary", "dask_client", "read_inputs", "run_cohort"]
