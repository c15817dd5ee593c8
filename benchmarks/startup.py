"""A short ``patch2image segment`` run, this version against an earlier commit and the reference, in alternation.

Where a run on one photograph spends its time is mostly start-up: imports, loading the weights, the
backend, the first forward pass. Each round runs, each in a fresh process and one after the other:

- now: ``patch2image segment IMAGES --model M --out DIR`` of this working tree;
- before: the same command on the sources of ``--before COMMIT`` (``git archive`` of its ``src/``, put
  first on ``PYTHONPATH``, same interpreter and packages);
- reference: ``python ../shared/bench/ref_segment.py NET IMAGES DIR``.

Before the rounds, one untimed run of each fills the disk cache and patch2image's user cache (the ONNX
export and ``--backend auto``'s remembered choice), so every timed run is a run with a remembered
choice, as every run after a user's first is. The ratios of each round are what to compare on a shared
machine: a load that comes and goes slows a round's three runs alike.

    .venv/bin/python -m benchmarks.startup --before COMMIT [--images DIR] [--networks light] [--rounds 7]

Writes ``benchmarks/results/startup-IMAGES.json`` (IMAGES: the folder's name). With ``--profile``, each
version also runs once under cProfile, and the record gets where that run's time went (``PARTS``).
"""

import argparse
import fnmatch
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.machine import describe_machine
from benchmarks.segment_vs_reference import REFERENCE, timed
from benchmarks.segmentation_time import DRIVE_TEST, ROOT, run_command

PARTS = {
    "imports": "<frozen importlib._bootstrap>:1165(_find_and_load)",
    "argument parsing (imports torch)": "cli.py:*(build_parser)",
    "loading the model and its backend": "*.py:*(load_segment*)",  # load_segmentation_model, now load_segmenter
    "reading and pre-processing": "segment.py:*(prepare_file)",
    "the forward pass (the first compiles)": "inference.py:*(_forward)",
    "writing the PNGs": "segment.py:*(write_outputs)",
    "the whole command": "cli.py:*(main)",
}
"""Where a run's time goes: a part's name -> the function whose cumulative time it is (``*``: any line)."""


def profile(command: list[str], env: dict | None, scratch: Path) -> dict[str, float]:
    """Cumulative seconds of each of ``PARTS`` in one run of ``command`` (``python -m ...``) under cProfile."""
    stats_file = scratch / "profile.out"
    subprocess.run([command[0], "-m", "cProfile", "-o", str(stats_file), *command[1:]], env=env, check=True,
                   capture_output=True)  # fmt: skip
    stats = pstats.Stats(str(stats_file)).stats
    seconds = {}
    for part, pattern in PARTS.items():
        matches = [
            cumulative for (file, line, name), (_, _, _, cumulative, _) in stats.items()
            if fnmatch.fnmatch(f"{Path(file).name}:{line}({name})", pattern)
        ]  # fmt: skip
        seconds[part] = round(max(matches, default=0.0), 3)
    return seconds


def sources_of(commit: str, into: Path) -> Path:
    """The package's sources at ``commit``, extracted under ``into``; the folder to put on ``PYTHONPATH``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def median_ratio(numerator: list[float], denominator: list[float]) -> dict:
    ratios = [round(a / b, 3) for a, b in zip(numerator, denominator, strict=True)]
    return {"median": round(statistics.median(ratios), 3), "spread": [min(ratios), max(ratios)], "rounds": ratios}


def measure(network: str, args, scratch: Path, before_src: Path) -> dict:
    model = args.model or f"drive-{network}"
    segment = [sys.executable, "-m", "patch2image", "segment", str(args.images), "--model", model]
    runs = {
        "now": ([*segment, "--out", str(scratch / "now")], None),
        "before": ([*segment, "--out", str(scratch / "before")], os.environ | {"PYTHONPATH": str(before_src)}),
        "reference": ([sys.executable, str(REFERENCE), network, str(args.images), str(scratch / "ref")], None),
    }
    for command, env in runs.values():
        timed(command, Path(command[-1]), env)  # the disk cache and the remembered backend choice
    seconds = {name: [] for name in runs}
    for round_ in range(args.rounds):
        load = os.getloadavg()[0]
        for name, (command, env) in runs.items():
            seconds[name].append(round(timed(command, Path(command[-1]), env)[0], 3))
        print(f"{network} round {round_ + 1} (load {load:.1f}): " + ", ".join(
            f"{name} {s[-1]:.2f} s" for name, s in seconds.items()), flush=True)  # fmt: skip
    profiles = {}
    if args.profile:
        for name in ("now", "before"):
            command, env = runs[name]
            profiles[name] = profile([*command[:-1], str(scratch / "profiled")], env, scratch)
            print(f"{network} {name}, where the time went: {profiles[name]}", flush=True)
    return {
        "commands": {name: " ".join(command) for name, (command, _) in runs.items()},
        "profiles": profiles,
        "seconds": seconds,
        "median_s": {name: round(statistics.median(s), 3) for name, s in seconds.items()},
        "now_over_reference": median_ratio(seconds["now"], seconds["reference"]),
        "before_over_reference": median_ratio(seconds["before"], seconds["reference"]),
        "now_over_before": median_ratio(seconds["now"], seconds["before"]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit to compare with (e.g. main)")
    parser.add_argument("--images", type=Path, default=DRIVE_TEST, help="folder of photographs (DRIVE test images)")
    parser.add_argument("--networks", nargs="+", default=["light"])
    parser.add_argument("--model", help="the shipped model (default drive-NETWORK; one network)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="also where one run of each version spends its time")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or ROOT / "benchmarks" / "results" / f"startup-{args.images.name}.json"
    results = {
        "machine": describe_machine(),
        "command": run_command("benchmarks/startup.py", argv),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "networks": {},
    }
    with tempfile.TemporaryDirectory() as scratch:
        before_src = sources_of(args.before, Path(scratch))
        results["before"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", args.before], capture_output=True,
                                           text=True, check=True).stdout.strip()  # fmt: skip
        for network in args.networks:
            results["networks"][network] = row = measure(network, args, Path(scratch), before_src)
            print(f"{network}: now/reference {row['now_over_reference']['median']}, before/reference "
                  f"{row['before_over_reference']['median']}, now/before {row['now_over_before']['median']}; "
                  f"now {row['median_s']['now']} s", flush=True)  # fmt: skip
    results["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
