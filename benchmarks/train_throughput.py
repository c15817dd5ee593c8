"""Training speed: patches per second and seconds per whole-image step, for each network.

Each figure is measured for patch2image's training loop with the settings ``precision: auto`` and
``layout: auto`` choose on this machine (measured afresh, in a throwaway cache folder, as a new user's
first run does; on-the-fly augmentation included: "ours"), for the same loop with each fixed choice
(float32 or bfloat16 autocast, channels-last or contiguous), and for a plain eager float32 loop without
augmentation ("plain"), in short alternating rounds (plain, ours, each fixed, plain, ours, ...) on
models built once. A machine whose load comes and goes slows the loops of a round alike, so the ratio
within a round is steadier than any time; the table reports the median speed-up over plain and its
spread (lowest, highest), and how much slower auto's choice is than the best fixed one.

    .venv/bin/python -m benchmarks.train_throughput [--networks light mini-unet dense] [--rounds 5] [--no-fixed]
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch

from benchmarks.machine import describe_machine
from patch2image.config import AugmentationConfig
from patch2image.networks import create_network
from patch2image.training.auto_settings import TrainingSettings, candidates, choose_settings
from patch2image.training.fit import TrainingData, _train_epoch
from patch2image.training.loss import bce_dice_loss

IMAGE = (584, 568)
PATCHES = (32, 1, 32, 32)
STEPS = {"light": (20, 2), "mini-unet": (8, 1), "dense": (2, 1)}
"""Steps per round (patch batches, image steps): a round of each loop lasts a second or a few."""

Stepper = Callable[[int], float]
"""Runs ``steps`` training steps and returns the seconds per step."""


def plain_stepper(network: str, shape) -> Stepper:
    """An eager float32 loop on fixed random data, warmed up by one step (one-off allocations)."""
    torch.manual_seed(0)
    model = create_network(network).train()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.95, eps=1e-7)
    x = torch.rand(shape)
    y = (torch.rand(shape) > 0.85).float()

    def step() -> None:
        loss = bce_dice_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()

    def run(steps: int) -> float:
        started = time.perf_counter()
        for _ in range(steps):
            step()
        return (time.perf_counter() - started) / steps

    return run


def ours_stepper(network: str, shape, settings: TrainingSettings) -> Stepper:
    """patch2image's epoch function (augmentation included) with ``settings`` on random data, warmed up once."""
    torch.manual_seed(0)
    model = create_network(network).to(memory_format=settings.memory_format)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.95, eps=1e-7)
    batch = shape[0]
    generator = torch.Generator().manual_seed(0)

    def data(steps: int) -> TrainingData:
        size = (batch * steps, *shape[1:])
        return TrainingData(torch.rand(size), (torch.rand(size) > 0.85).float())

    def epoch(batches: TrainingData) -> None:
        _train_epoch(model, optimizer, batches, batch, generator, AugmentationConfig(), settings, "cpu", "bench", True)

    epoch(data(1))

    def run(steps: int) -> float:
        batches = data(steps)  # drawn before the clock starts, as the plain loop's are
        started = time.perf_counter()
        epoch(batches)
        return (time.perf_counter() - started) / steps

    return run


def auto_settings(network: str, shape) -> TrainingSettings:
    """What ``precision: auto`` and ``layout: auto`` choose for this network and batch shape, measured now."""
    torch.manual_seed(0)
    x = torch.rand(shape)
    return choose_settings(create_network(network), x, (x > 0.85).float(), label=network, announce=lambda _: None)


def alternate(steppers: dict[str, Stepper], steps: int, rounds: int) -> dict:
    """Seconds per step of each loop round by round, and each loop's speed-up over plain in each round."""
    seconds = {name: [] for name in steppers}
    for _ in range(rounds):
        for name, stepper in steppers.items():
            seconds[name].append(stepper(steps))
    speedups = {
        name: [p / o for p, o in zip(seconds["plain_fp32"], values, strict=True)]
        for name, values in seconds.items()
        if name != "plain_fp32"
    }
    fixed = [name for name in speedups if name != "ours"]
    # auto against the fixed choice fastest over all rounds, round by round: above 1 when auto's choice is slower
    best = min(fixed, key=lambda name: statistics.median(seconds[name])) if fixed else None
    auto_cost = [o / b for o, b in zip(seconds["ours"], seconds[best], strict=True)] if best else []
    return {
        "seconds_per_step": {k: [round(s, 4) for s in v] for k, v in seconds.items()},
        "median_s": {k: round(statistics.median(v), 4) for k, v in seconds.items()},
        "median_speedup": {k: round(statistics.median(v), 2) for k, v in speedups.items()},
        "speedup_spread": {k: [round(min(v), 2), round(max(v), 2)] for k, v in speedups.items()},
        "best_fixed": best,
        "auto_over_best_fixed": round(statistics.median(auto_cost), 3) if auto_cost else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["light", "mini-unet", "dense"])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per figure (default 5)")
    parser.add_argument("--no-fixed", dest="fixed", action="store_false", help="skip timing each fixed choice")
    parser.add_argument("--out", default="benchmarks/results/train_throughput.json")
    args = parser.parse_args()
    results = {
        "machine": describe_machine(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "rounds": args.rounds,
        "networks": {},
    }
    cache = tempfile.TemporaryDirectory()
    os.environ["PATCH2IMAGE_CACHE_DIR"] = cache.name  # auto measures as on a new user's first run
    for network in args.networks:
        patch_steps, image_steps = STEPS.get(network, (5, 1))
        row = {}
        for kind, shape, steps in (("patch", PATCHES, patch_steps), ("image", (1, 1, *IMAGE), image_steps)):
            chosen = auto_settings(network, shape)
            steppers = {"plain_fp32": plain_stepper(network, shape), "ours": ours_stepper(network, shape, chosen)}
            if args.fixed:
                steppers |= {str(s): ours_stepper(network, shape, s) for s in candidates("auto", "auto")}
            measured = alternate(steppers, steps, args.rounds)
            row[kind] = {"auto_chose": str(chosen), **measured}
        summary = {
            "patches_per_s": {k: round(PATCHES[0] / v, 1) for k, v in row["patch"]["median_s"].items()},
            "s_per_image_step": {k: round(v, 3) for k, v in row["image"]["median_s"].items()},
        }
        keys = ("auto_chose", "best_fixed", "auto_over_best_fixed")
        summary |= {f"{kind}_{key}": row[kind][key] for kind in row for key in keys}
        summary |= {f"{kind}_speedup": row[kind]["median_speedup"]["ours"] for kind in row}
        summary |= {f"{kind}_speedup_spread": row[kind]["speedup_spread"]["ours"] for kind in row}
        results["networks"][network] = summary | {"rounds": row}
        print(network, json.dumps(summary), flush=True)
    results["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
