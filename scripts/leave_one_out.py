"""The leave-one-camera-out evidence: each run scored on every photograph of the camera it never saw.

    .venv/bin/python -m scripts.leave_one_out        # every finished runs/without-CAMERA[-seedN]

``configs/without-CAMERA.yaml`` trains on the other three cameras with the recipe of the shipped ``vessels``
(``configs/vessels-all.yaml``). Each run's fine-tuned weights are scored with
:func:`patch2image.evaluation.evaluate_model` (float32, inside the field of view, threshold 0.5, mean over
images) on every photograph of the camera left out, twice: at the working-scale rule as ``segment``
applies it, and at the plain field-of-view rule (no limit on shrinking: ``max_zoom`` 1). Runs that trained
on LES-AV's 11 training photographs are also scored on its 11 test photographs (held out, same camera).

The decision between the recipe of the shipped ``vessels`` (rescaling to x2) and the previous one (to x1.4,
``configs/vessels.yaml``) is read on LES-AV, where the two are the same run but for the rescaling:
``without-les-av`` against ``configs/vessels.yaml`` (``runs/vessels-three-cameras`` is its seed 0, the
``vessels`` shipped before; ``runs/vessels-seed1`` its seed 1), both trained on DRIVE, STARE and CHASE_DB1.

Each score is kept in ``docs/results/leave-one-out/RUN-DATASET-SPLIT-RULE.json`` (a rerun reads it back), and
the table is printed in Markdown beside lwnet's DRIVE-trained W-Net on the same photographs
(``benchmarks/peer_lwnet.py``'s records).
"""

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from patch2image.data import open_dataset
from patch2image.evaluation import evaluate_model, json_safe
from patch2image.inference import load_segmenter

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results" / "leave-one-out"
CAMERAS = {"drive": "DRIVE", "stare": "STARE", "chase_db1": "CHASE_DB1", "les_av": "LES-AV"}
RULES = ("rule", "plain")
PEER = ROOT / "docs" / "results" / "cross-dataset" / "lwnet-drive__{kind}.json"
"""lwnet's scores on every photograph of a camera (``benchmarks/peer_lwnet.py``); it trained on DRIVE."""


def peer_cell(kind: str) -> str:
    """lwnet's FOV AUC / Dice on every photograph of ``kind``; none for DRIVE, which it trained on."""
    scored = PEER.with_name(PEER.name.format(kind=kind))
    if kind == "drive" or not scored.exists():
        return ""
    mean = json.loads(scored.read_text())["fov"]["mean"]
    return f"{mean['auc']:.4f} / {mean['dice']:.4f}"


def runs_of(camera: str, runs: Path) -> list[Path]:
    """``runs/without-CAMERA`` and its other seeds, those that have finished."""
    name = f"without-{camera.replace('_', '-')}"
    found = [runs / name, *sorted(runs.glob(f"{name}-seed*"))]
    return [run for run in found if (run / "finetuned.safetensors").exists()]


def score(run: Path, kind: str, split: str, rule: str, datasets: Path) -> dict:
    """FOV mean AUC and Dice of ``run`` on ``kind``'s ``split``, kept in RESULTS."""
    kept = RESULTS / f"{run.name}-{kind}-{split}-{rule}.json"
    if kept.exists():
        return json.loads(kept.read_text())
    segmenter = load_segmenter(run / "finetuned.safetensors", backend="torch", precision="fp32", inside_fov=False)
    if rule == "plain":
        segmenter = dataclasses.replace(segmenter, metadata=dataclasses.replace(segmenter.metadata, max_zoom=1.0))
    result = evaluate_model(segmenter, open_dataset(datasets / CAMERAS[kind], kind), split, threshold=0.5)
    mean = result["fov"]["mean"]
    found = {"auc": mean["auc"], "dice": mean["dice"], "images": len(result["fov"]["images"])}
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(json_safe(found), indent=1) + "\n")
    return found


RECIPES = {
    "rescaling to x1.4 (`configs/vessels.yaml`)": ("vessels-three-cameras", "vessels-seed1"),
    "rescaling to x2 (`configs/without-les-av.yaml`)": ("without-les-av", "without-les-av-seed1"),
}
"""The two recipes' runs (seeds 0 and 1), trained on the same three cameras: LES-AV is new to both."""


def cell(scores: list[dict], key: str) -> str:
    values = [s[key] for s in scores]
    text = " / ".join(f"{v:.4f}" for v in values)
    return text + (f" (spread {max(values) - min(values):.4f})" if len(values) > 1 else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(ROOT / "runs"))
    parser.add_argument("--datasets", default=str(ROOT.parent / "shared" / "datasets"))
    args = parser.parse_args()
    runs, datasets = Path(args.runs), Path(args.datasets)

    print("| camera left out | photographs | seeds | rule: AUC | rule: Dice | plain rule: Dice | lwnet AUC / Dice |")
    print("|---|---|---|---|---|---|---|")
    held_out = []
    for kind, title in CAMERAS.items():
        found = runs_of(kind, runs)
        if not found:
            print(f"| {title} | | not run yet | | | | |")
            continue
        by_rule = {rule: [score(run, kind, "all", rule, datasets) for run in found] for rule in RULES}
        print(
            f"| {title} | {by_rule['rule'][0]['images']} | {len(found)} | {cell(by_rule['rule'], 'auc')} | "
            f"{cell(by_rule['rule'], 'dice')} | {cell(by_rule['plain'], 'dice')} | {peer_cell(kind)} |"
        )
        if kind != "les_av":
            held_out += [(run.name, score(run, "les_av", "test", "rule", datasets)) for run in found]
    if held_out:
        print("\nLES-AV's 11 test photographs, by runs that trained on its other 11:")
        for name, found in held_out:
            print(f"- {name}: AUC {found['auc']:.4f}, Dice {found['dice']:.4f}")
        dice = [found["dice"] for _, found in held_out]
        print(f"- mean Dice {statistics.mean(dice):.4f} over {len(dice)} runs")
    print("\nThe two recipes on every LES-AV photograph (seeds 0 / 1):\n")
    print("| recipe | seeds | rule: AUC | rule: Dice | plain rule: Dice |")
    print("|---|---|---|---|---|")
    for recipe, names in RECIPES.items():
        found = [runs / name for name in names if (runs / name / "finetuned.safetensors").exists()]
        by_rule = {rule: [score(run, "les_av", "all", rule, datasets) for run in found] for rule in RULES}
        print(
            f"| {recipe} | {len(found)} | {cell(by_rule['rule'], 'auc')} | {cell(by_rule['rule'], 'dice')} | "
            f"{cell(by_rule['plain'], 'dice')} |"
        )


if __name__ == "__main__":
    main()
