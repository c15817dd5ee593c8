"""Which scale to segment a photograph at: the field-of-view rule against larger scales, averages of
scales, and the scale the network is most confident at, scored on datasets the model never saw.

    .venv/bin/python -m benchmarks.working_scale --model drive-mini-unet --dataset CHASE_DB1 --limit 7

Each candidate segments every image of the split (``all`` by default) at its size and is scored inside
the field of view at threshold 0.5 (mean over images). Candidates:

- ``rule xM``: the field-of-view rule's size times M (x1 is what ``segment`` does);
- ``mean xA+xB``: the mean of the probabilities at both sizes (each brought back to original size);
- ``confident``: per image, the multiplier among those tried whose probabilities inside the FOV are
  least ambiguous (lowest mean of min(p, 1 - p)), a choice made from the image alone.

Writes ``benchmarks/results/working_scale-MODEL-DATASET.json``.
"""

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import add_dataset_arguments, fov_scores, open_scored_dataset, write_record
from patch2image.data import load_sample
from patch2image.inference import Segmenter, working_size
from patch2image.preprocessing import round_to_multiple
from patch2image.weights import load_model

ROOT = Path(__file__).resolve().parents[1]

MULTIPLIERS = (0.8, 1.0, 1.25, 1.5, 2.0)
AVERAGES = ((1.0, 1.5), (1.0, 2.0), (1.0, 1.25, 1.5))


def ambiguity(prob: np.ndarray, fov: np.ndarray) -> float:
    inside = prob[fov]
    return float(np.minimum(inside, 1 - inside).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_arguments(parser)
    parser.add_argument("--limit", type=int, help="the first N images only")
    args = parser.parse_args()

    dataset, files = open_scored_dataset(args)
    files = files[: args.limit]
    model, metadata = load_model(args.model)
    started = time.perf_counter()
    cases = {name: [] for name in [f"rule x{m:g}" for m in MULTIPLIERS] + ["confident"]}
    cases |= {"mean " + "+".join(f"x{m:g}" for m in combo): [] for combo in AVERAGES}
    chosen = []
    for sample_files in files:
        sample = load_sample(sample_files)
        (height, width), _ = working_size(sample.image, metadata)
        probs = {}
        for m in MULTIPLIERS:
            size = round_to_multiple((height * m, width * m), metadata.size_divisor)
            probs[m] = Segmenter(model, metadata, size=size)(sample.image)
            cases[f"rule x{m:g}"].append((sample.name, probs[m], sample.label, sample.fov))
        for combo in AVERAGES:
            mean = np.mean([probs[m] for m in combo], axis=0)
            cases["mean " + "+".join(f"x{m:g}" for m in combo)].append((sample.name, mean, sample.label, sample.fov))
        best = min(MULTIPLIERS, key=lambda m: ambiguity(probs[m], sample.fov))
        chosen.append(best)
        cases["confident"].append((sample.name, probs[best], sample.label, sample.fov))
    results = fov_scores(cases, 22)
    print(f"confident chose: {', '.join(f'x{m:g}' for m in chosen)}")
    record = {
        "results": results,
        "confident_choices": chosen,
    }
    write_record(args, "working_scale", metadata.model_name(args.model), dataset, files, started, record)


if __name__ == "__main__":
    main()
