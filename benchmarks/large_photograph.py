"""One 12-megapixel photograph through ``patch2image segment``, end to end and stage by stage.

    .venv/bin/python -m benchmarks.large_photograph --model vessels --photographs 6 --rounds 3

IDRiD's test photographs are 4288 x 2848 (12.2 megapixels), from a camera whose field of view is about six
times DRIVE's width. Two measurements, on the first ``--photographs`` of them:

- end to end: the ``segment`` command as a user runs it (``--backend auto``, its choice cached by an untimed
  first run), with ``--workers 0`` and ``--workers 1`` alternating round by round so that a change in load
  slows both alike; the figure is the command's own "s per image" (from reading each photograph to its
  three PNGs written, start-up and the one-time backend choice excluded), median over rounds.
- stages, in this process, the same functions ``segment`` calls: reading and decoding, the field-of-view
  mask, the fundus check, pre-processing at the working size, the network, post-processing back at full
  size and writing the three PNGs; median over the photographs.

Writes ``benchmarks/results/large_photograph-MODEL.json``.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import ROOT, open_scored_dataset, write_record
from patch2image.data import field_of_view_mask, read_image
from patch2image.fundus_check import check_photograph
from patch2image.inference import load_segmenter
from patch2image.segment import Outputs, output_stem, working_scale, write_outputs


def end_to_end(files: list[Path], model: str, workers: int) -> float:
    """The ``segment`` command's own seconds per image."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "patch2image", "segment", *map(str, files), "--model", model]
        command += ["--out", out, "--workers", str(workers)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"([0-9.]+) s per image", done.stdout + done.stderr)
    if not found:
        raise SystemExit(f"no 's per image' in segment's output:\n{done.stdout}{done.stderr}")
    return float(found.group(1))


STAGES = (
    "read and decode", "field-of-view mask", "fundus check", "pre-processing", "network", "post-processing",
    "three PNGs written",
)  # fmt: skip


def stages(files: list[Path], model: str) -> dict:
    """Median seconds of each stage ``segment`` runs on a photograph, in this process (no workers)."""
    segmenter = load_segmenter(model)
    outputs = Outputs(task=segmenter.metadata.task)
    times = {name: [] for name in STAGES}
    with tempfile.TemporaryDirectory() as out:
        for index, path in enumerate([files[0], *files]):  # the first photograph once more, untimed: warm-up
            laps = [time.perf_counter()]
            rgb = read_image(path)
            laps.append(time.perf_counter())
            fov = field_of_view_mask(rgb)
            laps.append(time.perf_counter())
            check_photograph(rgb, fov)
            laps.append(time.perf_counter())
            network_input = segmenter.prepare(rgb, fov)
            laps.append(time.perf_counter())
            prob = segmenter.predict(network_input)
            laps.append(time.perf_counter())
            about = working_scale(rgb, fov, segmenter)
            prob = segmenter.finish(prob, fov)
            laps.append(time.perf_counter())
            write_outputs(Path(out), output_stem(path), rgb, prob, segmenter.mask_of(prob), outputs, about)
            laps.append(time.perf_counter())
            if index:
                for name, before, after in zip(STAGES, laps[:-1], laps[1:], strict=True):
                    times[name].append(after - before)
    medians = {name: round(statistics.median(values), 3) for name, values in times.items()}
    return medians | {"total": round(sum(medians.values()), 3), "working size": about["working_size"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vessels")
    parser.add_argument("--photographs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--datasets-root", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    args.dataset, args.split, args.fold = "IDRiD", "test", None

    started = time.perf_counter()
    dataset, cases = open_scored_dataset(args)
    cases = cases[: args.photographs]
    files = [case.image for case in cases]
    end_to_end(files[:1], args.model, 0)  # untimed: the backend choice, cached for the timed runs
    rounds: dict[str, list[float]] = {"workers 0": [], "workers 1": []}
    for _ in range(args.rounds):
        for workers in (0, 1):
            rounds[f"workers {workers}"].append(end_to_end(files, args.model, workers))
    by_stage = stages(files, args.model)
    for name, values in rounds.items():
        print(f"segment --{name}: {statistics.median(values):.2f} s per photograph {values}")
    for name, seconds in by_stage.items():
        print(f"  {name}: {seconds}")
    record = {
        "photograph_size": "4288x2848",
        "end_to_end_seconds_per_photograph": {
            name: {"median": statistics.median(values), "rounds": values} for name, values in rounds.items()
        },
        "stages_seconds": by_stage,
        "load_average_after": [round(load, 2) for load in os.getloadavg()],
    }
    model_name = Path(args.model).parent.name if args.model.endswith(".safetensors") else args.model
    write_record(args, "large_photograph", model_name, dataset, cases, started, record)


if __name__ == "__main__":
    main()
