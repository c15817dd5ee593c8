"""Is ``--backend auto``'s choice the fastest? Its pick against every fixed candidate, after the fact.

For each network, on one pre-processed DRIVE test image at the shipped model's working size:

1. ``auto`` (``--backend auto --precision auto``, as ``segment`` runs by default) measures and chooses,
   in a throwaway cache folder, as on a user's first run;
2. then, in short alternating rounds (auto and each candidate, in a new random order each round), one
   forward pass each: auto's pass (through the runner it chose) and every fixed candidate's (each backend x
   precision x, for PyTorch, memory layout), all built once beforehand.

The load of a shared machine comes and goes; alternation slows the passes of a round alike. Reported
per network: each candidate's median seconds per pass, auto's, and auto's median over the fastest
fixed candidate's ("auto / best"; above 1.05 means auto's first-use measurement picked a candidate
more than 5% slower than the best one measured later).

    .venv/bin/python -m benchmarks.inference_auto [--networks light mini-unet] [--rounds 15]

Writes ``benchmarks/results/inference_auto.json``.
"""

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from benchmarks.machine import describe_machine

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT.parent / "shared" / "datasets" / "DRIVE" / "test" / "images" / "01_test.tif"


def network_input(model: str) -> torch.Tensor:
    """The DRIVE photograph pre-processed as ``segment`` does, as the runners' (1, C, H, W) batch."""
    from patch2image.data.io import read_image
    from patch2image.inference import Segmenter, _batch_of_one, _pad_to_multiple
    from patch2image.weights import load_model

    network, metadata = load_model(model)
    image = Segmenter(network, metadata).prepare(read_image(IMAGE))
    return _batch_of_one(_pad_to_multiple(image, metadata.size_divisor))


def measure(model: str, rounds: int) -> dict:
    from patch2image.runtime.backends import load_backend

    x = network_input(model)
    auto, _, _ = load_backend(model, "auto", precision="auto", announce=lambda line: print(" ", line))
    auto.probabilities(x)  # measures and chooses
    runners = {name: build() for name, build in auto.factories.items()}
    for runner in runners.values():
        runner.probabilities(x)  # one-off costs (graph compilation, allocations) out of the rounds
    seconds: dict[str, list[float]] = {"auto": [], **{name: [] for name in runners}}
    order = [("auto", auto), *runners.items()]
    shuffle = random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(order)  # no candidate always follows the same one (whose memory traffic it would inherit)
        for name, runner in order:
            started = time.perf_counter()
            runner.probabilities(x)
            seconds[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    best = min((name for name in runners), key=medians.get)
    return {
        "input": list(x.shape),
        "auto_chose": auto.description,
        "seconds_per_pass": {name: round(s, 4) for name, s in medians.items()},
        "best_fixed": best,
        "auto_over_best": round(medians["auto"] / medians[best], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["light", "mini-unet"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inference_auto.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["PATCH2IMAGE_CACHE_DIR"] = cache  # a first run's choice, not one remembered from earlier
        results = {}
        for network in args.networks:
            print(f"drive-{network}:")
            results[network] = measure(f"drive-{network}", args.rounds)
            row = results[network]
            ranked = sorted(row["seconds_per_pass"].items(), key=lambda item: item[1])
            timings = ", ".join(f"{name} {s:.3g}" for name, s in ranked)
            print(f"  s per pass: {timings}\n  auto / best fixed ({row['best_fixed']}): {row['auto_over_best']}")
    record = {
        "machine": describe_machine(),
        "load_average_at_start": os.getloadavg()[0],
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "rounds": args.rounds,
        "networks": results,
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
