"""Score every vessel model on DRIVE, STARE, CHASE_DB1 and LES-AV, then build docs/results/cross-dataset.md.

.venv/bin/python -m scripts.cross_dataset MODEL_OR_WEIGHTS ... [--datasets-root ../shared/datasets]

Each model is scored as ``patch2image evaluate --json`` scores it (the same library calls), on every dataset:
on a dataset it was trained on, the test split of its own fold (its held-out images); on the others,
every labelled image (``--split all``), since none of them was seen in training; a model trained on every
image of a dataset (``hold_out_test: false``) has no cell there. An evaluation already
written is kept (delete it to score again). Files of other scorers (benchmarks/peer_lwnet.py) in the
same folder join the matrix.
"""

import argparse
import sys
from pathlib import Path

from patch2image.data import open_dataset
from patch2image.evaluation import evaluate_model, write_evaluation
from patch2image.report import build_report
from patch2image.weights import load_model

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"drive": "DRIVE", "stare": "STARE", "chase_db1": "CHASE_DB1", "les_av": "LES-AV"}


def trained_folds(metadata) -> dict[str, int | None]:
    """{dataset kind: fold} of the datasets a model was trained on."""
    if metadata.extra.get("datasets"):
        return {d["kind"]: d["fold"] for d in metadata.extra["datasets"]}
    return {metadata.dataset: metadata.fold}


def evaluate(model: str, name: str, kind: str, folds: dict | None, root: Path, out: Path) -> Path | None:
    """``name__kind.json``; None on a dataset the model trained on without holding test images out (``folds`` None)."""
    target = out / f"{name}__{kind}.json"
    if target.exists():
        return target
    if folds is None:
        return None
    split, fold = ("test", folds[kind]) if kind in folds else ("all", None)
    print(f"{name} on {FOLDERS[kind]} ({split}{'' if fold is None else f', fold {fold}'})", flush=True)
    write_evaluation(evaluate_model(model, open_dataset(root / FOLDERS[kind]), split, fold), target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="shipped model names or .safetensors files, in the matrix's order")
    parser.add_argument("--datasets-root", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "cross-dataset"))
    parser.add_argument("--page", default=str(ROOT / "docs" / "results" / "cross-dataset.md"))
    args = parser.parse_args()
    out, root = Path(args.out), Path(args.datasets_root)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for model in args.models:
        metadata = load_model(model)[1]
        name = metadata.model_name(model)  # what evaluate records as the model
        folds = trained_folds(metadata)
        for kind in FOLDERS:
            held_out = metadata.test_images or kind not in folds
            files.append(evaluate(model, name, kind, folds if held_out else None, root, out))
    files = [f for f in files if f is not None]
    files += sorted(p for p in out.glob("*.json") if p not in files)
    build_report(files, out / "report", markdown_page=args.page)


if __name__ == "__main__":
    sys.exit(main())
