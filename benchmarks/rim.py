"""How well a model finds vessels at the rim of the field of view, against further in.

    .venv/bin/python -m benchmarks.rim --model drive-mini-unet --dataset STARE

Each image of the split (``all`` by default) is segmented as ``segment`` does (the field-of-view rule's
scale, one pass) and its labelled pixels inside the field of view are split in two: the *rim*, within
``--band`` (default 4%) of the field of view's width from its edge, and the *inside*, the rest. For
each part, pooled over the images at threshold 0.5: recall (labelled vessel pixels found), precision
and Dice. Vessels reach the rim on every camera, and there the retina meets the dark surround.

Writes ``benchmarks/results/rim-MODEL-DATASET.json``.
"""

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.machine import add_dataset_arguments, open_scored_dataset, write_record
from patch2image.data import fov_diameter, load_sample
from patch2image.inference import Segmenter
from patch2image.weights import load_model

ROOT = Path(__file__).resolve().parents[1]


def rim_and_inside(fov: np.ndarray, band: float) -> tuple[np.ndarray, np.ndarray]:
    """The field of view's pixels within ``band`` of its width from its edge, and the others."""
    distance = cv2.distanceTransform(fov.astype(np.uint8), cv2.DIST_L2, 5)
    rim = fov & (distance <= band * fov_diameter(fov))
    return rim, fov & ~rim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_arguments(parser)
    parser.add_argument("--band", type=float, default=0.04, help="the rim's width, a fraction of the FOV's width")
    args = parser.parse_args()

    dataset, files = open_scored_dataset(args)
    model, metadata = load_model(args.model)
    segmenter = Segmenter(model, metadata)
    started = time.perf_counter()
    counts = {part: {"labelled": 0, "found": 0, "marked": 0} for part in ("rim", "inside")}
    for sample_files in files:
        sample = load_sample(sample_files)
        marked = segmenter(sample.image) >= 0.5
        for part, region in zip(("rim", "inside"), rim_and_inside(sample.fov, args.band), strict=True):
            counts[part]["labelled"] += int((sample.label & region).sum())
            counts[part]["found"] += int((sample.label & marked & region).sum())
            counts[part]["marked"] += int((marked & region).sum())
    results = {}
    for part, c in counts.items():
        results[part] = {
            "share_of_labelled": round(c["labelled"] / sum(k["labelled"] for k in counts.values()), 4),
            "recall": round(c["found"] / c["labelled"], 4),
            "precision": round(c["found"] / max(c["marked"], 1), 4),
            "dice": round(2 * c["found"] / (c["labelled"] + c["marked"]), 4),
        }
        r = results[part]
        print(f"{part:<7} {r['share_of_labelled']:.1%} of the vessel pixels: recall {r['recall']:.3f}, "
              f"precision {r['precision']:.3f}, Dice {r['dice']:.3f}")  # fmt: skip
    record = {
        "band": args.band,
        "results": results,
    }
    write_record(args, "rim", metadata.model_name(args.model), dataset, files, started, record)


if __name__ == "__main__":
    main()
