"""A run directory while the experiment runs: the phases' weights, history.csv, run.json, metrics and predictions.

Each file is written once (by rank 0 under torchrun) and read back on ``resume``, so a finished phase
or row is never redone.
"""

import csv
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from patch2image.atomic_files import read_json, write_text
from patch2image.config import Config
from patch2image.data import write_png
from patch2image.evaluation import SECOND_OBSERVER, evaluate_cases, read_evaluation, write_evaluation
from patch2image.metrics import best_dice_threshold
from patch2image.networks import count_parameters, create_network, size_divisor
from patch2image.preprocessing import resize
from patch2image.training import distributed
from patch2image.training.fit import fit
from patch2image.training.images import PreparedImages
from patch2image.weights import WeightsMetadata, load_state, read_weights, save_weights

WEIGHTS = {"patch": "patch", "finetune": "finetuned", "scratch": "scratch"}
"""The weights file each phase leaves in the run directory (``NAME.safetensors``)."""


@dataclass
class RunDirectory:
    """One experiment's run directory while it runs: each phase's network trained into it, each row scored from it."""

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
        self.networks: dict[str, torch.nn.Module] = {}
        network = self.new_network()
        self.metadata = WeightsMetadata(
            network=config.network,
            network_args=config.network_args,  # in_channels: the pre-processing says it
            size_divisor=size_divisor(network),
            task=self.task,
            input_size=list(self.train.label.shape[1:]),
            fov_diameter=float(np.median(self.train.fov_diameters)),
            max_shrink=float(max(self.train.shrinks)),
            max_zoom=float(config.augmentation.scale[1]) if config.augmentation.scale else 1.0,
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

    def network(self, phase: str) -> torch.nn.Module:
        """The network a phase trained earlier in this process (:meth:`trained`)."""
        return self.networks[phase]

    def new_network(self) -> torch.nn.Module:
        torch.manual_seed(self.config.seed)  # the same initial weights for every phase that starts from scratch
        return create_network(self.config.network, **self.config.network_arguments)

    def trained(self, phase: str, train_data, augmentation, start_from: str | None = None) -> torch.nn.Module:
        """The phase's network: read from its weights file, or trained (resuming its checkpoint).

        Its weights file is written by :meth:`keep` once the network is scored, with the threshold chosen.
        """
        weights = self.out / f"{WEIGHTS[phase]}.safetensors"
        model = self.networks[phase] = self.new_network()
        if weights.exists():
            load_state(model, read_weights(weights)[0], str(weights))
            return model.eval()
        if start_from:
            model.load_state_dict(read_weights(self.out / f"{WEIGHTS[start_from]}.safetensors")[0])
        val_data = self.val.patches(self.config) if phase == "patch" else self.val.training_data()
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
        distributed.barrier()
        return model.eval()

    def keep(self, phase: str, threshold: float | None) -> None:
        """Write the phase's weights file (rank 0; once), with the threshold its row was scored at in the metadata.

        So that weights trained with ``threshold: validation`` segment at that threshold wherever they are used.
        """
        weights = self.out / f"{WEIGHTS[phase]}.safetensors"
        if distributed.is_main() and not weights.exists():
            save_weights(weights, self.networks[phase], dataclasses.replace(self.metadata, threshold=threshold))
        distributed.barrier()

    def score(self, row: str, predict) -> float | None:
        """Score one row on the test images at their original size (rank 0; skipped once written).

        Returns the threshold it was scored at (None on the other ranks).
        """
        target = self.out / "metrics" / f"{row}.json"
        if not distributed.is_main():
            return None
        if target.exists():
            return read_evaluation(target)["whole"]["threshold"]
        threshold = self.config.evaluation.threshold
        if threshold == "validation":
            threshold = best_dice_threshold([predict(image) for image in self.val.inputs], list(self.val.label))
        if not self.test.names:  # every labelled image trained (``hold_out_test: false``): nothing to score on
            return threshold
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
        return threshold

    def score_second_observer(self) -> None:
        """The second observer scored as a model is, when every test image has one (datasets mixed in one run
        may not all have one: then there is no such row, since it would be over other images than the model's)."""
        target = self.out / "metrics" / f"{SECOND_OBSERVER}.json"
        originals = self.test.original
        if originals and all(s.second_label is not None for s in originals) and not target.exists():
            cases = [(s.name, s.second_label.astype(np.float32), s.label, s.fov) for s in originals]
            write_evaluation(evaluate_cases(cases), target)  # a binary map: any threshold in (0, 1] is the same


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


def _fold(config: Config) -> int | None:
    """The fold of a one-dataset run (several datasets: their folds are in the metadata's ``extra``)."""
    return config.datasets[0].fold if len(config.datasets) == 1 else None
