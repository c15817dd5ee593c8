"""The machine a benchmark ran on, recorded beside its figures; and what the benchmarks that score a
model on a dataset's images share: their arguments and where their record goes."""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from patch2image.runtime.auto import processor

ROOT = Path(__file__).resolve().parents[1]


def describe_machine() -> str:
    return f"{processor()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --dataset, --datasets-root, --split (default all), --fold and --out."""
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", required=True, help="a folder under --datasets-root, or a path")
    parser.add_argument("--datasets-root", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--split", default="all")
    parser.add_argument("--fold", type=int)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))


def open_scored_dataset(args: argparse.Namespace):
    """The dataset that ``--dataset`` names, and its files of ``--split`` and ``--fold``."""
    from patch2image.data import open_dataset

    root = Path(args.dataset) if Path(args.dataset).is_dir() else Path(args.datasets_root) / args.dataset
    dataset = open_dataset(root)
    return dataset, dataset.files(args.split, fold=args.fold)


def fov_scores(cases: dict[str, list], width: int) -> dict[str, dict]:
    """AUC and Dice inside the FOV, mean over images, of each named list of ``evaluate_cases`` cases; printed."""
    from patch2image.evaluation import evaluate_cases

    results = {}
    for name, scored in cases.items():
        mean = evaluate_cases(scored)["fov"]["mean"]
        results[name] = {"auc": round(mean["auc"], 4), "dice": round(mean["dice"], 4)}
        print(f"{name:<{width}} AUC {mean['auc']:.4f}  Dice {mean['dice']:.4f}")
    return results


def write_record(args: argparse.Namespace, benchmark: str, model_name: str, dataset, files, started: float, record):
    """``--out``/BENCHMARK-MODEL-DATASET.json: ``record`` after the fields every scoring benchmark shares.

    Those are the model and the images (``dataset``'s ``files`` of ``--split``), the seconds since
    ``started`` (``time.perf_counter``), the machine and the command that reproduces the record.
    """
    shared = {"model": args.model, "dataset": dataset.kind, "split": args.split, "images": len(files)}
    command = f"python -m benchmarks.{benchmark} " + " ".join(sys.argv[1:])
    timing = {"seconds": round(time.perf_counter() - started, 1), "machine": describe_machine(), "command": command}
    out = Path(args.out) / f"{benchmark}-{model_name}-{dataset.kind}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(shared | record | timing, indent=1) + "\n")
    print(f"written {out}")
