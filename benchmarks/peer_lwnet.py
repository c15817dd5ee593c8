"""lwnet's W-Net trained on DRIVE, a published peer, run as its README describes, beside our shipped model.

The peer lies in ``../shared/peers/lwnet/`` (README.md, ``wnet_drive.safetensors``): weights converted
from github agaldran/lwnet (Galdran et al., "The Little W-Net That Could", 2020, MIT licence). The
network is defined here (:class:`WNet`, its state dict matching the file's keys exactly); the weights
never go into the package.

Prediction, as lwnet's ``predict_one_image.py`` runs it with its defaults (:func:`predict_peer`):

1. the field-of-view mask, as our loaders give it (DRIVE's own masks; computed for STARE and
   CHASE_DB1, which have none); the photograph is cropped to the mask's bounding box;
2. the crop, RGB, resized to 512x512 bilinear (PIL's, on the 8-bit crop, as torchvision's ``Resize``
   does on a PIL image) and divided by 255, no other normalisation;
3. the mean of the sigmoid of the logits of the image and of its left-right, up-down and both flips,
   each flipped back ("from_preds"), one forward pass per flip as the script runs them;
4. resized back to the crop's size with a cubic spline (``skimage.transform.resize``, order 3), put
   into the full frame, 0 outside the field of view. The cubic spline overshoots [0, 1] slightly; the
   probabilities are clipped to [0, 1] for scoring (pixels beyond it keep their order up to ties).

Scoring is the project's own (:func:`patch2image.evaluation.evaluate_cases`, both protocols, threshold
0.5, Dice also at the peer's 0.4196), on DRIVE test (20), STARE all (20) and CHASE_DB1 all (28). Each
dataset's evaluation goes to ``--out/lwnet-drive__<kind>.json`` (and ``.csv``) as ``patch2image
evaluate --json`` writes it, with a ``source`` entry saying what was scored on what.

Timing: on the same images, image by image, the peer (steps 1-4, from the decoded photograph and its
mask) then our shipped ``drive-mini-unet`` as a user runs it (``Segmenter(model, metadata)(rgb)``: scale
rule, pre-processing, forward pass, resizing back), one untimed call of each first; reading the files
and scoring are not timed. The median per-image seconds of each, their ratio (peer / ours) and the
spread of the per-image ratios go to ``benchmarks/results/peer_lwnet.json`` with the machine.

Against the peer's README (inside the FOV, mean over images): DRIVE and STARE agree to the fourth
decimal. CHASE_DB1 comes out at AUC 0.9729, Dice 0.7639 / 0.7572 (README 0.9746, 0.7645 / 0.7578):
the README was measured with the FOV masks of steps 1-3 of :mod:`patch2image.data.field_of_view`,
before step 4 (dim rim traced) grew 7 of the 28 CHASE_DB1 masks out over their dark rims, pixels on
which the peer ranks vessels less well. With step 4 switched off, this script gives the README's
figures exactly (checked on 2026-11-30); it keeps the masks our loaders give, so that the peer and our
models are scored on the same pixels.

    .venv/bin/python -m benchmarks.peer_lwnet                  # everything, about 8 minutes on 2 cores
    .venv/bin/python -m benchmarks.peer_lwnet --limit 2 --out /tmp/peer --timing-out /tmp/peer/timing.json
"""

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from skimage.transform import resize
from torch import nn

from benchmarks.machine import describe_machine
from benchmarks.segmentation_time import ROOT, run_command
from patch2image.data import load_sample, open_dataset
from patch2image.evaluation import evaluate_cases, write_evaluation
from patch2image.networks import count_parameters

SHARED = ROOT.parent / "shared"
PEER_DIR = SHARED / "peers" / "lwnet"
WEIGHTS_FILE = "wnet_drive.safetensors"
MODEL_LABEL = "lwnet W-Net (DRIVE, peer)"
OURS = "drive-mini-unet"
OUT = ROOT / "docs" / "results" / "cross-dataset"
TIMING_OUT = ROOT / "benchmarks" / "results" / "peer_lwnet.json"

INPUT_SIZE = (512, 512)
PEER_THRESHOLD = 0.4196  # lwnet's own binarisation threshold, chosen on its training data
PARAMETERS = 68_482
# (kind, folder under --datasets-root, split scored)
DATASETS = (
    ("drive", "DRIVE", "test"),
    ("stare", "STARE", "all"),
    ("chase_db1", "CHASE_DB1", "all"),
    ("les_av", "LES-AV", "all"),
)
# The peer's README: inside the FOV, mean over images; AUC, Dice at 0.5, Dice at 0.4196.
README = {
    "drive": {"auc": 0.9821, "dice": 0.8264, "dice_at_peer_threshold": 0.8278},
    "stare": {"auc": 0.9811, "dice": 0.7955, "dice_at_peer_threshold": 0.7851},
    "chase_db1": {"auc": 0.9746, "dice": 0.7645, "dice_at_peer_threshold": 0.7578},
}
TOLERANCE = 0.002


# --------------------------------------------------------------------------- the network


class ConvBlock(nn.Module):
    """[max-pool 2x2], conv3x3, ReLU, BN, conv3x3, ReLU, BN, plus a conv1x1 + BN shortcut of the (pooled) input."""

    def __init__(self, in_c: int, out_c: int, pool: bool):
        super().__init__()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.block = nn.Sequential(
            nn.Conv2d(in_c, out_c, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(out_c),
            nn.Conv2d(out_c, out_c, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(out_c),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(in_c, out_c, 1, bias=False), nn.BatchNorm2d(out_c))

    def forward(self, x):
        x = self.pool(x)
        return self.block(x) + self.shortcut(x)


class UpsampleBlock(nn.Module):
    def __init__(self, in_c: int, out_c: int):
        super().__init__()
        self.block = nn.Sequential(nn.ConvTranspose2d(in_c, out_c, kernel_size=2, stride=2))

    def forward(self, x):
        return self.block(x)


class ConvBridgeBlock(nn.Module):
    """conv3x3, ReLU, BN on the skip connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(channels))

    def forward(self, x):
        return self.block(x)


class UpConvBlock(nn.Module):
    """Upsample, bridge the skip, concatenate (upsampled first), conv block 2c -> c."""

    def __init__(self, in_c: int, out_c: int):
        super().__init__()
        self.up_layer = UpsampleBlock(in_c, out_c)
        self.conv_layer = ConvBlock(2 * out_c, out_c, pool=False)
        self.conv_bridge_layer = ConvBridgeBlock(out_c)

    def forward(self, x, skip):
        return self.conv_layer(torch.cat([self.up_layer(x), self.conv_bridge_layer(skip)], dim=1))


class UNet(nn.Module):
    def __init__(self, in_c: int, layers=(8, 16, 32), n_classes: int = 1):
        super().__init__()
        self.first = ConvBlock(in_c, layers[0], pool=False)
        self.down_path = nn.ModuleList(ConvBlock(a, b, pool=True) for a, b in zip(layers, layers[1:], strict=False))
        up = list(reversed(layers))
        self.up_path = nn.ModuleList(UpConvBlock(a, b) for a, b in zip(up, up[1:], strict=False))
        self.final = nn.Conv2d(layers[0], n_classes, 1)

    def forward(self, x):
        x = self.first(x)
        skips = []
        for down in self.down_path:
            skips.append(x)
            x = down(x)
        for up, skip in zip(self.up_path, reversed(skips), strict=True):
            x = up(x, skip)
        return self.final(x)


class WNet(nn.Module):
    """Two U-Nets in a row: the second sees the image and the first's logits; returns the second's logits."""

    def __init__(self, in_c: int = 3, layers=(8, 16, 32)):
        super().__init__()
        self.unet1 = UNet(in_c, layers)
        self.unet2 = UNet(in_c + 1, layers)

    def forward(self, x):
        return self.unet2(torch.cat([x, self.unet1(x)], dim=1))


def load_wnet(path: str | Path = PEER_DIR / WEIGHTS_FILE) -> WNet:
    """The peer's network with its weights, in eval mode (every key matched: strict)."""
    model = WNet()
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()


# --------------------------------------------------------------------------- the peer's prediction


def fov_box(fov: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right), bottom and right exclusive: the bounding box of the mask's pixels."""
    rows, cols = np.flatnonzero(fov.any(axis=1)), np.flatnonzero(fov.any(axis=0))
    if rows.size == 0:
        raise ValueError("empty field-of-view mask")
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def predict_peer(model: nn.Module, rgb: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB and (H, W) bool FOV -> (H, W) float32 probabilities, lwnet's steps 1-4."""
    top, left, bottom, right = fov_box(fov)
    crop = Image.fromarray(np.ascontiguousarray(rgb[top:bottom, left:right]))
    small = crop.resize((INPUT_SIZE[1], INPUT_SIZE[0]), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
    with torch.inference_mode():
        flips = [(), (-1,), (-2,), (-1, -2)]
        preds = [torch.sigmoid(model(x.flip(d) if d else x)) for d in flips]
        preds = [p.flip(d) if d else p for p, d in zip(preds, flips, strict=True)]
        pred = torch.stack(preds).mean(dim=0)[0, -1].numpy()
    full = np.zeros(fov.shape, dtype=np.float64)
    full[top:bottom, left:right] = resize(pred, (bottom - top, right - left), order=3)
    full[~fov] = 0
    return np.clip(full, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- the benchmark


def score_dataset(kind, folder, split, peer, segmenter, args) -> tuple[dict, dict]:
    """(the peer's evaluation result, this dataset's timing and our model's scores)."""
    from patch2image.metrics import image_metrics, mean_metrics

    dataset = open_dataset(args.datasets_root / folder, kind)
    files = dataset.files(split)[: args.limit] if args.limit else dataset.files(split)
    if not files:
        sys.exit(f"error: no {split} images of {kind} in {dataset.root}: {dataset.problems}")
    cases, ours_fov, seconds = [], [], {"peer": [], "ours": []}
    fov_sources = set()
    for files_ in files:
        sample = load_sample(files_)
        fov_sources.add(sample.fov_source)
        if not args.warmed_up:  # one-off costs (oneDNN kernel selection) that a run over many images does not pay
            predict_peer(peer, sample.image, sample.fov)
            segmenter(sample.image)
            args.warmed_up = True
        started = time.perf_counter()
        prob = predict_peer(peer, sample.image, sample.fov)
        between = time.perf_counter()
        ours = segmenter(sample.image)
        ended = time.perf_counter()
        seconds["peer"].append(between - started)
        seconds["ours"].append(ended - between)
        cases.append((sample.name, prob, sample.label, sample.fov))
        ours_fov.append(image_metrics(ours, sample.label, sample.fov, 0.5))
        print(
            f"{kind} {sample.name}: peer {seconds['peer'][-1]:.2f} s, ours {seconds['ours'][-1]:.2f} s",
            flush=True,
        )

    result = evaluate_cases(cases, 0.5)
    at_peer = evaluate_cases(cases, PEER_THRESHOLD)
    result["source"] = {
        "model": MODEL_LABEL,
        "trained_on": "drive",
        "fold_trained": None,
        "dataset": kind,
        "split": split,
        "fold": None,
        "threshold": 0.5,
        "mode": "image",
        "scored_images": len(cases),  # not "images": read_evaluation takes a dict's "images" for a protocol's list
        "limit": args.limit,
        "fov": sorted(fov_sources),
        "peer": f"github agaldran/lwnet experiments/wnet_drive, {_shown(args.peer / WEIGHTS_FILE)}",
        "prediction": "FOV bounding-box crop, RGB/255, 512x512 bilinear, mean of sigmoids over 4 flips, "
        "cubic-spline resize back, 0 outside the FOV, clipped to [0, 1]",
        "command": args.command,
        "date": args.date,
    }
    result["at_peer_threshold"] = {
        "threshold": PEER_THRESHOLD,
        "fov": {"mean": at_peer["fov"]["mean"]},
        "whole": {"mean": at_peer["whole"]["mean"]},
    }
    timing = {
        "dataset": kind,
        "split": split,
        "images": len(cases),
        "peer": _seconds(seconds["peer"]),
        "ours": _seconds(seconds["ours"]),
        **_ratios(seconds["peer"], seconds["ours"]),
        "scores_fov_mean": {
            "peer": _rounded(result["fov"]["mean"], ("auc", "dice")),
            "peer_dice_at_peer_threshold": round(at_peer["fov"]["mean"]["dice"], 4),
            "ours": _rounded(mean_metrics(ours_fov), ("auc", "dice")),
            "peer_readme": README.get(kind),  # LES-AV: the README has no figures
        },
    }
    return result, timing


def _seconds(values: list[float]) -> dict:
    return {"median_s": round(float(np.median(values)), 4), "per_image_s": [round(v, 4) for v in values]}


def _ratios(peer: list[float], ours: list[float]) -> dict:
    ratios = np.asarray(peer) / np.asarray(ours)
    return {
        "ratio_of_medians": round(float(np.median(peer) / np.median(ours)), 2),
        "per_image_ratio": {
            "median": round(float(np.median(ratios)), 2),
            "min": round(float(ratios.min()), 2),
            "max": round(float(ratios.max()), 2),
        },
    }


def _shown(path: Path) -> str:
    """A path as seen from the project's root (../shared/... for the shared folder), else absolute."""
    path = Path(path).resolve()
    return os.path.relpath(path, ROOT) if path.is_relative_to(ROOT.parent) else str(path)


def _rounded(values: dict, keys) -> dict:
    return {key: round(float(values[key]), 4) for key in keys}


def check_readme(kind: str, result: dict, at_peer: float) -> list[str]:
    """The figures more than TOLERANCE from the README's (a full run only; none where it has no figures)."""
    if kind not in README:
        return []
    measured = {"auc": result["fov"]["mean"]["auc"], "dice": result["fov"]["mean"]["dice"]}
    measured["dice_at_peer_threshold"] = at_peer
    return [
        f"{kind} {key}: {value:.4f}, README {README[kind][key]:.4f}"
        for key, value in measured.items()
        if abs(value - README[kind][key]) > TOLERANCE
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets-root", type=Path, default=SHARED / "datasets")
    parser.add_argument("--peer", type=Path, default=PEER_DIR, help=f"the peer's folder, holding {WEIGHTS_FILE}")
    kinds = [kind for kind, _, _ in DATASETS]
    parser.add_argument("--datasets", nargs="+", default=kinds, choices=kinds, help="default: all four")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N images of each dataset")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the evaluation files (default %(default)s)")
    parser.add_argument("--timing-out", type=Path, default=TIMING_OUT, help="the timing file (default %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--ours", default=OURS, help="our model to time beside the peer (default %(default)s)")
    parser.add_argument(
        "--backend", default="torch", choices=["torch", "auto"], help="ours: PyTorch, or as segment's default (auto)"
    )
    parser.add_argument("--note", default=None, help="a remark kept with this run, e.g. that the machine was busy")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.command = run_command("benchmarks/peer_lwnet.py", argv)
    args.date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.warmed_up = False
    load_average = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None

    from patch2image.inference import Segmenter
    from patch2image.weights import load_model, resolve_weights

    peer = load_wnet(args.peer / WEIGHTS_FILE)
    if count_parameters(peer) != PARAMETERS:
        sys.exit(f"error: the peer has {count_parameters(peer)} parameters, its README says {PARAMETERS}")
    if args.backend == "torch":
        model, metadata = load_model(args.ours)
    else:  # as `patch2image segment` runs it: the backend and precision chosen by measurement
        from patch2image.runtime.backends import load_backend

        model, metadata, _ = load_backend(args.ours, args.backend, precision="auto")
    segmenter = Segmenter(model, metadata)

    results, timings, off = {}, {}, []
    for kind, folder, split in DATASETS:
        if kind not in args.datasets:
            continue
        result, timing = score_dataset(kind, folder, split, peer, segmenter, args)
        path = args.out / f"lwnet-drive__{kind}.json"
        write_evaluation(result, path)
        results[kind], timings[kind] = result, timing
        if not args.limit:
            off += check_readme(kind, result, result["at_peer_threshold"]["fov"]["mean"]["dice"])
        print(f"{kind}: written to {path}", flush=True)

    peer_all = [s for t in timings.values() for s in t["peer"]["per_image_s"]]
    ours_all = [s for t in timings.values() for s in t["ours"]["per_image_s"]]
    summary = {
        "peer": MODEL_LABEL,
        "ours": f"shipped model {args.ours}, backend {args.backend}, Segmenter(model, metadata)(rgb) (scale rule), "
        f"{resolve_weights(args.ours).name}",
        "what_is_timed": "per image, decoded photograph in memory: the peer's FOV crop, 512x512 resize, 4 flipped "
        "forward passes, cubic resize back and paste; ours: Segmenter(model, metadata)(rgb). Alternated peer, ours "
        "image by image after one untimed call of each; reading and scoring not timed",
        "images": len(peer_all),
        "all": {
            "peer_median_s": round(float(np.median(peer_all)), 4),
            "ours_median_s": round(float(np.median(ours_all)), 4),
            **_ratios(peer_all, ours_all),
        },
        "datasets": timings,
        "readme_check": {"tolerance": TOLERANCE, "off": off} if not args.limit else "not checked (--limit)",
        "evaluations": {kind: _shown(args.out / f"lwnet-drive__{kind}.json") for kind in results},
        "machine": describe_machine(),
        "threads": torch.get_num_threads(),
        "load_average_at_start": load_average,
        "command": args.command,
        "date": args.date,
        "note": args.note,
    }
    args.timing_out.parent.mkdir(parents=True, exist_ok=True)
    args.timing_out.write_text(json.dumps(summary, indent=2) + "\n")

    print(f"\n{'dataset':<10} {'images':>6} {'AUC':>7} {'Dice':>7} {'Dice@.4196':>10}   README  | ours AUC  Dice")
    for kind, timing in timings.items():
        s = timing["scores_fov_mean"]
        readme = README.get(kind)
        published = (
            f"{readme['auc']:.4f} {readme['dice']:.4f} {readme['dice_at_peer_threshold']:.4f}"
            if readme
            else f"{'none':<20}"
        )
        print(
            f"{kind:<10} {timing['images']:>6} {s['peer']['auc']:>7.4f} {s['peer']['dice']:>7.4f} "
            f"{s['peer_dice_at_peer_threshold']:>10.4f}   {published} | {s['ours']['auc']:.4f} {s['ours']['dice']:.4f}"
        )
    a = summary["all"]
    spread = a["per_image_ratio"]
    print(
        f"seconds per image (median): peer {a['peer_median_s']:.3f}, ours {a['ours_median_s']:.3f}; peer/ours "
        f"{a['ratio_of_medians']:.1f} (per image {spread['min']:.1f}-{spread['max']:.1f}); {summary['machine']}"
    )
    if off:
        print("differs from the README by more than", TOLERANCE, ":", "; ".join(off))
    print(f"timing written to {args.timing_out}")


if __name__ == "__main__":
    main()
