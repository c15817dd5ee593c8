"""Scoring a test set under both protocols, and the JSON and CSV files that hold the result.

An evaluation result is plain data, one entry per protocol::

    {"whole": {"threshold": 0.5,
               "mean":   {"auc": ..., "spec": ..., "sens": ..., "acc": ..., "dice": ..., "jaccard": ..., "auprc": ...},
               "pooled": {...the same metrics over all pixels of all images...},
               "images": [{"name": ..., "auc": ..., ...}, ...],
               "pooled_data": {"threshold": ..., "counts": {...}, "histogram": {...}}},
     "fov": {...}}

``whole`` scores every pixel (the paper's protocol: background outside the camera's field of view
included, which inflates accuracy, specificity and AUC); ``fov`` scores the pixels inside the
field-of-view mask. ``mean`` is the mean over images (the paper's aggregation), ``pooled`` treats all
pixels as one set. ``pooled_data`` holds what the pooled metrics are computed from (confusion counts and
score histograms, see :class:`patch2image.metrics.PooledScores`), so that cross-validation folds merge
exactly (:func:`merge_evaluations`). Undefined values (NaN) are ``null`` in the JSON and empty in the CSV.
"""

import csv
import dataclasses
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from patch2image.atomic_files import write_text
from patch2image.errors import UserError
from patch2image.metrics import METRICS, PooledScores, image_metrics, mean_metrics
from patch2image.parameters import THRESHOLD, check

PROTOCOLS = ("whole", "fov")
ROWS = ("patch", "frozen", "finetuned", "scratch")
"""The rows of a results table, in the paper's order (``metrics/<row>.json`` in a run directory)."""
ROW_LABELS = {"patch": "Patch", "frozen": "Image/Frozen", "finetuned": "Image/Fine-tuned", "scratch": "Image/Scratch"}
SECOND_OBSERVER = "second_observer"
"""The human reference: the second observer's labels scored against the first's."""


def read_run_metrics(run_dir: str | Path) -> dict[str, dict]:
    """{row: evaluation result} of every row a run directory has scored, the second observer included."""
    run_dir = Path(run_dir)
    rows = {}
    for row in (*ROWS, SECOND_OBSERVER):
        path = run_dir / "metrics" / f"{row}.json"
        if path.is_file():
            try:
                rows[row] = read_evaluation(path)
            except ValueError as exc:
                raise UserError(f"{path}: not an evaluation result ({exc})") from None
    return rows


def evaluate_model(
    model,
    dataset,
    split: str = "test",
    fold: int | None = None,
    threshold: float | None = None,
    mode: str = "image",
    stride: int = 2,
    network: str | None = None,
    backend: str = "auto",
    announce=None,
    tta: bool = False,
) -> dict:
    """Score a model on one split of a dataset, every image at its original size, both protocols.

    Parameters
    ----------
    model : patch2image.Segmenter, or a shipped model's name or a weights file
    dataset : patch2image.data.Dataset
    split : {"train", "val", "test", "all"}
        A folder of images without a train/test layout has only "all" ("test" means it).
    fold : int, optional
        STARE and CHASE_DB1: the cross-validation fold whose split to score.
    threshold : float, optional
        The mask threshold; by default the model's (the threshold it was scored at, else 0.5), as ``segment``'s.
    mode, stride :
        Image-level or the paper's patch-level segmentation at ``stride``.
    network : str, optional
        A user network's ``module:Class`` the weights were trained with (imported only when named).
    backend, announce : optional
        What runs the network, and ``auto``'s report of its choice (:func:`patch2image.runtime.backends.load_backend`);
        by default ``auto``, as ``segment`` and :func:`patch2image.load`.
    tta : bool
        Average over the image and its three flips (:data:`patch2image.inference.FLIPS`).

    Returns
    -------
    result : dict
        An evaluation result (module docstring).

    On the dataset the model was trained on, images are segmented at the training size exactly, as
    training scores its test images, not by the camera-independent scale rule (whose 2% aspect-ratio
    tolerance STARE, 2.1%, and CHASE_DB1, 4.3%, exceed). The network's probabilities are scored as
    training scores them: in float32, nothing cleared outside the field of view (``inside_fov=False``).
    """
    from patch2image.data import load_sample
    from patch2image.inference import TRAINING_SIZE, Segmenter, load_segmenter

    check({"threshold": THRESHOLD.but_optional()}, {"threshold": threshold})  # before the model loads
    model_name = model
    if isinstance(model, Segmenter):
        model = dataclasses.replace(model, inside_fov=False, check_fundus=False)
    else:
        model = load_segmenter(model, backend=backend, precision="fp32", network=network, announce=announce,
                               mode=mode, stride=stride, tta=tta, inside_fov=False, check_fundus=False)  # fmt: skip
        if model.metadata.dataset == dataset.kind and model.metadata.input_size:
            model = dataclasses.replace(model, size=TRAINING_SIZE)
    threshold = model.threshold if threshold is None else threshold
    if split == "test" and dataset.kind == "folder" and not dataset.folds() and "test" not in dataset.groups:
        split = "all"
    files = dataset.files(split, fold=fold)
    if not files:
        raise UserError(dataset.problems[0] if dataset.problems else f"{dataset.root}: no {split} images")
    samples = (load_sample(f) for f in files)
    result = evaluate_cases(((s.name, model(s.image), s.label, s.fov) for s in samples), threshold)
    metadata = model.metadata
    result["source"] = {  # what was scored on what: the cross-dataset report reads this
        "model": metadata.model_name(model_name),
        "trained_on": metadata.dataset,
        "fold_trained": metadata.fold,
        "dataset": dataset.kind,
        "split": split,
        "fold": fold,
        "threshold": threshold,
        "mode": mode,
        "tta": getattr(model, "tta", False),
    }
    return result


def format_results(rows: dict[str, dict], protocol: str = "whole") -> str:
    """A results table as text: one line per row, the mean over images of each metric."""
    labels = ROW_LABELS | {SECOND_OBSERVER: "2nd observer"}
    lines = [f"{'row':<18}" + "".join(f"{m:>9}" for m in METRICS)]
    for row, result in rows.items():
        values = result[protocol]["mean"]
        lines.append(f"{labels.get(row, row):<18}" + "".join(f"{values[m]:>9.4f}" for m in METRICS))
    return "\n".join(lines)


def evaluate_cases(cases: Iterable, threshold: float = 0.5) -> dict:
    """Score test images under both protocols.

    Parameters
    ----------
    cases : iterable of (name, prob, label, fov)
        Per test image, at its original size: ``prob`` float probabilities in [0, 1], ``label`` the bool
        ground truth, ``fov`` the bool field-of-view mask (None: the whole image). Consumed one at a
        time, so a generator keeps one image in memory.
    threshold : float, default 0.5
        A pixel is predicted positive where ``prob >= threshold`` (e.g. a threshold chosen on the
        validation images by :func:`patch2image.metrics.best_dice_threshold`).

    Returns
    -------
    dict
        ``{"whole": {...}, "fov": {...}}`` as the module docstring shows.
    """
    images = {protocol: [] for protocol in PROTOCOLS}
    pooled = {protocol: PooledScores(threshold) for protocol in PROTOCOLS}
    for name, prob, label, fov in cases:
        for protocol, region in (("whole", None), ("fov", fov)):
            images[protocol].append({"name": str(name), **image_metrics(prob, label, region, threshold)})
            pooled[protocol].add(prob, label, region)
    return {protocol: _summary(images[protocol], pooled[protocol]) for protocol in PROTOCOLS}


def _summary(images: list[dict], pooled: PooledScores) -> dict:
    return {
        "threshold": pooled.threshold,
        "mean": mean_metrics(images),
        "pooled": pooled.metrics(),
        "images": images,
        "pooled_data": pooled.to_dict(),
    }


def merge_evaluations(results: list[dict]) -> dict:
    """Merge the results of cross-validation folds into one, as if one test set.

    Images are concatenated in the order given, the means recomputed over all of them, and the pooled
    metrics recomputed from the summed confusion counts and score histograms (exactly what scoring all
    images at once gives). Folds scored at different thresholds keep their own; the merged
    ``threshold`` is then None. A result without ``pooled_data`` (written by another tool) leaves the
    pooled metrics NaN; a protocol that some results lack is left out.
    """
    if not results:
        raise ValueError("merge_evaluations needs at least one result")
    merged = {}
    for protocol in PROTOCOLS:
        if not all(protocol in result for result in results):
            continue  # a protocol some folds lack cannot cover the merged test set
        parts = [result[protocol] for result in results]
        images = [dict(image) for part in parts for image in part["images"]]
        if all(part.get("pooled_data") for part in parts):
            pooled = PooledScores.from_dict(parts[0]["pooled_data"])
            for part in parts[1:]:
                pooled.update(PooledScores.from_dict(part["pooled_data"]))
            merged[protocol] = _summary(images, pooled)
        else:
            thresholds = {part.get("threshold") for part in parts}
            merged[protocol] = {
                "threshold": thresholds.pop() if len(thresholds) == 1 else None,
                "mean": mean_metrics(images),
                "pooled": dict.fromkeys(METRICS, math.nan),
                "images": images,
            }
    return merged


def write_evaluation(result: dict, json_path: str | Path) -> None:
    """Write ``result`` as JSON and its per-image values as ``<stem>.csv`` beside it, each atomically.

    The CSV has the columns ``protocol,name,auc,spec,sens,acc,dice,jaccard,auprc``.
    """
    json_path = Path(json_path)
    write_text(json_path, _dumps(json_safe(result)) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["protocol", "name", *METRICS])
    for protocol in PROTOCOLS:
        for image in result.get(protocol, {}).get("images", []):
            writer.writerow([protocol, image["name"], *(_csv_value(image.get(m)) for m in METRICS)])
    write_text(json_path.with_suffix(".csv"), buffer.getvalue())


def read_evaluation(json_path: str | Path) -> dict:
    """Read a result that :func:`write_evaluation` wrote; ``null`` metric values come back as NaN.

    Anything else (text where a number belongs, a damaged histogram) is a ValueError naming the entry.
    """
    try:
        result = json.loads(Path(json_path).read_text())
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON text ({type(exc).__name__})") from None
    protocols = [result.get(name) for name in PROTOCOLS] if isinstance(result, dict) else [None]
    if not any(protocols) or not all(p is None or isinstance(p, dict) for p in protocols):
        raise ValueError(f"expected an object holding one or both of the protocols {', '.join(PROTOCOLS)}")
    for name, protocol in zip(PROTOCOLS, protocols, strict=True):
        if protocol is not None:
            _check_protocol(name, protocol)
    for protocol in filter(None, protocols):  # other entries (``source``) are left as they are
        for values in [protocol.get("mean", {}), protocol.get("pooled", {}), *protocol.get("images", [])]:
            for name in METRICS:
                if name in values and values[name] is None:
                    values[name] = math.nan
    return result


def _check_protocol(name: str, protocol: dict) -> None:
    """Raise ValueError naming the first entry of ``protocol`` that is not what :func:`write_evaluation` writes."""

    def scores(where: str, values) -> None:
        if not isinstance(values, dict):
            raise ValueError(f"{where}: expected an object of metrics, got {type(values).__name__}")
        for metric in METRICS:
            value = values.get(metric)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f"{where}.{metric}: expected a number or null, got {value!r}")

    scores(f"{name}.mean", protocol.get("mean", {}))
    scores(f"{name}.pooled", protocol.get("pooled", {}))
    images = protocol.get("images", [])
    if not isinstance(images, list):
        raise ValueError(f"{name}.images: expected a list, got {type(images).__name__}")
    for index, image in enumerate(images):
        scores(f"{name}.images[{index}]", image)
        if not isinstance(image.get("name"), str):
            raise ValueError(f"{name}.images[{index}].name: expected a name, got {image.get('name')!r}")
    threshold = protocol.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)):
        raise ValueError(f"{name}.threshold: expected a number or null, got {threshold!r}")
    if protocol.get("pooled_data") is not None:
        try:
            PooledScores.from_dict(protocol["pooled_data"])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise ValueError(f"{name}.pooled_data: not pooled scores ({type(exc).__name__}: {exc})") from None


def _csv_value(value) -> str:
    return "" if value is None or math.isnan(value) else repr(float(value))


def json_safe(value):
    """JSON has no NaN: strict parsers (browsers, jq) reject Python's ``NaN`` token."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _dumps(value, indent: str = "") -> str:
    """JSON with dicts indented and lists of numbers on one line, so the histograms stay compact."""
    if isinstance(value, dict) and value:
        inner = indent + "  "
        items = ",\n".join(f"{inner}{json.dumps(key)}: {_dumps(item, inner)}" for key, item in value.items())
        return "{\n" + items + "\n" + indent + "}"
    if isinstance(value, list) and value and any(isinstance(item, dict) for item in value):
        inner = indent + "  "
        return "[\n" + ",\n".join(inner + _dumps(item, inner) for item in value) + "\n" + indent + "]"
    return json.dumps(value, allow_nan=False, separators=(", ", ": "))
