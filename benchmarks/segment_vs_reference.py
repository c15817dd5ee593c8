"""``patch2image segment`` as a user runs it, against the plain reference script, end to end.

For each network (default: Mini-Unet and Light), in the same run and in alternation (A B A B ...):

- A: ``patch2image segment IMAGES --model drive-NET --out DIR`` (or ``--model M``), default options
  (so ``--backend auto`` and whatever else is the default), the console script in a fresh process:
  start-up, imports, model loading, reading, pre-processing, the forward pass and the three PNGs of
  each image all included;
- B: ``python ../shared/bench/ref_segment.py NET IMAGES DIR`` (see ``../shared/bench/README.md``) with
  this project's interpreter (the one with torch), also a fresh process.

Wall time of each process; the ratio A / B of each round; the median ratio and its spread (lowest and
highest) over the rounds. Alternating matters on a shared machine: a load that comes and goes slows
the A and the B of a round alike, so the ratios are steadier than the seconds.

Before the rounds, one untimed run of each warms the disk cache; A's warm-up also fills patch2image's
user cache (the ONNX export and ``--backend auto``'s measurement), as any run after a user's first
does. What that first run costs is measured once apart, with an empty cache folder
(``PATCH2IMAGE_CACHE_DIR``), and reported as ``first_run_s``.

    .venv/bin/python -m benchmarks.segment_vs_reference [--networks mini-unet light] [--model M] [--rounds 5]

Writes ``benchmarks/results/segment_vs_reference.json``.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.machine import describe_machine
from benchmarks.segmentation_time import DRIVE_TEST, ROOT, run_command

REFERENCE = ROOT.parent / "shared" / "bench" / "ref_segment.py"
JSON_OUT = ROOT / "benchmarks" / "results" / "segment_vs_reference.json"
GOALS = {"mini-unet": 0.5, "light": 0.6}
"""The goals: patch2image's wall time at most this fraction of the reference's."""


def timed(command: list[str], out: Path, env: dict | None = None) -> tuple[float, str]:
    """Seconds the command takes in a fresh process writing into an emptied ``out``, and its stderr's last line."""
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return seconds, "\n".join(line for line in lines if "backend auto" in line or "segmented" in line)


def commands(network: str, model: str, images: Path, scratch: Path, extra: list[str]) -> dict[str, list[str]]:
    ours = [str(ROOT / ".venv" / "bin" / "patch2image"), "segment", str(images), "--model", model]
    return {
        "patch2image": [*ours, "--out", str(scratch / "ours"), *extra],
        "reference": [sys.executable, str(REFERENCE), network, str(images), str(scratch / "reference")],
    }


def measure(network: str, args, scratch: Path) -> dict:
    runs = commands(network, args.model or f"drive-{network}", args.images, scratch, args.segment_args)
    outs = {"patch2image": scratch / "ours", "reference": scratch / "reference"}
    with tempfile.TemporaryDirectory() as empty_cache:
        first_run, first_log = timed(runs["patch2image"], outs["patch2image"], os.environ | {
            "PATCH2IMAGE_CACHE_DIR": empty_cache})  # fmt: skip
    notes = {name: timed(command, outs[name])[1] for name, command in runs.items()}  # warm-up
    seconds = {name: [] for name in runs}
    ratios = []
    for round_ in range(args.rounds):
        for name, command in runs.items():
            seconds[name].append(round(timed(command, outs[name])[0], 3))
        ratios.append(round(seconds["patch2image"][-1] / seconds["reference"][-1], 3))
        print(f"{network} round {round_ + 1}: {seconds['patch2image'][-1]:.2f} s vs {seconds['reference'][-1]:.2f} s "
              f"= {ratios[-1]:.3f}", flush=True)  # fmt: skip
    median = statistics.median(ratios)
    return {
        "commands": {name: " ".join(command) for name, command in runs.items()},
        "images": len([p for p in args.images.iterdir() if p.is_file()]),
        "seconds": seconds,
        "median_s": {name: round(statistics.median(s), 3) for name, s in seconds.items()},
        "ratios": ratios,
        "median_ratio": round(median, 3),
        "ratio_spread": [min(ratios), max(ratios)],
        "goal_ratio": GOALS.get(network),
        "goal_met": None if network not in GOALS else median <= GOALS[network],
        "first_run_s": round(first_run, 3),
        "first_run_log": first_log,
        "patch2image_log": notes["patch2image"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["mini-unet", "light"])
    parser.add_argument(
        "--model", help="the shipped model patch2image runs (default drive-NETWORK; one network), e.g. vessels"
    )
    parser.add_argument("--rounds", type=int, default=5, help="A B rounds per network (default 5)")
    parser.add_argument("--images", type=Path, default=DRIVE_TEST, help="folder of photographs (DRIVE test images)")
    parser.add_argument(
        "--segment-args", nargs=argparse.REMAINDER, default=[],
        help="options added to patch2image segment (default none: the defaults are what is measured)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=JSON_OUT)
    args = parser.parse_args(argv)
    if args.model and len(args.networks) != 1:
        sys.exit("error: --model names the model of one network: give --networks NETWORK")
    if not REFERENCE.is_file():
        sys.exit(f"error: {REFERENCE}: the reference script is missing")
    load = [round(v, 2) for v in os.getloadavg()]
    results = {
        "machine": describe_machine(),
        "load_average_at_start": load,
        "command": run_command("benchmarks/segment_vs_reference.py", argv),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "networks": {},
    }
    with tempfile.TemporaryDirectory() as scratch:
        for network in args.networks:
            results["networks"][network] = measure(network, args, Path(scratch))
            row = results["networks"][network]
            print(f"{network}: median ratio {row['median_ratio']} (spread {row['ratio_spread']}), "
                  f"goal {row['goal_ratio']}", flush=True)  # fmt: skip
    results["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
