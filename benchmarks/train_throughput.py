"""Training speed: patches per second and seconds per whole-image step, for each network.

Each figure is measured twice in the same run: with patch2image's training loop (channels-last
memory layout, bfloat16 autocast, on-the-fly augmentation included) and with a plain eager float32
loop (no augmentation), so the ratio is meaningful on a noisy machine.

    .venv/bin/python benchmarks/train_throughput.py [--networks light mini-unet dense] [--out FILE]
"""

import argparse
import json
import time
from pathlib import Path

import torch
from machine import describe_machine

from patch2image.config import AugmentationConfig
from patch2image.networks import create_network
from patch2image.training.fit import TrainingData, _train_epoch
from patch2image.training.loss import bce_dice_loss

IMAGE = (584, 568)


def plain_seconds_per_batch(network: str, shape, steps: int) -> float:
    torch.manual_seed(0)
    model = create_network(network).train()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.95, eps=1e-7)
    x = torch.rand(shape)
    y = (torch.rand(shape) > 0.85).float()
    for i in range(steps + 1):
        if i == 1:  # the first step pays one-off allocation costs
            started = time.perf_counter()
        loss = bce_dice_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - started) / steps


def ours_seconds_per_batch(network: str, shape, steps: int) -> float:
    torch.manual_seed(0)
    model = create_network(network).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.95, eps=1e-7)
    batch = shape[0]
    data = TrainingData(
        torch.rand(batch * (steps + 1), *shape[1:]), (torch.rand(batch * (steps + 1), *shape[1:]) > 0.85).float()
    )
    warmup = TrainingData(data.x[:batch], data.y[:batch])
    run = lambda d: _train_epoch(  # noqa: E731
        model, optimizer, d, batch, torch.Generator().manual_seed(0), AugmentationConfig(), "bf16", "cpu", "bench", True
    )
    run(warmup)
    started = time.perf_counter()
    run(TrainingData(data.x[batch:], data.y[batch:]))
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["light", "mini-unet", "dense"])
    parser.add_argument("--out", default="benchmarks/results/train_throughput.json")
    args = parser.parse_args()
    steps = {"light": (40, 6), "mini-unet": (15, 3), "dense": (4, 2)}
    results = {
        "machine": describe_machine(),
        "networks": {},
    }
    for network in args.networks:
        patch_steps, image_steps = steps.get(network, (10, 2))
        row = {}
        for label, fn in (("plain_fp32", plain_seconds_per_batch), ("ours", ours_seconds_per_batch)):
            row[f"{label}_patches_per_s"] = round(32 / fn(network, (32, 1, 32, 32), patch_steps), 1)
            row[f"{label}_s_per_image_step"] = round(fn(network, (1, 1, *IMAGE), image_steps), 3)
        row["patch_speedup"] = round(row["ours_patches_per_s"] / row["plain_fp32_patches_per_s"], 2)
        row["image_speedup"] = round(row["plain_fp32_s_per_image_step"] / row["ours_s_per_image_step"], 2)
        results["networks"][network] = row
        print(network, json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
