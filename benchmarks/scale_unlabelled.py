"""What the working scale does on photographs without vessel labels (IDRiD's 4288x2848): vessel pixels found,
their skeleton's length, fragments, and the field of view's rim, at the rule's size and at larger ones.

    .venv/bin/python -m benchmarks.scale_unlabelled --model vessels --dataset IDRiD --split test --limit 8

Per multiplier of the rule's size, means over the images (the mask at the model's threshold, brought back to
the photograph's size, inside its field of view):

- ``vessels``: the share of the field of view labelled vessel;
- ``skeleton_per_fov_width``: the skeleton's length (pixels at original size) over the FOV's width: more
  means more (thin) vessels traced;
- ``fragments``: connected pieces (8-connectivity) under 0.01% of the field of view's area, per image;
- ``rim_over_inside``: the vessel share within 4% of the FOV's width from its edge over the share further in.

A crop (800x800 at original size, where the rule's vessels are densest) of each multiplier's overlay goes to
``--crops`` for looking at. Writes ``benchmarks/results/scale_unlabelled-MODEL-DATASET.json``.
"""

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from skimage.measure import label
from skimage.morphology import skeletonize

from benchmarks.machine import add_dataset_arguments, open_scored_dataset, write_record
from benchmarks.rim import rim_and_inside
from patch2image.data import fov_diameter, load_sample, write_png
from patch2image.inference import Segmenter, working_size
from patch2image.postprocessing import overlay
from patch2image.weights import load_model

ROOT = Path(__file__).resolve().parents[1]

MULTIPLIERS = (1.0, 1.5, 2.0)


def describe(mask: np.ndarray, fov: np.ndarray) -> dict:
    inside = mask & fov
    pieces = label(inside, connectivity=2)
    sizes = np.bincount(pieces.ravel())[1:]
    rim, further_in = rim_and_inside(fov, 0.04)
    return {
        "vessels": float(inside.sum() / fov.sum()),
        "skeleton_per_fov_width": float(skeletonize(inside).sum() / fov_diameter(fov)),
        "fragments": int((sizes < 1e-4 * fov.sum()).sum()),
        "rim_over_inside": float((mask[rim].mean()) / max(mask[further_in].mean(), 1e-9)),
    }


def crop(image: np.ndarray, mask: np.ndarray, side: int = 800) -> np.ndarray:
    """The ``side`` square where ``mask`` is densest (the vessel arcades about the disc)."""
    density = cv2.boxFilter(mask.astype(np.float32), -1, (side, side))
    y, x = np.unravel_index(int(np.argmax(density)), density.shape)
    top = int(np.clip(y - side // 2, 0, max(0, mask.shape[0] - side)))
    left = int(np.clip(x - side // 2, 0, max(0, mask.shape[1] - side)))
    return image[top : top + side, left : left + side]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_arguments(parser)
    parser.add_argument("--limit", type=int, help="the first N images only")
    parser.add_argument("--multipliers", type=float, nargs="+", default=MULTIPLIERS, help="of the rule's size")
    parser.add_argument("--crops", default=str(ROOT / "docs" / "results" / "cross-dataset"))
    args = parser.parse_args()

    dataset, files = open_scored_dataset(args)
    files = files[: args.limit]
    model, metadata = load_model(args.model)
    started = time.perf_counter()
    found, window = {m: [] for m in args.multipliers}, None
    for index, sample_files in enumerate(files):
        sample = load_sample(sample_files)
        (height, width), rule = working_size(sample.image, metadata, fov=sample.fov)
        print(f"{sample.name}: {rule}")
        for m in args.multipliers:
            mask = Segmenter(model, metadata, scale=m)(sample.image) >= metadata.threshold
            mask &= sample.fov
            found[m].append(describe(mask, sample.fov))
            if index == 0:  # the same window at every multiplier: the rule's densest
                window = mask if window is None else window
                out = Path(args.crops) / f"scale-{dataset.kind}-{sample.name}-x{m:g}.png"
                write_png(out, crop(overlay(sample.image, mask, metadata.task), window))
    results = {}
    for m, rows in found.items():
        results[f"rule x{m:g}"] = {key: round(float(np.mean([r[key] for r in rows])), 4) for key in rows[0]}
        print(f"rule x{m:g}: " + ", ".join(f"{k} {v:g}" for k, v in results[f"rule x{m:g}"].items()))
    record = {
        "results": results,
    }
    write_record(args, "scale_unlabelled", metadata.model_name(args.model), dataset, files, started, record)


if __name__ == "__main__":
    main()
