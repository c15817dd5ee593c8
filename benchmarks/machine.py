"""The machine a benchmark ran on, recorded beside its figures; and what the benchmarks that score a
model on a dataset's images share: their arguments and where their record goes."""

import argparse
import json
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


def write_record(args: argparse.Namespace, benchmark: str, model_name: str, dataset_kind: str, record: dict) -> None:
    """``--out``/BENCHMARK-MODEL-DATASET.json."""
    out = Path(args.out) / f"{benchmark}-{model_name}-{dataset_kind}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"written {out}")
