"""Patch training speed against the batch size: does a larger batch train faster per patch?

    .venv/bin/python -m benchmarks.patch_batch --network dense --batches 32 64 128 --threads 1 --rounds 3

patch2image's own epoch function (augmentation included, as ``ours`` in ``benchmarks/train_throughput.py``)
on random 32x32 patches, in bfloat16 autocast and channels-last (what ``auto`` chooses on a processor with
AMX or AVX-512 bf16; ``--precision fp32`` otherwise), each batch size in turn round by round so that a
change in load slows them alike. Prints patches per second (median over rounds) and each size's speed
relative to the paper's 32; writes ``benchmarks/results/patch_batch-NETWORK.json``.

A larger batch changes the training (fewer, averaged steps per epoch), so it is a change of method
to be weighed against its speed, not a free setting.
"""

import argparse
import json
import os
import statistics
import sys

import torch

from benchmarks.machine import ROOT, describe_machine
from benchmarks.train_throughput import ours_stepper
from patch2image.training.auto_settings import TrainingSettings

PATCHES_PER_ROUND = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="dense")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    settings = TrainingSettings(args.precision, "channels_last")
    steppers = {batch: ours_stepper(args.network, (batch, 1, 32, 32), settings) for batch in args.batches}
    rates = {batch: [] for batch in args.batches}
    for _ in range(args.rounds):
        for batch, stepper in steppers.items():
            rates[batch].append(batch / stepper(max(1, PATCHES_PER_ROUND // batch)))
    median = {batch: statistics.median(values) for batch, values in rates.items()}
    first = args.batches[0]
    for batch in args.batches:
        speed = median[batch] / median[first]
        print(f"batch {batch:>4}: {median[batch]:6.1f} patches/s, x{speed:.2f} of batch {first}")
    record = {
        "network": args.network,
        "settings": str(settings),
        "threads": args.threads,
        "patches_per_second": {str(b): [round(r, 1) for r in v] for b, v in rates.items()},
        "median": {str(b): round(m, 1) for b, m in median.items()},
        "machine": describe_machine(),
        "load_average_after": [round(load, 2) for load in os.getloadavg()],
        "command": "python -m benchmarks.patch_batch " + " ".join(sys.argv[1:]),
    }
    out = os.path.join(args.out, f"patch_batch-{args.network}.json")
    with open(out, "w") as file:
        file.write(json.dumps(record, indent=1) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
