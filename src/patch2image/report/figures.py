"""The report's figures as PNG bytes: Jaccard box plots, qualitative panels and training curves.

Each function builds a ``matplotlib.figure.Figure`` directly (Agg canvas, no pyplot state), so the
report runs headless and in threads. A function returns None when there is nothing to draw.
"""

import io
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter
from PIL import Image

from patch2image.evaluation import ROW_LABELS, ROWS
from patch2image.networks import network_label
from patch2image.paper_results import paper_value
from patch2image.report.runs import Group, Run, Section

ROW_COLOURS = {"patch": "#4c72b0", "frozen": "#dd8452", "finetuned": "#55a868", "scratch": "#c44e52"}
PANEL_COLUMNS = ("image", "label", "scratch", "patch", "frozen", "finetuned")  # the paper's Figure 6 order
PANEL_TITLES = {"image": "Image", "label": "Ground truth", **{row: ROW_LABELS[row] for row in ROWS}}
PHASE_TITLES = {"patch": "Patch training", "finetune": "Fine-tuning", "scratch": "Image/Scratch training"}
PANEL_WIDTH = 320  # pixels of each thumbnail: the page stays small, vessels still visible
DPI = 100


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def jaccard_boxplot(section: Section) -> bytes | None:
    """Per-image Jaccard (whole image), one box per network and row, as the paper's Figures 8-11."""
    slots = len(ROWS) + 1
    figure = Figure(figsize=(max(4.0, 1.9 * len(section.groups) + 1.5), 3.6), layout="constrained")
    axes = figure.add_subplot()
    drawn = False
    for g, group in enumerate(section.groups):
        for r, row in enumerate(ROWS):
            position = g * slots + r
            result = group.results.get(row)
            images = [] if result is None else result.get("whole", {}).get("images", [])
            values = [_finite(image.get("jaccard")) for image in images]
            values = [v for v in values if v is not None]
            if values:
                boxes = axes.boxplot([values], positions=[position], widths=0.7, patch_artist=True)
                boxes["boxes"][0].set(facecolor=ROW_COLOURS[row], alpha=0.8)
                boxes["medians"][0].set(color="black")
                drawn = True
            else:
                axes.text(position, 0.5, "missing", rotation=90, ha="center", va="center", fontsize=8, color="grey")
            paper = paper_value(section.dataset, group.network, row, "jaccard")
            if paper is not None:
                axes.plot([position], [paper], marker="x", color="black", markersize=7, linestyle="none")
    if not drawn:
        return None
    axes.set_xticks([g * slots + (len(ROWS) - 1) / 2 for g in range(len(section.groups))])
    axes.set_xticklabels([network_label(group.network) for group in section.groups])
    axes.set_xlim(-1, len(section.groups) * slots - 1)
    axes.set_ylabel("Jaccard (whole image)")
    axes.set_title(f"{section.title}: Jaccard per test image")
    axes.grid(axis="y", alpha=0.3)
    handles = [Patch(facecolor=ROW_COLOURS[row], label=ROW_LABELS[row]) for row in ROWS]
    handles.append(Line2D([], [], marker="x", color="black", linestyle="none", label="paper (mean)"))
    axes.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(figure)


def _finite(value) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def panel_images(section: Section) -> list[str]:
    """Names of the test images a section has pictures of, sorted."""
    names = set()
    for run in section.runs:
        names |= {p.stem for p in (run.path / "predictions" / "image").glob("*.png")}
    return sorted(names)


def _find(runs: list[Run], kind: str, name: str) -> Path | None:
    for run in runs:
        path = run.path / "predictions" / kind / f"{name}.png"
        if path.is_file():
            return path
    return None


def _thumbnail(path: Path, mode: str) -> np.ndarray:
    with Image.open(path) as image:
        image = image.convert(mode)
        if image.width > PANEL_WIDTH:
            height = max(1, round(image.height * PANEL_WIDTH / image.width))
            image = image.resize((PANEL_WIDTH, height), Image.Resampling.LANCZOS)
        return np.asarray(image)


def qualitative_panel(section: Section, name: str) -> bytes | None:
    """One test image: photograph, ground truth and each row's probability map, one line per network.

    As the paper's Figures 6, 12 and 13. The photograph and ground truth appear on the first line only.
    """
    image = _find(section.runs, "image", name)
    if image is None:
        return None
    label = _find(section.runs, "label", name)
    height, width = _thumbnail(image, "RGB").shape[:2]
    size = 1.9
    figure = Figure(
        figsize=(size * len(PANEL_COLUMNS), size * height / width * len(section.groups) + 0.5), layout="constrained"
    )
    grid = figure.subplots(len(section.groups), len(PANEL_COLUMNS), squeeze=False)
    for g, group in enumerate(section.groups):
        for c, column in enumerate(PANEL_COLUMNS):
            axes = grid[g, c]
            axes.set_xticks([])
            axes.set_yticks([])
            if g == 0:
                axes.set_title(PANEL_TITLES[column], fontsize=9)
            if c == 0:
                axes.set_ylabel(network_label(group.network), fontsize=9)
            _draw_cell(axes, column, group, image if column == "image" else label, name, first=g == 0)
    figure.suptitle(f"{section.title}: test image {name}", fontsize=10)
    return _png(figure)


def _draw_cell(axes, column: str, group: Group, path: Path | None, name: str, first: bool) -> None:
    if column in ("image", "label"):
        if not first:
            axes.set_frame_on(False)  # not axis("off"): that would hide the network's name on the left
        elif path is None:
            axes.text(0.5, 0.5, "missing", ha="center", va="center", transform=axes.transAxes, color="grey")
        else:
            axes.imshow(_thumbnail(path, "RGB" if column == "image" else "L"), cmap="gray", vmin=0, vmax=255)
        return
    prediction = _find(group.runs, column, name)
    if prediction is None:
        axes.set_facecolor("#eeeeee")
        axes.text(0.5, 0.5, "missing", ha="center", va="center", transform=axes.transAxes, color="grey")
    else:
        axes.imshow(_thumbnail(prediction, "L"), cmap="gray", vmin=0, vmax=255)


def training_curves(run: Run) -> bytes | None:
    """Loss, validation loss and learning rate per epoch, one plot per phase (the paper's Figure 7)."""
    phases = list(dict.fromkeys(row["phase"] for row in run.history))
    if not phases:
        return None
    figure = Figure(figsize=(4.2 * len(phases), 3.0), layout="constrained")
    grid = figure.subplots(1, len(phases), squeeze=False)[0]
    for axes, phase in zip(grid, phases, strict=True):
        rows = sorted((r for r in run.history if r["phase"] == phase), key=lambda r: r["epoch"])
        epochs = [r["epoch"] for r in rows]
        axes.plot(epochs, [r.get("loss") for r in rows], label="loss", color="#4c72b0")
        axes.plot(epochs, [r.get("val_loss") for r in rows], label="validation loss", color="#dd8452")
        axes.set_xlabel("epoch")
        axes.set_title(PHASE_TITLES.get(phase, phase), fontsize=10)
        axes.grid(alpha=0.3)
        rates = axes.twinx()
        learning_rates = [r.get("lr") for r in rows]
        rates.plot(epochs, learning_rates, label="learning rate", color="#55a868", linestyle="--")
        if all(lr is not None and lr > 0 for lr in learning_rates):
            rates.set_yscale("log")
            rates.yaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log range overlap
        rates.tick_params(labelsize=7)
        if axes is grid[0]:
            axes.set_ylabel("loss")
        if axes is grid[-1]:
            rates.set_ylabel("learning rate")
    lines = [*grid[0].get_lines(), Line2D([], [], color="#55a868", linestyle="--", label="learning rate")]
    grid[0].legend(handles=lines, fontsize=7)
    figure.suptitle(f"{run.label}: training curves", fontsize=10)
    return _png(figure)
