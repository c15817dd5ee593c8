"""The figures the fundus-photograph warning rests on: its features on every photograph of the datasets
and on the non-fundus photographs scikit-image ships.

    .venv/bin/python -m benchmarks.fundus_check [--datasets-root ../shared/datasets]

Prints every photograph the rule (``patch2image.fundus_check.RULE``) warns about, then, per group, each
feature's minimum, median and maximum, and writes ``benchmarks/results/fundus_check.json`` (every
photograph's features). Besides the rule's features it measures two that were left out of the rule
because fundus and other photographs overlap on them:

- ``disc_contrast``: the optic disc as the brightest spot of the green channel smoothed at a tenth of the
  field's diameter, over the field's median, in units of its 10-90 percentile spread;
- ``vessel_share``: the share of the field covered by dark thin lines (black top-hat of the green
  channel with a disc of a 40th of the field's diameter, above three times its median).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

import cv2  # noqa: E402

from benchmarks.machine import describe_machine  # noqa: E402
from patch2image.data import field_of_view_mask, open_dataset, read_image  # noqa: E402
from patch2image.fundus_check import RULE, check_photograph, work_copy  # noqa: E402

DATASETS = ("DRIVE", "STARE", "CHASE_DB1", "IDRiD", "LES-AV")
SCIKIT_IMAGE_FUNDUS = ("retina",)
SCIKIT_IMAGE_OTHERS = (
    "astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "colorwheel",
    "logo", "camera", "coins", "moon", "page", "text", "clock", "cell", "brick", "grass", "gravel",
)  # fmt: skip


def scikit_image(name: str) -> np.ndarray:
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def disc_and_vessels(rgb: np.ndarray) -> dict[str, float]:
    small, fov = work_copy(rgb)
    if fov.sum() < 100:
        fov = np.ones_like(fov)
    diameter = 2 * np.sqrt(fov.sum() / np.pi)
    green = small[..., 1].astype(np.float32)
    values = green[fov & (small.max(axis=2) > 10)] if (fov & (small.max(axis=2) > 10)).sum() > 100 else green[fov]
    spread = float(np.percentile(values, 90) - np.percentile(values, 10)) + 1.0
    smooth = cv2.GaussianBlur(np.where(fov, green, np.median(values)), (0, 0), max(1.0, diameter / 10 / 2.355))
    radius = max(1, round(diameter / 80))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    tophat = cv2.morphologyEx(cv2.GaussianBlur(green, (0, 0), 0.8), cv2.MORPH_BLACKHAT, kernel)
    core = cv2.erode(fov.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    core = core if core.sum() >= 100 else fov
    lines = (tophat > max(4.0, 3 * float(np.median(tophat[core])))) & core
    return {
        "disc_contrast": round(float((smooth[fov].max() - np.median(values)) / spread), 4),
        "vessel_share": round(float(lines.sum() / core.sum()), 4),
    }


def photographs(root: Path):
    """(group, name, RGB) of every photograph of every dataset, then of scikit-image's."""
    for kind in DATASETS:
        dataset = open_dataset(root / kind)
        for path in dataset.files("all"):
            yield kind, path.image.name, read_image(path.image)
    for name in SCIKIT_IMAGE_FUNDUS:
        yield "scikit-image fundus", name, scikit_image(name)
    for name in SCIKIT_IMAGE_OTHERS:
        yield "scikit-image other", name, scikit_image(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets-root", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    rows, seconds = [], []
    for group, name, rgb in photographs(Path(args.datasets_root)):
        fov = field_of_view_mask(rgb)
        started = time.perf_counter()
        check = check_photograph(rgb, fov)  # as segment and serve run it, on the mask they found
        seconds.append(time.perf_counter() - started)
        row = {"group": group, "name": name, **check.features, **disc_and_vessels(rgb), "warns": bool(check.reasons)}
        rows.append(row)
        if check.reasons:
            print(f"warns  {group:20s} {name:22s} {'; '.join(check.reasons)}")
    keys = [*RULE, "disc_contrast", "vessel_share"]
    print(f"\n{'group':20s} {'n':>4s} " + " ".join(f"{k:>20s}" for k in keys))
    for group in dict.fromkeys(r["group"] for r in rows):
        members = [r for r in rows if r["group"] == group]
        cells = []
        for key in keys:
            values = np.array([r[key] for r in members])
            cells.append(f"{values.min():.3f} {np.median(values):.3f} {values.max():.3f}")
        warned = sum(r["warns"] for r in members)
        print(f"{group:20s} {len(members):4d} " + " ".join(f"{c:>20s}" for c in cells) + f"  warned {warned}")
    print(
        f"\n(min median max); the rule's check takes {np.median(seconds) * 1000:.0f} ms per photograph (median; "
        f"on the field-of-view mask segment and serve have found already), {describe_machine()}"
    )
    out = Path(args.out) / "fundus_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": describe_machine(), "photographs": rows}, indent=1) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
