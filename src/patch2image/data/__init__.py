"""Retinal datasets: readers for DRIVE, STARE, CHASE_DB1, IDRiD and image/label folders."""

from patch2image.data.check import check_dataset
from patch2image.data.dataset import Dataset, DatasetSpec
from patch2image.data.field_of_view import field_of_view_mask, fov_diameter
from patch2image.data.folder import folder_dataset
from patch2image.data.io import read_image, read_mask, write_png
from patch2image.data.registry import DATASETS, open_dataset
from patch2image.data.sample import Sample, SampleFiles, load_sample

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetSpec",
    "Sample",
    "SampleFiles",
    "check_dataset",
    "field_of_view_mask",
    "folder_dataset",
    "fov_diameter",
    "load_sample",
    "open_dataset",
    "read_image",
    "read_mask",
    "write_png",
]
