"""Int8 quantisation and bfloat16 of a shipped model: what they cost in AUC and Dice, what they gain in speed.

The float32 ONNX export of the model (``drive-mini-unet`` by default) is quantised statically by
onnxruntime (QDQ format: the convolutions' int8 weights per output channel and uint8 inputs, ranges
calibrated on the 20 DRIVE training images pre-processed as training saw them, at the training size).
Only convolutions are quantised: a quantised sigmoid would leave 256 probability levels, and ties cost
AUC whatever the network. No new dependency:
onnxruntime is one already, and OpenVINO runs the same QDQ file with its int8 kernels.

Then, on the 20 DRIVE test images, scored as ``patch2image evaluate`` scores a model on its own dataset
(training size, threshold 0.5, whole image, mean over images): AUC and Dice of float32 (PyTorch, OpenVINO,
onnxruntime), of int8 (OpenVINO, onnxruntime) and of bfloat16 (OpenVINO's bf16 inference precision,
PyTorch's autocast), and seconds per forward pass at the training size, the runners in alternation.

    .venv/bin/python -m benchmarks.reduced_precision [--model drive-mini-unet] [--method MinMax]

Writes ``benchmarks/results/reduced_precision-MODEL.json``. The bar for offering int8 (applied to
bf16 as well): at most 0.001 AUC and 0.003 Dice lost against float32.
"""

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from benchmarks.machine import describe_machine
from benchmarks.segmentation_time import ROOT, run_command
from patch2image.data import load_sample, open_dataset
from patch2image.evaluation import evaluate_cases
from patch2image.inference import TRAINING_SIZE, Segmenter
from patch2image.runtime.export import OnnxModel, cached_onnx_bytes, onnx_cache_name
from patch2image.runtime.openvino_model import OpenVinoModel
from patch2image.runtime.quantise import quantise_onnx
from patch2image.weights import load_model, resolve_weights

DRIVE = ROOT.parent / "shared" / "datasets" / "DRIVE"
RESULTS = ROOT / "benchmarks" / "results"
BAR = {"auc": 0.001, "dice": 0.003}


def scores(runner, metadata, samples, precision: str = "fp32") -> dict:
    segmenter = Segmenter(runner, metadata, size=TRAINING_SIZE, precision=precision)
    result = evaluate_cases(((s.name, segmenter(s.image), s.label, s.fov) for s in samples), 0.5)
    return {k: round(float(result["whole"]["mean"][k]), 5) for k in ("auc", "dice")}


def speed(runners: dict, shape, rounds: int) -> dict:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    for runner in runners.values():
        runner.probabilities(x)
    seconds = {name: [] for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            started = time.perf_counter()
            runner.probabilities(x)
            seconds[name].append(time.perf_counter() - started)
    return {name: round(statistics.median(s), 4) for name, s in seconds.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="drive-mini-unet")
    parser.add_argument("--method", default="MinMax", choices=["MinMax", "Entropy", "Percentile"])
    parser.add_argument("--rounds", type=int, default=7, help="timed passes of each runner (default 7)")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/reduced_precision-MODEL.json")
    args = parser.parse_args(argv)
    args.out = args.out or RESULTS / f"reduced_precision-{args.model}.json"
    load = round(os.getloadavg()[0], 2)
    model, metadata = load_model(args.model)
    fp32 = cached_onnx_bytes(lambda: model, metadata, onnx_cache_name(metadata, resolve_weights(args.model)))
    dataset = open_dataset(DRIVE, "drive")
    preparer = Segmenter(None, metadata, size=TRAINING_SIZE)
    calibration = [preparer.prepare(load_sample(f).image) for split in ("train", "val") for f in dataset.files(split)]
    started = time.perf_counter()
    int8 = quantise_onnx(fp32, calibration, args.method)
    quantise_s = time.perf_counter() - started
    runners = {
        "openvino_fp32": OpenVinoModel(fp32),
        "openvino_int8": OpenVinoModel(int8),
        "openvino_bf16": OpenVinoModel(fp32, precision="bf16"),
        "onnxruntime_fp32": OnnxModel(fp32),
        "onnxruntime_int8": OnnxModel(int8),
    }
    test = [load_sample(f) for f in dataset.files("test")]
    accuracy = {name: scores(runner, metadata, test) for name, runner in runners.items()}
    accuracy["torch_fp32"] = scores(model, metadata, test)
    accuracy["torch_bf16"] = scores(model, metadata, test, "bf16")
    reference = accuracy["torch_fp32"]
    cost = {
        name: {k: round(reference[k] - values[k], 5) for k in ("auc", "dice")}
        for name, values in accuracy.items()
        if name != "torch_fp32"
    }
    seconds = speed(runners, (1, 1, *metadata.input_size), args.rounds)
    results = {
        "model": args.model,
        "method": f"onnxruntime quantize_static, QDQ, Conv and ConvTranspose only, int8 weights per channel, "
        f"uint8 inputs, {args.method} calibration",
        "calibration_images": len(calibration),
        "test_images": len(test),
        "quantise_s": round(quantise_s, 1),
        "scores_whole_mean": accuracy,
        "cost_vs_fp32": cost,
        "bar": BAR,
        "within_bar": {n: c["auc"] <= BAR["auc"] and c["dice"] <= BAR["dice"] for n, c in cost.items()},
        "seconds_per_pass": seconds,
        "input": list(metadata.input_size),
        "machine": describe_machine(),
        "load_average_at_start": load,
        "command": run_command("benchmarks/reduced_precision.py", argv),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
