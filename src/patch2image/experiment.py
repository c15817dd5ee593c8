"""The patch-to-image framework end to end, as one experiment configuration describes it.

    patch database -> patch training -> transfer (Image/Frozen) -> fine-tuning (Image/Fine-tuned)
    and the baselines: Patch (patch-level segmentation) and Image/Scratch (random initialisation).

:func:`run_experiment` reads as the method does: the data prepared once (:func:`prepare_data`), then
one step per phase (:data:`PHASE_STEPS`), each training its network and scoring its rows.

A run directory holds everything: config.yaml, the weights of each phase (.safetensors),
history.csv, metrics/<row>.json for the rows patch, frozen, finetuned and scratch, 8-bit
probability maps of the test images under predictions/, and run.json with wall times. Each step is
skipped on ``resume`` when its output exists, and an interrupted phase resumes from its checkpoint.
"""

import csv
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from patch2image.config import PHASES, Config, DatasetConfig, config_from_dict
from patch2image.data import Dataset, load_sample, open_dataset, write_png
from patch2image.data.field_of_view import fov_diameter
from patch2image.data.synthetic import write_synthetic_dataset
from patch2image.errors import UserError
from patch2image.evaluation import SECOND_OBSERVER, evaluate_cases, read_run_metrics, write_evaluation
from patch2image.files import read_json, read_yaml, write_text
from patch2image.inference import predict_image, predict_patches
from patch2image.metrics import best_dice_threshold
from patch2image.networks import count_parameters, create_network, planned_network, size_divisor
from patch2image.patch_database import patch_database
from patch2image.preprocessing import resize, resize_label, round_to_multiple
from patch2image.training import distributed
from patch2image.training.augmentation import augment
from patch2image.training.fit import TrainingData, fit, resolve_device
from patch2image.weights import WeightsMetadata, load_state, read_weights, save_weights

WEIGHTS = {"patch": "patch", "finetune": "finetuned", "scratch": "scratch"}
"""The weights file each phase leaves in the run directory (``NAME.safetensors``)."""


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

    def training_data(self) -> TrainingData:
        n, height, width = self.label.shape
        return TrainingData(
            torch.from_numpy(self.inputs.reshape(n, -1, height, width)),
            torch.from_numpy(self.label[:, None].astype(np.float32)),
        )


def run_experiment(
    config: Config, out_dir: str | Path, resume: bool = False, quiet: bool = False, device: str = "auto"
) -> dict[str, dict]:
    """Prepare the data, then run each phase the configuration names: train it, score its rows.

    Returns ``{row: evaluation result}`` of every scored row (:func:`patch2image.evaluation.read_run_metrics`).
    Under torchrun every process prepares the data and trains its share; rank 0 alone writes files.
    """
    out = Path(out_dir)
    device = resolve_device(device)
    planned_network(config.network, **config.network_arguments)  # refused before it runs or anything is written
    distributed.init_from_environment(device)
    stored_config = _check_run_dir(config, out, resume)
    run = Run(config, out, device, quiet, *prepare_data(config, out))
    if distributed.is_main() and not stored_config.exists():  # claimed only once the data is known to be good
        write_text(stored_config, yaml.safe_dump(config.to_dict(), sort_keys=False))
    for phase in PHASES:
        if phase in config.phases:
            PHASE_STEPS[phase](run)
    distributed.barrier()
    if not distributed.is_main():
        return {}
    run.score_second_observer()
    return read_run_metrics(out)


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
        if diameter is None or dataset_config.size:
            size = dataset_config.size or dataset.paper_size or load_sample(files["train"][0]).original_size
            size = round_to_multiple(size, divisor)
            size_of = lambda sample, size=size: size  # noqa: E731
        else:
            size_of = lambda sample, d=diameter: _same_eye_width(sample, d, divisor)  # noqa: E731
        for split in splits:
            if not files[split]:
                raise UserError(f"{dataset.root}: no {split} images (with the fold and val_fraction given)")
            images = prepare_images(files[split], size_of, config, keep_original=split == "test")
            if len(config.datasets) > 1:  # names stay unique, and say where each image came from
                for image in images:
                    image.name = f"{_prefix(config, index)}-{image.name}"
            splits[split] += images
        if diameter is None:
            diameter = float(np.median([image.fov_diameter for image in splits["train"]]))
    train, val, test = (_on_canvas(splits[split], divisor) for split in ("train", "val", "test"))
    return train, val, test, task


def _prefix(config: Config, index: int) -> str:
    kinds = [d.kind for d in config.datasets]
    return kinds[index] if kinds.count(kinds[index]) == 1 else f"{kinds[index]}{index + 1}"


def _same_eye_width(sample, diameter: float, divisor: int) -> tuple[int, int]:
    factor = diameter / fov_diameter(sample.fov)
    return round_to_multiple((sample.original_size[0] * factor, sample.original_size[1] * factor), divisor)


@dataclass
class Run:
    """One experiment's run directory while it runs: training phases into it, scoring rows from it."""

    config: Config
    out: Path
    device: torch.device
    quiet: bool
    train: PreparedImages
    val: PreparedImages
    test: PreparedImages
    task: str

    def __post_init__(self):
        config = self.config
        network = self.new_network()
        self.metadata = WeightsMetadata(
            network=config.network,
            network_args=config.network_arguments,
            size_divisor=size_divisor(network),
            task=self.task,
            input_size=list(self.train.label.shape[1:]),
            fov_diameter=float(np.median(self.train.fov_diameters)),
            preprocessing=dataclasses.asdict(config.preprocessing),
            patch_size=config.patches.size,
            protocol=config.protocol,
            dataset=config.dataset_name,
            fold=_fold(config),
            test_images=list(self.test.names),
            experiment=config.name,
            seed=config.seed,
            extra={"datasets": [{"kind": d.kind, "fold": d.fold} for d in config.datasets]}
            if len(config.datasets) > 1
            else {},
        )
        self.info = read_json(self.out / "run.json") or {
            "experiment": config.name,
            "network": config.network,
            "parameters": count_parameters(network),
            "dataset": config.dataset_name,
            "fold": _fold(config),
            "input_size": self.metadata.input_size,
            "wall_seconds": {},
        }

    def new_network(self) -> torch.nn.Module:
        torch.manual_seed(self.config.seed)  # the same initial weights for every phase that starts from scratch
        return create_network(self.config.network, **self.config.network_arguments)

    def trained(self, phase: str, train_data, augmentation, start_from: str | None = None) -> torch.nn.Module:
        """The phase's network: read from its weights file, or trained (resuming its checkpoint) and saved."""
        weights = self.out / f"{WEIGHTS[phase]}.safetensors"
        model = self.new_network()
        if weights.exists():
            load_state(model, read_weights(weights)[0], str(weights))
            return model.eval()
        if start_from:
            model.load_state_dict(read_weights(self.out / f"{WEIGHTS[start_from]}.safetensors")[0])
        val_data = _patches(self.val, self.config) if phase == "patch" else self.val.training_data()
        rows = fit(
            model, train_data, val_data, phase, self.config.phases[phase],
            self.out / "checkpoints" / f"{phase}.safetensors", seed=self.config.seed, augmentation=augmentation,
            precision=self.config.precision, layout=self.config.layout, quiet=self.quiet, device=self.device,
        )  # fmt: skip
        if distributed.is_main():
            _write_history(self.out / "history.csv", phase, rows)
            # The epochs' own times survive an interruption in the checkpoint; a killed process's clock does not.
            self.info["wall_seconds"][phase] = round(sum(float(r["seconds"]) for r in rows), 1)
            if rows and rows[-1].get("settings"):  # what auto chose: a run is repeated exactly by fixing it
                self.info.setdefault("training_settings", {})[phase] = rows[-1]["settings"]
            write_text(self.out / "run.json", json.dumps(self.info, indent=2))
            save_weights(weights, model, self.metadata)
        distributed.barrier()
        return model.eval()

    def score(self, row: str, predict) -> None:
        """Score one row on the test images at their original size (rank 0; skipped once written)."""
        target = self.out / "metrics" / f"{row}.json"
        if target.exists() or not distributed.is_main():
            return
        threshold = self.config.evaluation.threshold
        if threshold == "validation":
            threshold = best_dice_threshold([predict(image) for image in self.val.inputs], list(self.val.label))
        cases = []
        for name, image, (h, w), sample in zip(
            self.test.names, self.test.inputs, self.test.sizes, self.test.original, strict=True
        ):
            prob = resize(predict(image)[:h, :w], sample.original_size)
            predictions = self.out / "predictions"
            write_png(predictions / row / f"{name}.png", _to_uint8(prob))
            if not (predictions / "label" / f"{name}.png").exists():
                write_png(predictions / "label" / f"{name}.png", sample.label.astype(np.uint8) * 255)
                write_png(predictions / "image" / f"{name}.png", sample.image)
            cases.append((name, prob, sample.label, sample.fov))
        write_evaluation(evaluate_cases(cases, threshold), target)

    def score_second_observer(self) -> None:
        target = self.out / "metrics" / f"{SECOND_OBSERVER}.json"
        originals = self.test.original
        if originals and originals[0].second_label is not None and not target.exists():
            cases = [(s.name, s.second_label.astype(np.float32), s.label, s.fov) for s in originals]
            write_evaluation(evaluate_cases(cases), target)  # a binary map: any threshold in (0, 1] is the same


def patch_training(run: Run) -> None:
    """Phases 1-3: the patch database, patch training, transfer; rows Patch and Image/Frozen."""
    config = run.config
    if config.augmentation.level == "image":
        model = run.trained("patch", _augmented_patches(run.train, config), None)
    else:
        model = run.trained("patch", _patches(run.train, config), config.augmentation)
    run.score("patch", lambda g: predict_patches(model, g, config.patches.size, config.evaluation.patch_stride))
    run.score("frozen", lambda g: predict_image(model, g))


def fine_tuning(run: Run) -> None:
    """Phase 4: the transferred weights trained further on whole images; row Image/Fine-tuned."""
    model = run.trained("finetune", run.train.training_data(), run.config.augmentation, start_from="patch")
    run.score("finetuned", lambda g: predict_image(model, g))


def scratch_training(run: Run) -> None:
    """The baseline: the same network trained on whole images from random weights; row Image/Scratch."""
    model = run.trained("scratch", run.train.training_data(), run.config.augmentation)
    run.score("scratch", lambda g: predict_image(model, g))


PHASE_STEPS = {"patch": patch_training, "finetune": fine_tuning, "scratch": scratch_training}


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


def prepare_images(files, size_of, config: Config, keep_original: bool = False) -> list[_Image]:
    """Each image resized to ``size_of(sample)``, pre-processed, with its label and FOV width at that size."""
    images = []
    for sample_files in files:
        sample = load_sample(sample_files)
        if sample.label is None:
            raise UserError(f"{sample_files.image}: no label; training and scoring need one")
        size = size_of(sample)
        images.append(
            _Image(
                sample.name,
                config.preprocessing(resize(sample.image, size), resize_label(sample.fov, size)),
                resize_label(sample.label, size),
                fov_diameter(resize_label(sample.fov, size)),
                sample if keep_original else None,
            )
        )
    return images


def _on_canvas(images: list[_Image], divisor: int) -> PreparedImages:
    """Images of any sizes in the top-left corners of one zero canvas (their size, when they share one)."""
    sizes = [image.label.shape for image in images]
    canvas = round_to_multiple(tuple(max(side) for side in zip(*sizes, strict=True)), divisor)
    channel_axes = images[0].network_input.shape[:-2]  # () for one channel, (C,) for several
    inputs = np.zeros((len(images), *channel_axes, *canvas), np.float32)
    label = np.zeros((len(images), *canvas), bool)
    for i, (image, (h, w)) in enumerate(zip(images, sizes, strict=True)):
        inputs[i, ..., :h, :w], label[i, :h, :w] = image.network_input, image.label
    originals = [image.original for image in images if image.original is not None]
    return PreparedImages(
        [i.name for i in images], inputs, label, originals, [i.fov_diameter for i in images], [tuple(s) for s in sizes]
    )


def _patches(images: PreparedImages, config: Config) -> TrainingData:
    x, y = patch_database(images.inputs, images.label, config.patches, config.seed)
    return TrainingData(x, y)


def _augmented_patches(images: PreparedImages, config: Config):
    """Each epoch's patches, cut from whole training images augmented afresh (the reference code's order)."""
    whole = images.training_data()

    def epoch_patches(generator: torch.Generator) -> TrainingData:
        x, y = augment(whole.x, whole.y, generator, config.augmentation)
        seed = int(torch.randint(2**31, (1,), generator=generator))  # balanced sampling: new centres each epoch
        return TrainingData(*patch_database(x.numpy(), y[:, 0].numpy(), config.patches, seed))

    return epoch_patches


def _to_uint8(prob: np.ndarray) -> np.ndarray:
    return np.clip(prob * 255 + 0.5, 0, 255).astype(np.uint8)


def _write_history(path: Path, phase: str, rows: list[dict]) -> None:
    """Rewrite history.csv with this phase's rows replacing any earlier ones (a resumed phase)."""
    fields = ["phase", "epoch", "loss", "val_loss", "lr", "seconds"]
    kept = []
    if path.exists():
        kept = [r for r in csv.DictReader(path.open()) if r["phase"] != phase]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(kept + [{k: r[k] for k in fields} for r in rows])
    write_text(path, buffer.getvalue())


def _check_run_dir(config: Config, out: Path, resume: bool) -> Path:
    """The run's config.yaml, after checking that ``out`` is new, or resumable with this configuration."""
    stored = out / "config.yaml"
    exists = stored.exists()
    distributed.barrier()  # every process looks before rank 0 writes
    if exists:
        if not resume:
            raise UserError(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
        # Read back through the configuration's own checks, so keys added since take their defaults.
        if config_from_dict(read_yaml(stored), str(stored)).to_dict() != config.to_dict():
            raise UserError(f"{out}: the run was made with another configuration; it cannot be resumed with this one")
    return stored


def _fold(config: Config) -> int | None:
    """The fold of a one-dataset run (several datasets: their folds are in the metadata's ``extra``)."""
    return config.datasets[0].fold if len(config.datasets) == 1 else None
