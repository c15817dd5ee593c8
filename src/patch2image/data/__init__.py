"""Retinal datasets: readers for DRIVE, STARE, CHASE_DB1, IDRiD and image/label folders."""

from patch2image.data.check import check_dataset
from patch2image.data.datasets import KINDS, Dataset, folder_dataset, load_sample, open_dataset
from patch2image.data.field_of_view import field_of_view_mask, fov_diameter
from patch2image.data.io import read_image, read_mask
from patch2image.data.sample import Sample, SampleFiles

__all__ = [
    "KINDS",
    "Dataset",
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
]
