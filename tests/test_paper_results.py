"""The paper's published figures: shape, lookups, and every value against the reference file when it is here."""

import re
from pathlib import Path

import pytest

from patch2image.evaluation import ROW_LABELS, ROWS
from patch2image.metrics import METRICS
from patch2image.paper_results import (
    IDRID_CHALLENGE_BEST_JACCARD,
    PAPER,
    PUBLISHED_COMPARISONS,
    TABLES,
    Comparison,
    paper_value,
)

NETWORKS = ("light", "mini-unet", "dense")
NETWORK_LABELS = {"Light": "light", "Mini-Unet": "mini-unet", "Dense": "dense"}
IDRID_ROW_LABELS = {"Patch": "patch", "Frozen": "frozen", "Fine-tuned": "finetuned", "Scratch": "scratch"}
METRIC_NAMES = {"AUC": "auc", "Spec": "spec", "Sens": "sens", "Acc": "acc", "Dice": "dice", "Jaccard": "jaccard"}
METRIC_NAMES["AUPRC"] = "auprc"
DATASET_LABELS = {"STARE": "stare", "CHASE_DB1": "chase_db1"}

# The project's reference file, beside the project or at the shared location; the test skips without it.
REFERENCE_CANDIDATES = (
    Path(__file__).resolve().parents[1].parent / "shared" / "SPEC.md",
    Path("/work/shared/SPEC.md"),
)


def test_paper_results_complete():
    assert set(PAPER) == set(TABLES) == {"drive", "stare", "chase_db1", "idrid"}
    for dataset, networks in PAPER.items():
        assert tuple(networks) == NETWORKS, dataset
        for network, rows in networks.items():
            assert tuple(rows) == ROWS, (dataset, network)
            for row, values in rows.items():
                expected = ("jaccard",) if dataset == "idrid" else METRICS
                assert tuple(values) == expected, (dataset, network, row)
                assert all(isinstance(v, float) and 0.5 < v < 1 for v in values.values()), (dataset, network, row)
    assert set(ROW_LABELS) == set(ROWS)
    # Spot checks, one per table, typed from the paper independently of the data above.
    assert PAPER["drive"]["dense"]["finetuned"]["auprc"] == 0.9129
    assert PAPER["stare"]["light"]["patch"]["jaccard"] == 0.6000
    assert PAPER["stare"]["dense"]["scratch"]["sens"] == 0.7792
    assert PAPER["chase_db1"]["light"]["finetuned"]["jaccard"] == 0.6049
    assert PAPER["chase_db1"]["mini-unet"]["scratch"]["auc"] == 0.9876
    assert PAPER["idrid"]["light"]["patch"]["jaccard"] == 0.6413
    assert PAPER["idrid"]["dense"]["scratch"]["jaccard"] == 0.7678
    assert IDRID_CHALLENGE_BEST_JACCARD == 0.9338


def test_paper_value():
    assert paper_value("stare", "mini-unet", "frozen", "auprc") == 0.8757
    assert paper_value("idrid", "dense", "finetuned", "jaccard") == 0.9390
    assert paper_value("idrid", "dense", "finetuned", "dice") is None  # Table 4 gives the Jaccard index only
    assert paper_value("hrf", "light", "patch", "auc") is None
    assert paper_value("drive", "unknown", "patch", "auc") is None
    assert paper_value("drive", "light", "second_observer", "auc") is None


def test_published_comparisons():
    assert set(PUBLISHED_COMPARISONS) == {"stare", "chase_db1"}
    for comparisons in PUBLISHED_COMPARISONS.values():
        for comparison in comparisons:
            assert isinstance(comparison, Comparison)
            assert comparison.metric in METRICS and 0.5 < comparison.value < 1
    assert PUBLISHED_COMPARISONS["stare"][0] == ("Liskowski and Krawiec 2016", "auc", 0.9928, "FOV patches only")
    assert [c.value for c in PUBLISHED_COMPARISONS["chase_db1"]] == [0.9855, 0.9812]


def _reference_text() -> str:
    for path in REFERENCE_CANDIDATES:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    pytest.skip("the reference file is absent")


def _number(text: str) -> float:
    assert re.fullmatch(r"\.\d{4}", text), text  # the paper prints four decimals, no leading zero
    return float(text)


def _markdown_tables(text: str) -> dict[str, dict]:
    """Tables 1-3 as ``{dataset: {network: {row: {metric: value}}}}``, keyed by the "(Table N)" line above each."""
    datasets = {table: dataset for dataset, table in TABLES.items()}
    row_names = {label: row for row, label in ROW_LABELS.items()}
    tables: dict[str, dict] = {}
    dataset = None
    header = None
    for line in text.splitlines():
        heading = re.search(r"\((Table \d)\)", line)
        if heading and not line.startswith("|"):
            dataset, header = datasets.get(heading.group(1)), None
            continue
        if not line.startswith("|") or dataset is None:
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[:2] == ["net", "row"]:
            header = [METRIC_NAMES[label] for label in cells[2:]]
            assert tuple(header) == METRICS, "the reference's column order"
            continue
        if set("".join(cells)) <= set("-:") or header is None:
            continue
        network, row = NETWORK_LABELS[cells[0]], row_names[cells[1]]
        values = dict(zip(header, map(_number, cells[2:]), strict=True))
        by_row = tables.setdefault(dataset, {}).setdefault(network, {})
        assert row not in by_row, (dataset, network, row)
        by_row[row] = values
    return tables


def _idrid(text: str) -> tuple[dict, float]:
    line = next(line for line in text.splitlines() if "(Table 4)" in line)
    body, best = line.split("Jaccard:", 1)[1].split("The challenge's best entry:")
    table: dict[str, dict] = {}
    for segment in body.strip().rstrip(".").split(";"):
        words = segment.split()
        network = NETWORK_LABELS[words[0]]
        labels = [w for w in words[1:] if not w.startswith(".")]
        assert labels in ([], list(IDRID_ROW_LABELS)), segment
        values = [_number(v.rstrip(",")) for v in words[1:] if v.startswith(".")]
        table[network] = {row: {"jaccard": v} for row, v in zip(ROWS, values, strict=True)}
    return table, _number(best.strip().rstrip("."))


def _comparisons(text: str) -> dict[str, list[tuple]]:
    line = next(line for line in text.splitlines() if line.startswith("Published comparisons"))
    body = line.split("): ", 1)[1].rstrip(".")
    metrics = "|".join(METRIC_NAMES)
    entry = re.compile(rf"\s*(.+?) ({metrics}) (\.\d+)(?: \(([^)]*)\))?\s*$")
    found: dict[str, list[tuple]] = {}
    for group in body.split(";"):
        label, *entries = group.strip().split(", ")
        for item in entries:
            match = entry.fullmatch(item)
            assert match, item
            method, metric, value, note = match.groups()
            found.setdefault(DATASET_LABELS[label], []).append(
                (method, METRIC_NAMES[metric], _number(value), note or "")
            )
    return found


def test_matches_reference():
    text = _reference_text()
    reference = _markdown_tables(text)
    assert set(reference) == {"drive", "stare", "chase_db1"}
    reference["idrid"], best = _idrid(text)
    compared = 0
    for dataset, networks in reference.items():
        assert tuple(networks) == NETWORKS, dataset
        for network, rows in networks.items():
            assert tuple(rows) == ROWS, (dataset, network)
            for row, values in rows.items():
                assert PAPER[dataset][network][row] == values, (dataset, network, row)
                compared += len(values)
    assert compared == 3 * 3 * 4 * 7 + 3 * 4  # every value of Tables 1-4
    assert PAPER == reference
    assert IDRID_CHALLENGE_BEST_JACCARD == best
    assert {d: [tuple(c) for c in cs] for d, cs in PUBLISHED_COMPARISONS.items()} == _comparisons(text)
