"""Copy a run's fine-tuned weights into the package as a shipped model, with its metrics in the metadata.

.venv/bin/python -m scripts.ship_model runs/drive-light drive-light
.venv/bin/python -m scripts.ship_model runs/drive-mini-unet-budget drive-mini-unet
.venv/bin/python -m scripts.ship_model runs/drive-dense-budget drive-dense
.venv/bin/python -m scripts.ship_model runs/vessels-all vessels   # no test images held out: no metrics
"""

import dataclasses
import json
import sys
from pathlib import Path

import yaml

from patch2image.evaluation import read_evaluation
from patch2image.weights import PRETRAINED_DIR, load_model, save_weights


def ship(run_dir: Path, name: str) -> Path:
    model, metadata = load_model(run_dir / "finetuned.safetensors")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    threshold = metadata.threshold  # training wrote it: 0.5, or the one chosen on the validation images
    scored = run_dir / "metrics" / "finetuned.json"
    if scored.exists():
        result = read_evaluation(scored)
        test_images = [image["name"] for image in result["whole"]["images"]]
        metrics = {protocol: result[protocol]["mean"] for protocol in ("whole", "fov")}
        note = f"mean over the test images at threshold {threshold:g}; whole image and inside the FOV"
    else:  # trained with hold_out_test: false
        test_images, metrics = [], {}
        note = "trained on every labelled photograph of its datasets but the validation images: none held out to test"
    metadata = dataclasses.replace(
        metadata,
        name=name,
        fold=metadata.fold,  # None for several datasets: their folds are in extra["datasets"]
        test_images=test_images,
        metrics=metrics,
        extra=metadata.extra | {"metrics_note": note, "config": config, "wall_seconds": run.get("wall_seconds", {})},
    )
    target = PRETRAINED_DIR / f"{name}.safetensors"
    save_weights(target, model, metadata)
    return target


if __name__ == "__main__":
    print(ship(Path(sys.argv[1]), sys.argv[2]))
