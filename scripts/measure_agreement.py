"""Agreement of the measurements from predicted vessel masks with those from the manual labels.

    nice -n 5 .venv/bin/python -m scripts.measure_agreement /work/shared/datasets --out docs/results

For every labelled photograph of DRIVE, STARE, CHASE_DB1 and LES-AV: the vessels segmented by the leave-one-camera-out
run that did not train on that camera (``MODELS``: ``patch2image train configs/without-CAMERA.yaml --out
runs/without-CAMERA`` first), the optic disc by the shipped disc model, then every feature
measured twice with the same field of view, disc and scale: on the predicted mask and on the manual one. Writes
``measurements.md`` (Pearson r, ICC(2,1), Bland-Altman bias and limits per feature against the targets, and the
disc check), ``measurements/agreement.csv``, ``measurements/per_image.csv`` and one figure per feature. Masks are
cached in ``--cache``.
"""

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

MODELS = {dataset: f"runs/without-{dataset.lower().replace('_', '-')}/finetuned.safetensors"
          for dataset in ("DRIVE", "STARE", "CHASE_DB1", "LES-AV")}  # fmt: skip
"""Vessel model per dataset: the recipe of the shipped ``vessels`` trained on the three other cameras."""
DISC_MODEL = "optic-disc"
FEATURES = {  # feature -> (label, ICC target)
    "vessel_density": ("vessel density", 0.90),
    "fractal_dimension": ("fractal dimension", 0.90),
    "calibre_px": ("calibre (px)", 0.80),
    "main_calibre_px": ("main-vessel calibre (px)", 0.80),
    "distance_tortuosity": ("distance tortuosity", 0.70),
    "squared_curvature_per_px": ("squared curvature (1/px)", 0.70),
    "tortuosity_density_per_px": ("tortuosity density (1/px)", 0.70),
}
REGIONS = {"fov": "field of view", "zone_b": "zone B", "zone_c": "zone C"}


def cases(root: Path):
    """(dataset, name, image path, label path, fov path or None) for every labelled photograph."""
    from patch2image.data import open_dataset

    for title in ("DRIVE", "STARE", "CHASE_DB1"):
        for case in open_dataset(root / title).cases():
            yield title, case.name, case.image, case.label, case.fov
    for split in ("training", "test"):
        folder = root / "LES-AV" / split
        for image in sorted((folder / "images").glob("*.png")):
            yield (
                "LES-AV",
                image.stem,
                image,
                folder / "vessels" / image.name,
                folder / "mask" / f"{image.stem}_mask.gif",
            )


def masks(dataset, name, image, label, fov_path, cache: Path, segmenters) -> dict:
    """Predicted vessels, manual vessels, field of view and disc of one photograph (cached as .npz)."""
    path = cache / Path(MODELS[dataset]).parent.name / dataset / f"{name}.npz"
    if path.is_file():
        return dict(np.load(path))
    from patch2image.data import field_of_view_mask, read_image, read_mask
    from patch2image.postprocessing import inside_field_of_view

    rgb = read_image(image)
    fov = read_mask(fov_path) if fov_path else field_of_view_mask(rgb)
    vessels, disc = segmenters(MODELS[dataset]), segmenters(DISC_MODEL)
    out = {
        "predicted": inside_field_of_view(vessels(rgb), fov) >= vessels.threshold,
        "manual": read_mask(label) & fov,
        "fov": fov,
        "disc": inside_field_of_view(disc(rgb), fov) >= disc.threshold,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **out)
    return out


def convergence(manual: np.ndarray, fov: np.ndarray) -> tuple[float, float]:
    """Where the main vessels converge, from the manual labels: the peak of the centre line weighted by width^2.

    Each centre-line pixel counts its vessel's width squared (its cross-section: the main arcades count most),
    smoothed over a tenth of the field of view's width; the peak is where the widest vessels all enter, the disc.
    Chosen by looking at the photographs it flagged: counting the widest third of the vessel area instead, and
    dividing by the share of the window inside the field of view, put the peak on an arcade's crossing or at the
    rim for correct discs (32 flagged of the 107 with a disc; this way, 8).
    """
    from scipy import ndimage

    from patch2image.data.field_of_view import fov_diameter
    from patch2image.measure.features import widths
    from patch2image.measure.segments import skeleton_of

    centre = skeleton_of(manual).pixels
    density = ndimage.gaussian_filter(widths(manual, centre) ** 2, fov_diameter(fov) / 10)
    y, x = np.unravel_index(np.argmax(np.where(fov, density, -1)), density.shape)
    return float(x), float(y)


def icc_2_1(a: np.ndarray, b: np.ndarray) -> float:
    """ICC(2,1): two-way random effects, absolute agreement, single measurement (McGraw and Wong 1996)."""
    data = np.stack([a, b], axis=1)
    n, k = data.shape
    grand = data.mean()
    ms_rows = k * np.sum((data.mean(axis=1) - grand) ** 2) / (n - 1)
    ms_cols = n * np.sum((data.mean(axis=0) - grand) ** 2) / (k - 1)
    residual = data - data.mean(axis=1, keepdims=True) - data.mean(axis=0, keepdims=True) + grand
    ms_error = np.sum(residual**2) / ((n - 1) * (k - 1))
    return float((ms_rows - ms_error) / (ms_rows + (k - 1) * ms_error + k * (ms_cols - ms_error) / n))


def agreement(manual: np.ndarray, predicted: np.ndarray) -> dict:
    difference = predicted - manual
    bias, sd = difference.mean(), difference.std(ddof=1)
    return {
        "n": len(manual), "pearson_r": float(np.corrcoef(manual, predicted)[0, 1]),
        "icc_2_1": icc_2_1(manual, predicted),
        "bias": float(bias), "lower": float(bias - 1.96 * sd), "upper": float(bias + 1.96 * sd),
        "manual_mean": float(manual.mean()),
    }  # fmt: skip


def figure(feature: str, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 8))
    colours = dict(zip(MODELS, ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=True))
    for column, (region, title) in enumerate(REGIONS.items()):
        key = f"{region}_{feature}"
        for dataset, colour in colours.items():
            pairs = [(r["manual"][key], r["predicted"][key]) for r in rows if r["dataset"] == dataset]
            pairs = np.array([p for p in pairs if None not in p], float).reshape(-1, 2)
            axes[0, column].scatter(pairs[:, 0], pairs[:, 1], s=12, color=colour, label=dataset)
            axes[1, column].scatter(pairs.mean(axis=1), pairs[:, 1] - pairs[:, 0], s=12, color=colour)
        low, high = axes[0, column].get_xlim()
        axes[0, column].plot([low, high], [low, high], "k--", lw=0.8)
        axes[0, column].set(title=title, xlabel="from the manual labels", ylabel="from the predicted mask")
        axes[1, column].set(xlabel="mean of the two", ylabel="predicted - manual")
        values = [(r["manual"][key], r["predicted"][key]) for r in rows]
        values = np.array([v for v in values if None not in v], float)
        if len(values) > 2:
            stats = agreement(values[:, 0], values[:, 1])
            for level, style in ((stats["bias"], "-"), (stats["lower"], "--"), (stats["upper"], "--")):
                axes[1, column].axhline(level, color="k", ls=style, lw=0.8)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(FEATURES[feature][0])
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/patch2image-measure-agreement"))
    parser.add_argument("--limit", type=int, default=None, help="photographs per dataset (a quick look)")
    args = parser.parse_args(argv)
    missing = [weights for weights in MODELS.values() if not Path(weights).is_file()]
    if missing:
        train = "patch2image train configs/without-CAMERA.yaml --out runs/without-CAMERA"
        sys.exit(f"{missing[0]}: not trained yet ({train})")

    import functools

    import patch2image
    from patch2image.measure import measure_masks

    segmenters = functools.lru_cache(maxsize=None)(patch2image.load)
    started = time.perf_counter()
    rows, seen = [], {}
    for dataset, name, image, label, fov in cases(args.datasets):
        seen[dataset] = seen.get(dataset, 0) + 1
        if args.limit and seen[dataset] > args.limit:
            continue
        m = masks(dataset, name, image, label, fov, args.cache, segmenters)
        fov_mask, disc = m["fov"].astype(bool), m["disc"].astype(bool)
        row = {"dataset": dataset, "name": name}
        row["manual"] = measure_masks(m["manual"].astype(bool), fov_mask, disc)
        row["predicted"] = measure_masks(m["predicted"].astype(bool), fov_mask, disc)
        row["convergence"] = convergence(m["manual"].astype(bool), fov_mask)
        rows.append(row)
        print(f"{dataset} {name} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    write_results(rows, args.out, time.perf_counter() - started)
    return 0


def disc_check(row: dict) -> str:
    """Empty when the disc found lies within one disc diameter of where the main vessels converge, else why not."""
    found = row["manual"]
    if not found["disc_found"]:
        return found["disc_reason"]
    x, y = row["convergence"]
    distance = np.hypot(found["disc_centre_x"] - x, found["disc_centre_y"] - y)
    if distance > found["disc_diameter_px"]:
        return f"{distance:.0f} px from the vessels' convergence ({distance / found['disc_diameter_px']:.1f} DD)"
    return ""


def pairs(rows: list[dict], key: str) -> np.ndarray:
    """(manual, predicted) of one column, for the photographs where both were measured."""
    values = [(r["manual"][key], r["predicted"][key]) for r in rows]
    return np.array([v for v in values if None not in v], float).reshape(-1, 2)


def write_results(rows: list[dict], out: Path, seconds: float) -> None:
    folder = out / "measurements"
    folder.mkdir(parents=True, exist_ok=True)
    table, lines = [], []
    for feature, (label, target) in FEATURES.items():
        figure(feature, rows, folder / f"{feature}.png")
        for region, title in REGIONS.items():
            values = pairs(rows, f"{region}_{feature}")
            stats = agreement(values[:, 0], values[:, 1]) if len(values) > 2 else None
            table.append({"feature": feature, "region": region, "target": target} | (stats or {}))
            if stats is None:
                lines.append(f"| {label} | {title} | {len(values)} | | | | | {target:.2f} | |")
                continue
            met = "yes" if stats["icc_2_1"] >= target else f"no, short by {target - stats['icc_2_1']:.2f}"
            lines.append(
                f"| {label} | {title} | {stats['n']} | {stats['manual_mean']:.4g} | {stats['pearson_r']:.3f} | "
                f"{stats['icc_2_1']:.3f} | {stats['bias']:.3g} [{stats['lower']:.3g}, {stats['upper']:.3g}] | "
                f"{target:.2f} | {met} |"
            )
    with open(folder / "agreement.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]) + ["n", "pearson_r", "icc_2_1", "bias", "lower",
                                                                     "upper", "manual_mean"])  # fmt: skip
        writer.writeheader()
        writer.writerows(table)
    per_dataset_lines = []
    for feature, (label, target) in FEATURES.items():
        cells = []
        for dataset in MODELS:
            values = pairs([r for r in rows if r["dataset"] == dataset], f"fov_{feature}")
            if len(values) > 2:
                stats = agreement(values[:, 0], values[:, 1])
                bias = 100 * stats["bias"] / stats["manual_mean"]
                cells.append(f"{stats['icc_2_1']:.2f} ({stats['pearson_r']:.2f}; {bias:+.0f}%)")
            else:
                cells.append("")
        per_dataset_lines.append(f"| {label} | {target:.2f} | " + " | ".join(cells) + " |")
    checks = [(r["dataset"], r["name"], disc_check(r)) for r in rows]
    with open(folder / "per_image.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        keys = [f"{region}_{feature}" for region in REGIONS for feature in FEATURES]
        columns = [f"{k}_{m}" for k in keys for m in ("manual", "predicted")]
        writer.writerow(["dataset", "image", "disc_check", *columns])
        for row, (_, _, check) in zip(rows, checks, strict=True):
            values = [row[m][k] for k in keys for m in ("manual", "predicted")]
            writer.writerow([row["dataset"], row["name"], check, *("" if v is None else f"{v:.6g}" for v in values)])
    failed = [c for c in checks if c[2]]
    per_dataset = {d: sum(1 for r in rows if r["dataset"] == d) for d in MODELS}
    header = (Path(__file__).read_text().split('"""')[1].strip().splitlines()[2]).strip()
    page = PAGE.format(
        command=header, count=len(rows), per_dataset=", ".join(f"{d} {n}" for d, n in per_dataset.items()),
        models="\n".join(f"| {d} | `{m}` |" for d, m in MODELS.items()), table="\n".join(lines),
        minutes=seconds / 60, failed=len(failed), total=len(checks),
        failures="\n".join(f"| {d} | {n} | {why} |" for d, n, why in failed) or "| | | none |",
        figures="\n".join(f"![{FEATURES[f][0]}](measurements/{f}.png)" for f in FEATURES),
        datasets=" | ".join(MODELS), rule="|".join("---" for _ in MODELS), within="\n".join(per_dataset_lines),
        reading=READING,
    )  # fmt: skip
    (out / "measurements.md").write_text(page)


READING = """## Reading the table

(Written from the run above; a rerun keeps this text and replaces the tables around it.)

**Met, pooled over the 110 photographs:** calibre and main-vessel calibre in all three regions (ICC .90, .88,
.88; .92, .93, .89), distance
tortuosity in zones B and C (.70, .74). **Near:** distance tortuosity, squared curvature and tortuosity
density over the field of view (.64, .66, .64: short by .06, .05, .06) and in zone C (.67, .65). **Missed by
far:** vessel density (.35, .60, .45 for the field of view and zones B and C) and fractal dimension (.26, .57,
.36), against .90.

**Against the previous version of this page** (single-dataset models: `stare-mini-unet` on DRIVE,
`drive-mini-unet` on STARE and CHASE_DB1, the three-camera `vessels` on LES-AV): models that learnt from
three cameras and their annotators agree better on density (pooled ICC .23 -> .35 over the field of view),
calibre (.82 -> .90) and tortuosity in the zones, and slightly worse on tortuosity over the whole field of
view (.67 -> .64, .73 -> .66 for squared curvature). One seed per model: how much of each change another seed
would move is not measured here.

**Why density and fractal dimension miss: the models carry their annotators' style.** Within each camera the
bias has one sign and a size that follows how densely the left-out camera's annotators drew compared with the
others: DRIVE's labels are the densest (vessels are 13% of the field of view in the labels of DRIVE's first 10
photographs, 10-11% in STARE's and CHASE_DB1's, 9% in LES-AV's), and the model trained without DRIVE gives
DRIVE 25% less vessel area than its annotator; STARE and CHASE_DB1 get 11-13% more, LES-AV 14% less. Opposite
biases per camera pile up as spread in the pooled Bland-Altman plot and pull the ICC down, though the
predicted density still ranks the photographs of one camera (Pearson r .52 to .90 within cameras; .90 on LES-
AV). A density measured by one model is comparable across the photographs it measures; comparing it with
another tool's, or with manual labels, needs that tool's bias on the same photographs.

**Why calibre agrees across cameras and less within one.** The pooled ICC comes mostly from the differences
between cameras (calibre in pixels grows with resolution); within one camera it is .00 to .44. The predicted
calibre is too wide by 2% on DRIVE, 16% on STARE, 30% on CHASE_DB1 and 14% on LES-AV: each photograph is
segmented at the model's working scale and its probabilities resized back, so the larger the photograph, the
wider a vessel's predicted edge, by about the same number of pixels on every photograph (see the calibre
figure). Calibre from masks segmented at the photograph's own scale, or read from the probability profile
across the vessel, would be the fix.

**The main-vessel calibre** (the six widest segments' widths, as CRAE and CRVE take the six largest vessels,
here arteries and veins together) is added because the mean over every centre-line pixel is mostly thin
vessels and moves with how many of them a mask holds. It agrees better pooled (ICC .92 over the field of view,
.93 in zone B) and with less bias (0%, +13%, +18% and 0% on the four cameras, against +2%, +16%, +30% and
+14%); within one camera it is better on LES-AV (.78 against .39) and CHASE_DB1 (.21 against .00), worse on
DRIVE (.12 against .44), where the manual main-vessel calibre is 6.4 to 9.8 pixels (mean 7.8) and one pixel is
13% of it. One seed, one run: how much of each difference is the segmentation's and how much the estimator's
noise is not measured.

**Tortuosity.** Distance tortuosity and tortuosity density agree well within STARE and LES-AV (ICC .74 to
.81) and DRIVE's distance tortuosity reaches .70, while CHASE_DB1 stays poor (-.03 to .20): its predicted masks
miss the thin tortuous twigs its annotators drew, so its most tortuous photographs lose most. Zone B misses
more than the other regions for curvature and tortuosity density: it is the smallest region (half the disc
diameter wide), with few segments.

**The disc.** Zones B and C inherit the disc; where the disc check below fails (mostly on STARE's
pathological photographs, where the disc model trained on IDRiD takes a lesion or the bright rim for the
disc), the two masks are still measured in the same zones, so the agreement above is unaffected, but the
zones are not where SIVA would put them.
"""

PAGE = """# Measurements from predicted masks against the manual labels

Generated by `{command}` ({minutes:.0f} min on 2 busy CPU cores, masks cached);
every number below comes from that run.

**What is compared.** Each of the {count} labelled photographs ({per_dataset}) is measured twice by
`patch2image.measure.measure_masks`, with the same field of view, the same optic disc (the shipped `optic-disc`
model, trained on IDRiD) and so the same zones and scale: once on the vessel mask a shipped model predicts, once
on the first observer's manual label. So the figures are what the segmentation changes in each feature, as
AutoMorph validated its own. The vessel model of each camera is the shipped `vessels`' recipe trained on the
three other cameras' photographs and labels (`configs/without-CAMERA.yaml`, seed 0): it never saw the camera
it segments, nor its annotators.

| dataset | vessel model |
|---|---|
{models}

Tortuosity and curvature are compared per
pixel: with one scale for both masks, the per-millimetre figures agree in the same way.

**Statistics.** Pearson r; ICC(2,1), two-way random effects, absolute agreement, single measurement (McGraw
and Wong 1996), computed in `icc_2_1`; Bland-Altman bias (predicted - manual) and 95% limits of agreement
(bias +- 1.96 SD). Targets: ICC .90 for density and fractal dimension, .80 for calibre, .70 for tortuosity.
Zones B and C count only the photographs where the disc was found and the zone lies inside the field of view.

| feature | region | n | manual mean | Pearson r | ICC(2,1) | bias [limits] | target | met |
|---|---|---|---|---|---|---|---|---|
{table}

Within each camera (field of view only): ICC(2,1) (Pearson r; bias as a share of the manual mean). Pooling
four cameras adds the differences between them (calibre in pixels above all) to the spread the ICC divides
by; within one camera only the photographs' own differences remain.

| feature | target | {datasets} |
|---|---|{rule}|
{within}

{reading}

## The optic disc as the zones see it

The four vessel datasets have no disc labels. Where the main vessels converge, found from the manual labels
(the centre line weighted by the vessel's width squared, smoothed over a tenth of the field of view's width, at
its peak),
the disc found must lie within one disc diameter. {failed} of {total} photographs fail this check or have no
plausible disc:

| dataset | photograph | why |
|---|---|---|
{failures}

## Figures

One per feature: for the field of view and zones B and C, predicted against manual (top) and Bland-Altman
(bottom; bias solid, limits dashed).

{figures}
"""


if __name__ == "__main__":
    sys.exit(main())
