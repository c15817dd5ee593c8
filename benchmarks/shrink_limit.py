"""The working-scale rule with and without its limit on shrinking, on every photograph of a dataset.

    .venv/bin/python -m benchmarks.shrink_limit --model runs/without-les-av/finetuned.safetensors --dataset LES-AV

The model segments each photograph twice, in float32: at the plain field-of-view rule's size (as if the
weights recorded no rescaling, ``max_zoom`` 1) and at the rule's size as ``segment`` chooses it, which shrinks
a photograph no further than training shrank its own (``max_shrink``), up to the rescaling training taught
(``max_zoom``). Both are scored inside the field of view at threshold 0.5, mean over images. Writes
``benchmarks/results/shrink_limit-MODEL-DATASET.json``.
"""

import argparse
import dataclasses
import time

from benchmarks.machine import add_dataset_arguments, fov_scores, open_scored_dataset, write_record
from patch2image.data import load_sample
from patch2image.inference import Segmenter, working_size
from patch2image.weights import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_arguments(parser)
    args = parser.parse_args()

    dataset, files = open_scored_dataset(args)
    model, metadata = load_model(args.model)
    rules = {"plain rule": dataclasses.replace(metadata, max_zoom=1.0), "shrink limited": metadata}
    cases, finer, started = {name: [] for name in rules}, [], time.perf_counter()
    for sample_files in files:
        sample = load_sample(sample_files)
        (limited_h, _), _ = working_size(sample.image, metadata, fov=sample.fov)
        (plain_h, _), _ = working_size(sample.image, rules["plain rule"], fov=sample.fov)
        finer.append(round(limited_h / plain_h, 3))
        for name, rule_metadata in rules.items():
            prob = Segmenter(model, rule_metadata, precision="fp32")(sample.image)
            cases[name].append((sample.name, prob, sample.label, sample.fov))
    results = fov_scores(cases, 15)
    print(f"the limit segmented them x{min(finer):g} to x{max(finer):g} finer than the plain rule")
    record = {
        "max_shrink": metadata.max_shrink,
        "max_zoom": metadata.max_zoom,
        "finer_than_plain": finer,
        "results": results,
    }
    write_record(args, "shrink_limit", metadata.model_name(args.model), dataset, files, started, record)


if __name__ == "__main__":
    main()
