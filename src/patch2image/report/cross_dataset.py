"""The cross-dataset matrix: models down, datasets across, from ``patch2image evaluate --json`` files.

Each file holds one model scored on one dataset, with a ``source`` entry saying which model (and
what it was trained on), which dataset, split and fold. A cell is AUC / Dice, mean over the images
of the split; a cell on a dataset the model was trained on is marked, since it scores the model's
own held-out test images rather than an unseen camera.
"""

import math
from dataclasses import dataclass
from pathlib import Path

from patch2image.data import DATASETS
from patch2image.errors import UserError
from patch2image.evaluation import PROTOCOLS, read_evaluation
from patch2image.report.tables import MISSING, PROTOCOL_LABELS, Table

IN_DOMAIN = "*"


@dataclass
class Evaluation:
    """One model scored on one dataset."""

    path: Path
    model: str
    trained_on: list[str]
    dataset: str
    split: str
    images: int
    result: dict

    @property
    def in_domain(self) -> bool:
        return self.dataset in self.trained_on


def is_evaluation_file(path: Path) -> bool:
    return path.suffix == ".json" and path.is_file()


def load_evaluation(path: Path) -> Evaluation:
    try:
        result = read_evaluation(path)
        source = result["source"]
        model, dataset = str(source["model"]), str(source["dataset"])
        images = len(result["fov"]["images"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not an evaluation of `patch2image evaluate --model ... --json` ({exc!r})") from None
    return Evaluation(
        path=path,
        model=model,
        trained_on=str(source.get("trained_on") or "").split("+"),
        dataset=dataset,
        split=str(source.get("split") or "test"),
        images=images,
        result=result,
    )


def matrix_tables(evaluations: list[Evaluation]) -> list[Table]:
    """One table per protocol (inside the FOV first: the usual protocol across datasets)."""
    seen = {}
    for evaluation in evaluations:
        key = (evaluation.model, evaluation.dataset)
        if key in seen:
            raise UserError(
                f"{seen[key].path} and {evaluation.path}: both score {evaluation.model} on {evaluation.dataset}"
            )
        seen[key] = evaluation
    models = list(dict.fromkeys(e.model for e in evaluations))
    kinds = [kind for kind in DATASETS if any(e.dataset == kind for e in evaluations)]
    titles = [DATASETS[kind].title for kind in kinds]
    trained_on = {e.model: e.trained_on for e in evaluations}
    tables = []
    for protocol in sorted(PROTOCOLS, key=lambda p: p != "fov"):
        table = Table(
            key=f"cross-dataset-{protocol}",
            title=f"Across datasets: {PROTOCOL_LABELS[protocol]}",
            caption=_caption(evaluations, kinds),
            header=["model", "trained on", *titles],
            numeric=len(titles),
        )
        for model in models:
            cells = [_cell(seen.get((model, kind)), protocol) for kind in kinds]
            table.add([model, ", ".join(_title(k) for k in trained_on[model] if k), *cells])
        tables.append(table)
    return tables


def _cell(evaluation: Evaluation | None, protocol: str) -> str:
    if evaluation is None:
        return MISSING
    mean = evaluation.result[protocol]["mean"]
    values = " / ".join("n/a" if math.isnan(mean[m]) else f"{mean[m]:.4f}" for m in ("auc", "dice"))
    return values + (f" {IN_DOMAIN}" if evaluation.in_domain else "")


def _title(kind: str) -> str:
    return DATASETS[kind].title if kind in DATASETS else kind


def _caption(evaluations: list[Evaluation], kinds: list[str]) -> str:
    splits = []
    for kind in kinds:
        unseen = {(e.split, e.images) for e in evaluations if e.dataset == kind and not e.in_domain}
        own = {(e.split, e.images) for e in evaluations if e.dataset == kind and e.in_domain}
        described = [f"{split} ({n} images)" for split, n in sorted(unseen)]
        described += [f"{split} ({n} images){IN_DOMAIN}" for split, n in sorted(own)]
        splits.append(f"{_title(kind)}: {', '.join(described)}")
    threshold = {e.result["source"].get("threshold") for e in evaluations}
    at = f"threshold {', '.join(f'{t:g}' for t in sorted(t for t in threshold if t is not None))}"
    return (
        f"Each cell: AUC / Dice, mean over the images, {at}. Images scored: {'; '.join(splits)}. "
        f"{IN_DOMAIN} the model was trained on this dataset: the cell scores its own held-out test images."
    )
