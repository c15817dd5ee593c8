"""The patch-to-image framework end to end, as one experiment configuration describes it.

    patch database -> patch training -> transfer (Image/Frozen) -> fine-tuning (Image/Fine-tuned)
    and the baselines: Patch (patch-level segmentation) and Image/Scratch (random initialisation).

A run directory holds everything: config.yaml, the weights of each phase (.safetensors),
history.csv, metrics/<row>.json for the rows patch, frozen, finetuned and scratch, 8-bit
probability maps of the test images under predictions/, and run.json with wall times. Each step is
skipped on ``resume`` when its output exists, and an interrupted phase resumes from its checkpoint.
"""

import csv
import dataclasses
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from patch2image.config import Config
from patch2image.data import Dataset, load_sample, open_dataset
from patch2image.data.field_of_view import fov_diameter
from patch2image.data.synthetic import write_synthetic_dataset
from patch2image.errors import UserError
from patch2image.evaluation import evaluate_cases, write_evaluation
from patch2image.files import atomic_write, write_text
from patch2image.inference import predict_image, predict_patches
from patch2image.metrics import best_dice_threshold
from patch2image.networks import count_parameters, create_network
from patch2image.patch_database import patch_database
from patch2image.preprocessing import multiple_of_4, resize, resize_label
from patch2image.training import distributed
from patch2image.training.augmentation import augment
from patch2image.training.fit import TrainingData, fit, resolve_device
from patch2image.weights import read_weights, save_weights

ROWS = {"patch": "Patch", "frozen": "Image/Frozen", "finetuned": "Image/Fine-tuned", "scratch": "Image/Scratch"}
TABLE_METRICS = ("auc", "spec", "sens", "acc", "dice", "jaccard", "auprc")


@dataclass
class PreparedImages:
    """Images resized to the training size and pre-processed, with what scoring needs at original size."""

    names: list[str]
    grey: np.ndarray  # (n, H, W) float32
    label: np.ndarray  # (n, H, W) bool
    original: list  # Sample objects at original size (test images only)
    fov_diameters: list[float]

    def training_data(self) -> TrainingData:
        return TrainingData(
            torch.from_numpy(self.grey[:, None]), torch.from_numpy(self.label[:, None].astype(np.float32))
        )


def run_experiment(
    config: Config, out_dir: str | Path, resume: bool = False, quiet: bool = False, device: str = "auto"
) -> dict:
    """Run every phase the configuration names; return the whole-image mean metrics per row.

    Under torchrun every process prepares the data and trains its share; rank 0 alone writes files.
    """
    out = Path(out_dir)
    device = resolve_device(device)
    distributed.init_from_environment(device)
    main = distributed.is_main()
    stored_config = _check_run_dir(config, out, resume)
    if main:
        open_experiment_dataset(config, out)  # writes the synthetic data once, before the others read it
    distributed.barrier()
    dataset = open_experiment_dataset(config, out)
    size = tuple(config.dataset.size or dataset.paper_size or _first_size(dataset, config))
    size = multiple_of_4(size)
    split = {"fold": config.dataset.fold, "val_fraction": config.dataset.val_fraction, "seed": config.seed}
    train = prepare_images(dataset, dataset.files("train", **split), size, config)
    val = prepare_images(dataset, dataset.files("val", **split), size, config)
    test = prepare_images(dataset, dataset.files("test", **split), size, config, keep_original=True)
    if not len(train.names) or not len(val.names) or not len(test.names):
        raise UserError(
            f"{dataset.root}: need training, validation and test images "
            f"(found {len(train.names)}, {len(val.names)}, {len(test.names)})"
        )
    if main and not stored_config.exists():  # claimed only once the data is known to be good
        write_text(stored_config, yaml.safe_dump(config.to_dict(), sort_keys=False))
    metadata = {
        "network": config.network,
        "dataset": config.dataset.kind,
        "task": dataset.task,
        "input_size": list(size),
        "fov_diameter": float(np.median(train.fov_diameters)),
        "preprocessing": dataclasses.asdict(config.preprocessing),
        "patch_size": config.patches.size,
        "protocol": config.protocol,
        "experiment": config.name,
        "seed": config.seed,
    }
    run_info = _read_json(out / "run.json") or {
        "experiment": config.name,
        "network": config.network,
        "parameters": count_parameters(create_network(config.network)),
        "dataset": config.dataset.kind,
        "fold": config.dataset.fold,
        "input_size": list(size),
        "wall_seconds": {},
    }
    phases = config.phases

    def train_phase(phase: str, model: torch.nn.Module, train_data, val_data: TrainingData, augmentation):
        started = time.perf_counter()
        rows = fit(
            model, train_data, val_data, phase, phases[phase], out / "checkpoints" / f"{phase}.safetensors",
            seed=config.seed, augmentation=augmentation, precision=config.precision, quiet=quiet, device=device,
        )  # fmt: skip
        if not main:
            return
        _write_history(out / "history.csv", phase, rows)
        run_info["wall_seconds"][phase] = round(
            run_info["wall_seconds"].get(phase, 0) + time.perf_counter() - started, 1
        )
        write_text(out / "run.json", json.dumps(run_info, indent=2))

    if "patch" in phases:

        def patch_training(m):
            if config.augmentation.level == "image":
                train_phase("patch", m, _augmented_patches(train, config), _patches(val, config), None)
            else:
                train_phase("patch", m, _patches(train, config), _patches(val, config), config.augmentation)

        model = _load_or_train(out / "patch.safetensors", config, metadata, patch_training)
        patch_size, stride = config.patches.size, config.evaluation.patch_stride
        _score(out, "patch", test, val, config, lambda g: predict_patches(model, g, patch_size, stride))
        _score(out, "frozen", test, val, config, lambda g: predict_image(model, g))
    if "finetune" in phases:
        if "patch" not in phases:
            raise UserError(f"{config.name}: phases.finetune needs phases.patch, whose weights it starts from")

        def fine_tune(m):
            m.load_state_dict(read_weights(out / "patch.safetensors")[0])
            train_phase("finetune", m, train.training_data(), val.training_data(), config.augmentation)

        model = _load_or_train(out / "finetuned.safetensors", config, metadata, fine_tune)
        _score(out, "finetuned", test, val, config, lambda g: predict_image(model, g))
    if "scratch" in phases:

        def from_scratch(m):
            train_phase("scratch", m, train.training_data(), val.training_data(), config.augmentation)

        model = _load_or_train(out / "scratch.safetensors", config, metadata, from_scratch)
        _score(out, "scratch", test, val, config, lambda g: predict_image(model, g))
    distributed.barrier()
    if not main:
        return {}
    human = out / "metrics" / "second_observer.json"
    if test.original and test.original[0].second_label is not None and not human.exists():
        cases = [(s.name, s.second_label.astype(np.float32), s.label, s.fov) for s in test.original]
        write_evaluation(evaluate_cases(cases), human)  # a binary map: any threshold in (0, 1] is the same
    return results_summary(out)


def open_experiment_dataset(config: Config, out: Path) -> Dataset:
    if config.dataset.kind == "synthetic":
        n = config.dataset.synthetic_images
        root = write_synthetic_dataset(
            out / "synthetic-data", n, max(2, n // 4), config.dataset.synthetic_size, config.seed
        )
        return open_dataset(root, "folder")
    if config.dataset.kind == "folder":
        return open_dataset(config.dataset.path, "folder")
    return open_dataset(config.dataset.path, config.dataset.kind)


def prepare_images(dataset: Dataset, files, size, config: Config, keep_original: bool = False) -> PreparedImages:
    names, greys, labels, originals, diameters = [], [], [], [], []
    for sample_files in files:
        sample = load_sample(sample_files)
        if sample.label is None:
            raise UserError(f"{sample_files.image}: no label; training and scoring need one")
        names.append(sample.name)
        greys.append(config.preprocessing(resize(sample.image, size)))
        labels.append(resize_label(sample.label, size))
        diameters.append(fov_diameter(resize_label(sample.fov, size)))
        if keep_original:
            originals.append(sample)
    empty = np.zeros((0, *size))
    return PreparedImages(
        names,
        np.stack(greys).astype(np.float32) if greys else empty.astype(np.float32),
        np.stack(labels) if labels else empty.astype(bool),
        originals,
        diameters,
    )


def _patches(images: PreparedImages, config: Config) -> TrainingData:
    x, y = patch_database(images.grey, images.label, config.patches, config.seed)
    return TrainingData(x, y)


def _augmented_patches(images: PreparedImages, config: Config):
    """Each epoch's patches, cut from whole training images augmented afresh (the reference code's order)."""
    whole = images.training_data()

    def epoch_patches(generator: torch.Generator) -> TrainingData:
        x, y = augment(whole.x, whole.y, generator, config.augmentation)
        seed = int(torch.randint(2**31, (1,), generator=generator))  # balanced sampling: new centres each epoch
        return TrainingData(*patch_database(x[:, 0].numpy(), y[:, 0].numpy(), config.patches, seed))

    return epoch_patches


def _load_or_train(weights: Path, config: Config, metadata: dict, train) -> torch.nn.Module:
    torch.manual_seed(config.seed)  # the same initial weights for every phase that starts from scratch
    model = create_network(config.network)
    if weights.exists():
        model.load_state_dict(read_weights(weights)[0])
    else:
        train(model)
        if distributed.is_main():
            save_weights(weights, model, metadata)
    distributed.barrier()
    return model.eval()


def _score(out: Path, row: str, test: PreparedImages, val: PreparedImages, config: Config, predict) -> None:
    target = out / "metrics" / f"{row}.json"
    if target.exists() or not distributed.is_main():
        return
    threshold = config.evaluation.threshold
    if threshold == "validation":
        threshold = best_dice_threshold([predict(grey) for grey in val.grey], list(val.label))
    cases = []
    for name, grey, sample in zip(test.names, test.grey, test.original, strict=True):
        prob = resize(predict(grey), sample.original_size)
        _write_png(out / "predictions" / row / f"{name}.png", prob)
        if not (out / "predictions" / "label" / f"{name}.png").exists():
            _write_png(out / "predictions" / "label" / f"{name}.png", sample.label.astype(np.float32))
            _write_png(out / "predictions" / "image" / f"{name}.png", sample.image[..., ::-1])
        cases.append((name, prob, sample.label, sample.fov))
    write_evaluation(evaluate_cases(cases, threshold), target)


def _write_png(path: Path, array: np.ndarray) -> None:
    if array.dtype != np.uint8:
        array = np.clip(array * 255 + 0.5, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".png", array)
    with atomic_write(path) as tmp:
        Path(tmp).write_bytes(encoded.tobytes())


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
        if yaml.safe_load(stored.read_text()) != config.to_dict():
            raise UserError(f"{out}: the run was made with another configuration; it cannot be resumed with this one")
    return stored


def _first_size(dataset: Dataset, config: Config) -> tuple[int, int]:
    files = dataset.files("train", fold=config.dataset.fold, val_fraction=config.dataset.val_fraction, seed=config.seed)
    return load_sample(files[0]).original_size


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def results_summary(out: str | Path) -> dict:
    """{row: whole-image mean metrics} for every row the run directory has scored."""
    out = Path(out)
    summary = {}
    for row in [*ROWS, "second_observer"]:
        result = _read_json(out / "metrics" / f"{row}.json")
        if result:
            summary[row] = result["whole"]["mean"]
    return summary


def format_results(summary: dict) -> str:
    """The four-row results table (whole image, mean over test images), as the paper prints it."""
    labels = ROWS | {"second_observer": "2nd observer"}
    lines = [f"{'row':<18}" + "".join(f"{m:>9}" for m in TABLE_METRICS)]
    for row, values in summary.items():
        lines.append(f"{labels[row]:<18}" + "".join(f"{values[m]:>9.4f}" for m in TABLE_METRICS))
    return "\n".join(lines)
