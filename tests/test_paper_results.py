"""The paper's published figures: shape, lookups, and every value against the reference file when it is here."""

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


def test_a_metric_added_to_the_package_leaves_the_papers_figures_as_they_are(monkeypatch):
    import importlib

    from patch2image import metrics, paper_results

    monkeypatch.setattr(metrics, "METRICS", (*metrics.METRICS, "mcc"))
    reloaded = importlib.reload(paper_results)
    assert reloaded.paper_value("drive", "light", "patch", "auc") == 0.9811
    assert reloaded.paper_value("drive", "light", "patch", "mcc") is None
    monkeypatch.undo()
    importlib.reload(paper_results)
