"""Segmentation time per DRIVE test image, the paper's Table 5, on this machine.

For each network, seconds per image (median of ``--repeats``, after one untimed warm-up) with PyTorch,
onnxruntime and OpenVINO, interleaved round by round so that a busy machine slows every column alike:

- image level: :func:`predict_image` on the pre-processed image (padding, forward pass, sigmoid), in
  float32 and, for PyTorch (autocast) and OpenVINO (inference precision), in bfloat16. Reading and
  pre-processing are excluded, as in the paper's table, which times the network.
- photograph: :class:`Segmenter` on the decoded photograph, pre-processing included (scale rule,
  resize, grey, CLAHE, gamma, the forward pass, resizing back); reading excluded. PyTorch float32.
- patch level: :func:`predict_patches`, 32x32 patches at stride 2, predictions averaged (the paper's
  "Patch" row). Dense takes 15-20 minutes per image on 2 cores, so ``--patch-rows-fraction F`` times the
  top F of the image's rows only and scales by the ratio of patch counts; such figures are marked
  "extrapolated" in the JSON and in the table.

It uses the shipped model ``drive-NETWORK`` where ``patch2image.weights.resolve_weights`` finds one, else
the network with its reference initialisation and DRIVE metadata (weights do not change the time,
but then the bf16-vs-fp32 differences say nothing about a trained model). Results are merged, network by
network, into ``benchmarks/results/segmentation_time.json``, and the section "Segmentation time
(Table 5)" of ``docs/benchmarks.md`` is rewritten from the merged results, so Dense can be run apart:

    .venv/bin/python -m benchmarks.segmentation_time --networks light mini-unet
    .venv/bin/python -m benchmarks.segmentation_time --networks dense --patch-rows-fraction 0.1
"""

import argparse
import json
import os
import shlex
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import describe_machine
from patch2image.data import read_image
from patch2image.inference import Segmenter, predict_image, predict_patches
from patch2image.networks import create_network, network_label
from patch2image.weights import WeightsMetadata, load_model, resolve_weights

ROOT = Path(__file__).resolve().parents[1]
DRIVE_TEST = ROOT.parent / "shared" / "datasets" / "DRIVE" / "test" / "images"
JSON_OUT = ROOT / "benchmarks" / "results" / "segmentation_time.json"
DOCS = ROOT / "docs" / "benchmarks.md"
HEADING = "## Segmentation time (Table 5)"

# The paper's Table 5, seconds per DRIVE image (CPU: 8-core i7-6700HQ; GPU: Tesla P100).
PAPER = {
    "light": {"cpu_image": 0.25, "cpu_patch": 53.0, "gpu_image": 0.07, "gpu_patch": 8.71},
    "mini-unet": {"cpu_image": 0.84, "cpu_patch": 186.0, "gpu_image": 0.10, "gpu_patch": 11.34},
    "dense": {"cpu_image": 4.69, "cpu_patch": 1200.0, "gpu_image": 0.24, "gpu_patch": 71.47},
}
# The project's goals for image level on 2 cores, seconds per image.
GOALS = {"light": 0.05, "mini-unet": 0.30, "dense": 1.5}
# What a DRIVE-trained model's metadata records (experiment.py): the paper's size (datasets/README.md) and
# the median width of the training images' field of view at that size (543 px, from DRIVE's masks).
DRIVE_METADATA = {"dataset": "drive", "input_size": [584, 568], "fov_diameter": 543.0}


# --------------------------------------------------------------------------- inputs


def load_network(name: str) -> tuple[torch.nn.Module, WeightsMetadata, str]:
    """(model, metadata, where the weights come from): the shipped ``drive-NAME``, else a fresh network."""
    shipped = resolve_weights(f"drive-{name}")
    if shipped.is_file():
        model, metadata = load_model(shipped)
        return model, metadata, f"shipped model drive-{name}"
    torch.manual_seed(0)
    metadata = WeightsMetadata(network=name, **DRIVE_METADATA)
    return create_network(name).eval(), metadata, "reference initialisation (no shipped model)"


def drive_photographs(count: int) -> list[tuple[str, np.ndarray]]:
    files = sorted(DRIVE_TEST.glob("*.tif"))[:count]
    if not files:
        sys.exit(f"error: no DRIVE test images in {DRIVE_TEST}")
    return [(f.name, read_image(f)) for f in files]


def onnx_runners(model: torch.nn.Module, metadata: WeightsMetadata, threads: int) -> dict:
    """onnxruntime and OpenVINO (float32 and bfloat16) on one export of ``model``."""
    from patch2image.runtime.export import OnnxModel, onnx_bytes
    from patch2image.runtime.openvino_model import OpenVinoModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = onnx_bytes(model, metadata)
    return {
        "onnxruntime": OnnxModel(data, threads),
        "openvino_fp32": OpenVinoModel(data, threads, "fp32"),
        "openvino_bf16": OpenVinoModel(data, threads, "bf16"),
    }


# --------------------------------------------------------------------------- timing


def round_robin(functions: dict, repeats: int, warm_up: dict | None = None) -> dict[str, list[float]]:
    """Seconds of ``functions[name](i)`` for i in range(repeats), one call of each per round.

    Each function is called once untimed first (``warm_up[name]()`` instead where given, for functions
    too slow to run twice): the first call pays one-off costs (oneDNN kernel selection, onnxruntime's
    allocations) that a segmentation of many images does not.
    """
    for name, fn in functions.items():
        (warm_up or {}).get(name, lambda fn=fn: fn(0))()
    seconds = {name: [] for name in functions}
    for i in range(repeats):
        for name, fn in functions.items():
            started = time.perf_counter()
            fn(i)
            seconds[name].append(time.perf_counter() - started)
    return seconds


def patch_count(height: int, width: int, patch_size: int = 32, stride: int = 2) -> int:
    """Patches :func:`predict_patches` predicts for an image of this size (its padding rule)."""
    before = patch_size - stride
    return ((before + height - 1) // stride + 1) * ((before + width - 1) // stride + 1)


def patch_band(grey: np.ndarray, fraction: float, patch_size: int, stride: int) -> tuple[np.ndarray, float]:
    """The top ``fraction`` of the rows, and the factor from its patch count to the whole image's."""
    height, width = grey.shape
    rows = height if fraction >= 1 else min(height, max(patch_size, round(height * fraction)))
    scale = patch_count(height, width, patch_size, stride) / patch_count(rows, width, patch_size, stride)
    return grey[:rows].copy(), scale


def bf16_difference(model, grey: np.ndarray) -> dict:
    """How far bfloat16 autocast moves the probabilities from float32 on one image."""
    fp32 = predict_image(model, grey)
    bf16 = predict_image(model, grey, precision="bf16")
    difference = np.abs(fp32 - bf16)
    return {
        "max_abs": float(f"{difference.max():.3g}"),
        "mean_abs": float(f"{difference.mean():.3g}"),
        "mask_pixels_changed": round(float(((fp32 >= 0.5) != (bf16 >= 0.5)).mean()), 6),
    }


# --------------------------------------------------------------------------- one network


def measure_network(name: str, photographs, args) -> dict:
    """Every column of the table for one network."""
    model, metadata, source = load_network(name)
    segmenter = Segmenter(model, metadata)
    greys = [segmenter.prepare(rgb) for _, rgb in photographs]
    runners = onnx_runners(model, metadata, args.threads)
    runner = runners["onnxruntime"]
    count = len(photographs)
    print(f"{name}: {source}, input {greys[0].shape[0]}x{greys[0].shape[1]}", flush=True)

    image = round_robin(
        {
            "image_torch_fp32": lambda i: predict_image(model, greys[i % count]),
            "image_torch_bf16": lambda i: predict_image(model, greys[i % count], precision="bf16"),
            "image_onnxruntime": lambda i: predict_image(runner, greys[i % count]),
            "image_openvino_fp32": lambda i: predict_image(runners["openvino_fp32"], greys[i % count]),
            "image_openvino_bf16": lambda i: predict_image(runners["openvino_bf16"], greys[i % count]),
            "photograph_torch_fp32": lambda i: segmenter(photographs[i % count][1]),
        },
        args.repeats,
    )
    row = {name: _summary(seconds) for name, seconds in image.items()}
    print(f"{name}: image level {json.dumps({k: v['median_s'] for k, v in row.items()})}", flush=True)

    patch_size = metadata.patch_size
    bands = [patch_band(g, args.patch_rows_fraction, patch_size, 2) for g in greys]
    scale = bands[0][1]
    corner = greys[0][:patch_size, : 2 * patch_size]  # over a thousand patches: full batches and a remainder
    patch = round_robin(
        {
            "patch_torch_fp32": lambda i: predict_patches(model, bands[i % count][0], patch_size, 2),
            "patch_onnxruntime": lambda i: predict_patches(runner, bands[i % count][0], patch_size, 2),
        },
        args.patch_repeats,
        {
            "patch_torch_fp32": lambda: predict_patches(model, corner, patch_size, 2),
            "patch_onnxruntime": lambda: predict_patches(runner, corner, patch_size, 2),
        },
    )
    for key, seconds in patch.items():
        row[key] = _summary([s * scale for s in seconds])
        if scale > 1:
            row[key] |= {"extrapolated": True, "band_rows": bands[0][0].shape[0], "scale": round(scale, 3)}
    row["patch_over_image_torch"] = round(row["patch_torch_fp32"]["median_s"] / row["image_torch_fp32"]["median_s"], 1)
    row["patch_over_image_onnxruntime"] = round(
        row["patch_onnxruntime"]["median_s"] / row["image_onnxruntime"]["median_s"], 1
    )
    print(f"{name}: patch level {row['patch_torch_fp32']['median_s']} s torch", flush=True)

    goal = GOALS.get(name)
    return {
        "weights": source,
        "input_size": list(greys[0].shape),
        "images": f"{len(photographs)} DRIVE test images from {photographs[0][0]}, in turn",
        **row,
        "bf16_vs_fp32": bf16_difference(model, greys[0]),
        "goal_image_s": goal,
        "goal_met": None if goal is None else _goals_met(row, goal),
        "paper": PAPER.get(name),
        "machine": describe_machine(),
        "threads": args.threads,
        "load_average_at_start": args.load_average,
        "command": args.command,
        "date": args.date,
        "note": args.note,
    }


def _summary(seconds: list[float]) -> dict:
    return {"median_s": round(float(np.median(seconds)), 4), "runs_s": [round(s, 4) for s in seconds]}


IMAGE_COLUMNS = (
    "image_torch_fp32",
    "image_torch_bf16",
    "image_onnxruntime",
    "image_openvino_fp32",
    "image_openvino_bf16",
)


def _goals_met(row: dict, goal: float) -> dict:
    return {key: row[key]["median_s"] <= goal for key in IMAGE_COLUMNS if key in row}


# --------------------------------------------------------------------------- outputs


def merge_json(path: Path, measured: dict) -> dict:
    """The results file with these networks' entries replaced and the others kept."""
    results = {"networks": {}}
    if path.is_file():
        results = json.loads(path.read_text())
    results["networks"] = {**results.get("networks", {}), **measured}
    results["note"] = "seconds per DRIVE test image; see benchmarks/segmentation_time.py for what each figure times"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return results


def format_seconds(seconds: float) -> str:
    if seconds >= 100:
        return f"{seconds:.0f}"
    if seconds >= 10:
        return f"{seconds:.1f}"
    if seconds >= 1:
        return f"{seconds:.2f}"
    return f"{seconds:.3f}"


def markdown_section(results: dict) -> str:
    """The docs section: the table, what each column times, the goals, and the runs behind the figures."""
    networks = [n for n in ("light", "mini-unet", "dense") if n in results["networks"]]
    networks += [n for n in results["networks"] if n not in networks]
    lines = [
        HEADING,
        "",
        "Seconds per DRIVE test image (median over runs), written by `benchmarks/segmentation_time.py`.",
        "",
        "| network | image torch fp32 | image torch bf16 | image onnxruntime | image openvino fp32 "
        "| image openvino bf16 | photograph torch fp32 | patch torch | patch onnxruntime | patch/image "
        "| paper CPU image / patch |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in networks:
        row = results["networks"][name]
        paper = row.get("paper") or {}
        paper_cell = f"{paper['cpu_image']} / {paper['cpu_patch']:g}" if paper else "-"
        cells = [network_label(name)]
        for key in (*IMAGE_COLUMNS, "photograph_torch_fp32"):
            cells.append(format_seconds(row[key]["median_s"]) if key in row else "-")
        for key in ("patch_torch_fp32", "patch_onnxruntime"):
            extrapolated = " (extrapolated)" if row[key].get("extrapolated") else ""
            cells.append(format_seconds(row[key]["median_s"]) + extrapolated)
        cells += [f"{row['patch_over_image_torch']:.0f}", paper_cell]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "- image: `predict_image` on the pre-processed image (padding, forward pass, sigmoid), by each backend "
        "(`segment --backend B --precision P`); reading and "
        "pre-processing excluded. photograph: `Segmenter` on the decoded photograph, pre-processing and resizing "
        "back included, reading excluded. patch: `predict_patches`, 32x32 patches at stride 2 (PyTorch fp32); "
        "patch/image: patch torch over image torch fp32.",
    ]
    extrapolated = sorted(
        {f"{network_label(n)} ({row['patch_torch_fp32']['band_rows']} rows, x{row['patch_torch_fp32']['scale']:g})"
         for n, row in results["networks"].items() if row["patch_torch_fp32"].get("extrapolated")}
    )  # fmt: skip
    if extrapolated:
        lines.append(
            "- extrapolated: the top band of rows was timed and scaled by the ratio of patch counts: "
            + ", ".join(extrapolated)
            + "."
        )
    goals = []
    for name in networks:
        row = results["networks"][name]
        if row.get("goal_image_s") is not None:
            met = [k.removeprefix("image_").replace("_", " ") for k, ok in row["goal_met"].items() if ok]
            goals.append(
                f"{network_label(name)} {row['goal_image_s']:g} s: {', '.join(met) if met else 'missed'}"
                f" ({_threads(row['threads'])})"
            )
    if goals:
        lines.append("- the project's goal for image level on 2 cores, met by: " + "; ".join(goals) + ".")
    differences = [
        f"{network_label(n)} max {r['bf16_vs_fp32']['max_abs']:g}, mean {r['bf16_vs_fp32']['mean_abs']:g}"
        for n in networks
        if (r := results["networks"][n]).get("bf16_vs_fp32")
    ]
    if differences:
        lines.append(
            "- bf16 vs fp32, |probability difference| on the first image: "
            + "; ".join(differences)
            + " (meaningful only with trained weights)."
        )
    lines.append("- paper: CPU 8-core i7-6700HQ.")
    lines += ["", "Runs:", ""]
    runs: dict[tuple, list[str]] = {}
    for name in networks:
        row = results["networks"][name]
        key = (row["machine"], row["threads"], row.get("load_average_at_start"), row["command"], row["date"])
        runs.setdefault(key + (row.get("note"),), []).append(network_label(name))
    for (machine, threads, load, command, date, note), names in runs.items():
        load_note = f", load average {load:.2f} at start" if load is not None else ""
        lines.append(f"- {', '.join(names)}: {machine}; {_threads(threads)}{load_note}; {date}")
        if note:
            lines.append(f"  **{note}**")
        lines.append(f"  `{command}`")
    return "\n".join(lines) + "\n"


def run_command(script: str, argv: list[str] | None) -> str:
    """The command line that reproduces this run, thread settings of the environment included."""
    env = [f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ]
    return shlex.join([*env, ".venv/bin/python", script, *(sys.argv[1:] if argv is None else argv)])


def _threads(count: int) -> str:
    return f"{count} thread" + ("" if count == 1 else "s")


def write_docs_section(path: Path, heading: str, section: str) -> None:
    """Replace the section that starts with ``heading`` (up to the next ``## ``) or append it; keep the rest."""
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        after = "".join(lines[end:])
        text = "".join(lines[:start]) + section + ("\n" + after if after else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --------------------------------------------------------------------------- command


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["light", "mini-unet", "dense"])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs at image level (default 5)")
    parser.add_argument("--patch-repeats", type=int, default=5, help="timed runs at patch level (default 5)")
    parser.add_argument(
        "--patch-rows-fraction", type=float, default=1.0,
        help="patch level: time this fraction of the rows and extrapolate by patch count (default 1: all)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: all)")
    parser.add_argument("--images", type=int, default=20, help="DRIVE test images cycled through (default 20)")
    parser.add_argument("--note", default=None, help="a remark printed with this run, e.g. that the machine was busy")
    parser.add_argument("--out", type=Path, default=JSON_OUT)
    parser.add_argument("--docs", type=Path, default=DOCS)
    args = parser.parse_args(argv)
    if not 0 < args.patch_rows_fraction <= 1:
        parser.error("--patch-rows-fraction must be in (0, 1]")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    args.load_average = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    args.command = run_command("benchmarks/segmentation_time.py", argv)
    args.date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

    photographs = drive_photographs(args.images)
    measured = {name: measure_network(name, photographs, args) for name in args.networks}
    results = merge_json(args.out, measured)
    write_docs_section(args.docs, HEADING, markdown_section(results))
    print(f"written to {args.out} and {args.docs}")


if __name__ == "__main__":
    main()
