"""Does measuring a photograph cost more than segmenting it? Per photograph at DRIVE's size, on this machine.

    nice -n 5 .venv/bin/python -m benchmarks.measure --model vessels --dataset DRIVE --split test

For each photograph, in one alternating run: the vessel segmentation (the command's default: ``--backend auto``
and its precision, as ``segment`` runs it), the optic disc segmentation, and ``measure_masks`` on the two
masks (its parts timed: skeleton and segments, splines, everything). Prints the medians with the machine's
load and records them in ``benchmarks/results/measure-MODEL-DATASET.json``.
"""

import argparse
import os
import statistics
import sys
import time

from benchmarks.machine import add_dataset_arguments, describe_machine, open_scored_dataset, write_record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_arguments(parser)
    parser.add_argument("--limit", type=int, default=None, help="photographs (default: all of the split)")
    args = parser.parse_args(argv)

    from patch2image.data import field_of_view_mask, read_image
    from patch2image.inference import load_segmenter
    from patch2image.measure import measure_masks
    from patch2image.measure.curves import fit_curve
    from patch2image.measure.segments import skeleton_of
    from patch2image.postprocessing import inside_field_of_view

    def segmenter(name):
        segmenter = load_segmenter(name, backend="auto", precision="auto", announce=print)
        return segmenter, getattr(segmenter.model, "description", "auto")

    vessels, vessel_backend = segmenter(args.model)
    disc, disc_backend = segmenter("optic-disc")
    dataset, files = open_scored_dataset(args)
    files = files[: args.limit] if args.limit else files
    times = {"segment vessels": [], "segment disc": [], "skeleton": [], "splines": [], "measure_masks": []}
    load, begun = [os.getloadavg()[0]], time.perf_counter()
    for case in files:
        rgb = read_image(case.image)
        fov = field_of_view_mask(rgb)
        started = time.perf_counter()
        mask = inside_field_of_view(vessels(rgb), fov) >= vessels.threshold
        times["segment vessels"].append(time.perf_counter() - started)
        started = time.perf_counter()
        disc_mask = inside_field_of_view(disc(rgb), fov) >= disc.threshold
        times["segment disc"].append(time.perf_counter() - started)
        started = time.perf_counter()
        skeleton = skeleton_of(mask)
        times["skeleton"].append(time.perf_counter() - started)
        started = time.perf_counter()
        for path in skeleton.segments:
            fit_curve(path)
        times["splines"].append(time.perf_counter() - started)
        started = time.perf_counter()
        measure_masks(mask, fov, disc_mask)
        times["measure_masks"].append(time.perf_counter() - started)
        load.append(os.getloadavg()[0])
        print(f"{case.name}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items()), file=sys.stderr)
    medians = {k: statistics.median(v) for k, v in times.items()}
    ratio = medians["measure_masks"] / medians["segment vessels"]
    for name, value in medians.items():
        print(f"{name:<16} {value:.3f} s (median of {len(files)})")
    print(f"measure_masks / vessel segmentation: {ratio:.2f}")
    print(f"machine: {describe_machine()}; load average (1 min) {min(load):.1f} to {max(load):.1f}")
    record = {
        "load_1min": [min(load), max(load)], "vessel_backend": vessel_backend, "disc_backend": disc_backend,
        "median_seconds": medians, "measure_over_segment": ratio, "seconds_per_stage": times,
    }  # fmt: skip
    write_record(args, "measure", args.model, dataset, files, begun, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
