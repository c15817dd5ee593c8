"""Training speed: patches per second and seconds per whole-image step, for each network.

Each figure is measured for patch2image's training loop (channels-last memory layout, bfloat16
autocast, on-the-fly augmentation included: "ours") and for a plain eager float32 loop without
augmentation ("plain"), in short alternating rounds (plain, ours, plain, ours, ...) on models built
once. A machine whose load comes and goes slows the plain and ours of a round alike, so the speed-up
of each round (plain time / ours time) is steadier than either time; the table reports the median
speed-up over the rounds and its spread (lowest, highest).

    .venv/bin/python benchmarks/train_throughput.py [--networks light mini-unet dense] [--rounds 5] [--out FILE]
"""

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
from machine import describe_machine

from patch2image.config import AugmentationConfig
from patch2image.networks import create_network
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


def ours_stepper(network: str, shape) -> Stepper:
    """patch2image's epoch function (augmentation, channels-last, bf16) on random data, warmed up by one batch."""
    torch.manual_seed(0)
    model = create_network(network).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.95, eps=1e-7)
    batch = shape[0]
    generator = torch.Generator().manual_seed(0)

    def data(steps: int) -> TrainingData:
        size = (batch * steps, *shape[1:])
        return TrainingData(torch.rand(size), (torch.rand(size) > 0.85).float())

    def epoch(batches: TrainingData) -> None:
        _train_epoch(model, optimizer, batches, batch, generator, AugmentationConfig(), "bf16", "cpu", "bench", True)

    epoch(data(1))

    def run(steps: int) -> float:
        batches = data(steps)  # drawn before the clock starts, as the plain loop's are
        started = time.perf_counter()
        epoch(batches)
        return (time.perf_counter() - started) / steps

    return run


def alternate(plain: Stepper, ours: Stepper, steps: int, rounds: int) -> dict:
    """Seconds per step of each loop round by round, and the speed-up of each round."""
    seconds = {"plain_fp32": [], "ours": []}
    for _ in range(rounds):
        seconds["plain_fp32"].append(plain(steps))
        seconds["ours"].append(ours(steps))
    speedups = [p / o for p, o in zip(seconds["plain_fp32"], seconds["ours"], strict=True)]
    return {
        "seconds_per_step": {k: [round(s, 4) for s in v] for k, v in seconds.items()},
        "median_s": {k: round(statistics.median(v), 4) for k, v in seconds.items()},
        "speedups": [round(s, 3) for s in speedups],
        "median_speedup": round(statistics.median(speedups), 2),
        "speedup_spread": [round(min(speedups), 2), round(max(speedups), 2)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["light", "mini-unet", "dense"])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per figure (default 5)")
    parser.add_argument("--out", default="benchmarks/results/train_throughput.json")
    args = parser.parse_args()
    results = {
        "machine": describe_machine(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "rounds": args.rounds,
        "networks": {},
    }
    for network in args.networks:
        patch_steps, image_steps = STEPS.get(network, (5, 1))
        patches = alternate(plain_stepper(network, PATCHES), ours_stepper(network, PATCHES), patch_steps, args.rounds)
        image = alternate(
            plain_stepper(network, (1, 1, *IMAGE)), ours_stepper(network, (1, 1, *IMAGE)), image_steps, args.rounds
        )
        row = {
            "plain_fp32_patches_per_s": round(PATCHES[0] / patches["median_s"]["plain_fp32"], 1),
            "ours_patches_per_s": round(PATCHES[0] / patches["median_s"]["ours"], 1),
            "patch_speedup": patches["median_speedup"],
            "patch_speedup_spread": patches["speedup_spread"],
            "plain_fp32_s_per_image_step": round(image["median_s"]["plain_fp32"], 3),
            "ours_s_per_image_step": round(image["median_s"]["ours"], 3),
            "image_speedup": image["median_speedup"],
            "image_speedup_spread": image["speedup_spread"],
            "patch_rounds": patches,
            "image_rounds": image,
        }
        results["networks"][network] = row
        print(network, json.dumps({k: v for k, v in row.items() if not k.endswith("_rounds")}), flush=True)
    results["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
