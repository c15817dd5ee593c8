"""The images a run trains and scores on: resized to the working scale, pre-processed, on one canvas.

The first dataset is resized to its paper size (or ``dataset.size``); every further one image by image
so that its field of view is as wide as the first's (the rule ``segment`` applies to a photograph).
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from patch2image.config import Config, DatasetConfig
from patch2image.data import Dataset, load_sample, open_dataset
from patch2image.data.field_of_view import fov_diameter
from patch2image.data.synthetic import write_synthetic_dataset
from patch2image.errors import UserError
from patch2image.networks import create_network, size_divisor
from patch2image.patch_database import patch_database
from patch2image.preprocessing import resize, resize_label, round_to_multiple
from patch2image.training import distributed
from patch2image.training.fit import TrainingData


@dataclass
class PreparedImages:
    """Images resized to the working scale and pre-processed, with what scoring needs at original size.

    Images of several datasets differ in size: each lies in the top-left corner of a common canvas,
    zero-padded (the dark surround of a fundus photograph), ``sizes`` giving its own (height, width).
    """

    names: list[str]
    inputs: np.ndarray  # the networks' inputs: (n, H, W) float32, or (n, C, H, W) for C channels
    label: np.ndarray  # (n, H, W) bool
    original: list  # Sample objects at original size (test images only)
    fov_diameters: list[float]
    sizes: list[tuple[int, int]]
    shrinks: list[float]  # per image, the field of view's width at original size over its width here

    def patches(self, config: Config) -> TrainingData:
        """The patch database of these images (:func:`patch2image.patch_database.patch_database`)."""
        return TrainingData(*patch_database(self.inputs, self.label, config.patches, config.seed))

    def training_data(self) -> TrainingData:
        n, height, width = self.label.shape
        return TrainingData(
            torch.from_numpy(self.inputs.reshape(n, -1, height, width)),
            torch.from_numpy(self.label[:, None].astype(np.float32)),
        )


FEW_TRAINING_IMAGES = 5
"""Below this many training images a run is warned about, not refused."""


def prepare_data(config: Config, out: Path) -> tuple[PreparedImages, PreparedImages, PreparedImages, str]:
    """(train, val, test) images at the working scale, and the task.

    The first dataset is resized to its paper size (or ``dataset.size``); every further one image by
    image so that its field of view is as wide as the first's (the rule ``segment`` applies to a
    photograph), and the splits of all are pooled.
    """
    if distributed.is_main():
        for index, dataset_config in enumerate(config.datasets):  # synthetic data: written once, then read
            open_experiment_dataset(dataset_config, config, out, index)
    distributed.barrier()
    divisor = size_divisor(create_network(config.network, **config.network_arguments))
    splits, diameter, task = {"train": [], "val": [], "test": []}, None, None
    for index, dataset_config in enumerate(config.datasets):
        dataset = open_experiment_dataset(dataset_config, config, out, index)
        task = dataset.task
        files = {
            split: dataset.files(split, dataset_config.fold, dataset_config.val_fraction, config.seed)
            for split in splits
        }
        if not dataset_config.hold_out_test:
            files["train"], files["test"] = files["train"] + files["test"], []
        if diameter is None or dataset_config.size:
            size = dataset_config.size or dataset.paper_size or load_sample(files["train"][0]).original_size
            size = round_to_multiple(size, divisor)
            size_of = lambda sample, size=size: size  # noqa: E731
        else:
            size_of = lambda sample, d=diameter: _same_eye_width(sample, d, divisor)  # noqa: E731
        for split in splits:
            if not files[split] and (split != "test" or dataset_config.hold_out_test):
                raise UserError(f"{dataset.root}: no {split} images (with the fold and val_fraction given)")
            images = prepare_images(files[split], size_of, config, keep_original=split == "test")
            if len(config.datasets) > 1:  # names stay unique, and say where each image came from
                for image in images:
                    image.name = f"{_prefix(config, index)}-{image.name}"
            splits[split] += images
        if diameter is None:
            diameter = float(np.median([image.fov_diameter for image in splits["train"]]))
    if any(d.kind != "synthetic" for d in config.datasets) and len(splits["train"]) < FEW_TRAINING_IMAGES:
        warnings.warn(
            f"{config.name}: only {len(splits['train'])} training images (after the validation images are set "
            f"aside); it trains, but with fewer than {FEW_TRAINING_IMAGES} one photograph's quirks weigh on the model "
            "(the paper trains on 14-19)",
            stacklevel=2,
        )
    train, val, test = (_on_canvas(splits[split], divisor) for split in ("train", "val", "test"))
    return train, val, test, task


def _prefix(config: Config, index: int) -> str:
    kinds = [d.kind for d in config.datasets]
    return kinds[index] if kinds.count(kinds[index]) == 1 else f"{kinds[index]}{index + 1}"


def _same_eye_width(sample, diameter: float, divisor: int) -> tuple[int, int]:
    factor = diameter / fov_diameter(sample.fov)
    return round_to_multiple((sample.original_size[0] * factor, sample.original_size[1] * factor), divisor)


def open_experiment_dataset(dataset: DatasetConfig, config: Config, out: Path, index: int = 0) -> Dataset:
    if dataset.kind == "synthetic":
        n, folder = dataset.synthetic_images, out / ("synthetic-data" + (f"-{index + 1}" if index else ""))
        root = write_synthetic_dataset(folder, n, max(2, n // 4), dataset.synthetic_size, config.seed + index)
        return open_dataset(root, "folder")
    return open_dataset(dataset.path, dataset.kind, dataset.task)


@dataclass
class _Image:
    name: str
    network_input: np.ndarray  # (H, W), or (C, H, W)
    label: np.ndarray
    fov_diameter: float
    original: object
    shrink: float  # the field of view's width at original size over its width here


def prepare_images(files, size_of, config: Config, keep_original: bool = False) -> list[_Image]:
    """Each image resized to ``size_of(sample)``, pre-processed, with its label and FOV width at that size."""
    images = []
    for sample_files in files:
        sample = load_sample(sample_files)
        if sample.label is None:
            raise UserError(f"{sample_files.image}: no label; training and scoring need one")
        size = size_of(sample)
        diameter = fov_diameter(resize_label(sample.fov, size))
        images.append(
            _Image(
                sample.name,
                config.preprocessing(resize(sample.image, size), resize_label(sample.fov, size)),
                resize_label(sample.label, size),
                diameter,
                sample if keep_original else None,
                fov_diameter(sample.fov) / diameter,
            )
        )
    return images


def _on_canvas(images: list[_Image], divisor: int) -> PreparedImages:
    """Images of any sizes in the top-left corners of one zero canvas (their size, when they share one)."""
    if not images:  # no test images: every labelled image trains (``hold_out_test: false``)
        return PreparedImages([], np.zeros((0, 0, 0), np.float32), np.zeros((0, 0, 0), bool), [], [], [], [])
    sizes = [image.label.shape for image in images]
    canvas = round_to_multiple(tuple(max(side) for side in zip(*sizes, strict=True)), divisor)
    channel_axes = images[0].network_input.shape[:-2]  # () for one channel, (C,) for several
    inputs = np.zeros((len(images), *channel_axes, *canvas), np.float32)
    label = np.zeros((len(images), *canvas), bool)
    for i, (image, (h, w)) in enumerate(zip(images, sizes, strict=True)):
        inputs[i, ..., :h, :w], label[i, :h, :w] = image.network_input, image.label
    originals = [image.original for image in images if image.original is not None]
    return PreparedImages(
        [i.name for i in images],
        inputs,
        label,
        originals,
        [i.fov_diameter for i in images],
        [tuple(s) for s in sizes],
        [i.shrink for i in images],
    )
