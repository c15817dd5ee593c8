import csv
import json
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from patch2image.evaluation import evaluate_cases, merge_evaluations, read_evaluation, write_evaluation
from patch2image.metrics import (
    METRICS,
    PooledScores,
    best_dice_threshold,
    binary_metrics,
    confusion_counts,
    image_metrics,
    mean_metrics,
    pooled_metrics,
)


def vessel_like(rng, shape=(60, 70), prevalence=0.12):
    """Scores shaped like a network's: most background near 0, heavy tails, some saturation at 1."""
    label = rng.random(shape) < prevalence
    logit = np.where(label, rng.normal(3, 2.5, shape), rng.normal(-7, 3, shape)) + rng.standard_t(2, shape)
    prob = (0.5 * (1 + np.tanh(np.clip(logit, -60, 60) / 2))).astype(np.float32)
    return prob, label


def sklearn_counts_metrics(prob, label, threshold):
    pred = prob >= threshold
    tp, fp = np.sum(pred & label), np.sum(pred & ~label)
    fn, tn = np.sum(~pred & label), np.sum(~pred & ~label)
    return {
        "spec": tn / (tn + fp),
        "sens": tp / (tp + fn),
        "acc": (tp + tn) / label.size,
        "dice": 2 * tp / (2 * tp + fp + fn),
        "jaccard": tp / (tp + fp + fn),
    }


@pytest.mark.parametrize("seed", range(4))
def test_image_metrics_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    prob, label = vessel_like(rng)
    if seed % 2:  # ties: scores on a coarse grid, as 8-bit maps are
        prob = np.round(prob * 10) / 10
    region = rng.random(prob.shape) < 0.8
    for mask in (None, region):
        p, y = (prob.ravel(), label.ravel()) if mask is None else (prob[mask], label[mask])
        got = image_metrics(prob, label, mask, threshold=0.3)
        assert got["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert got["auprc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
        for name, value in sklearn_counts_metrics(p, y, 0.3).items():
            assert got[name] == pytest.approx(value, abs=1e-12)
    assert list(got) == list(METRICS)


def test_hand_computed_case():
    prob = np.array([[0.9, 0.6], [0.4, 0.1]])
    label = np.array([[True, False], [True, False]])
    got = image_metrics(prob, label)
    # At 0.5: tp = 0.9, fp = 0.6, fn = 0.4, tn = 0.1.
    assert confusion_counts(prob, label) == {"tp": 1, "fp": 1, "fn": 1, "tn": 1}
    assert got["spec"] == got["sens"] == got["acc"] == got["dice"] == 0.5
    assert got["jaccard"] == pytest.approx(1 / 3)
    assert got["auc"] == pytest.approx(3 / 4)  # of the 4 (positive, negative) pairs, (0.4, 0.6) is misordered
    assert got["auprc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # recall 1/2 at precision 1, 1 at 2/3


def test_ties_and_threshold_inclusive():
    got = image_metrics(np.array([0.5, 0.5]), np.array([True, False]))
    assert got["auc"] == 0.5 and got["auprc"] == 0.5
    assert got["sens"] == 1.0 and got["spec"] == 0.0  # prob >= threshold is positive


def test_binary_metrics_second_observer():
    label = np.array([1, 1, 0, 0, 0, 1], bool)
    second = np.array([1, 0, 1, 0, 0, 1], np.uint8)
    got = binary_metrics(second, label)
    assert got["auc"] == pytest.approx(roc_auc_score(label, second))
    assert got["auprc"] == pytest.approx(average_precision_score(label, second))
    assert got["sens"] == pytest.approx(2 / 3) and got["spec"] == pytest.approx(2 / 3)
    assert got["dice"] == pytest.approx(2 / 3) and got["jaccard"] == pytest.approx(0.5)


def test_fov_protocol_scores_only_the_region():
    rng = np.random.default_rng(1)
    prob, label = vessel_like(rng, (40, 40))
    fov = np.zeros((40, 40), bool)
    fov[5:35, 5:35] = True
    label &= fov
    prob[~fov] = 0.0  # dark background outside the camera's field of view: easy negatives
    whole = image_metrics(prob, label)
    inside = image_metrics(prob, label, fov)
    assert inside == image_metrics(prob[5:35, 5:35], label[5:35, 5:35])
    assert whole["acc"] > inside["acc"] and whole["spec"] > inside["spec"] and whole["auc"] > inside["auc"]
    assert whole["sens"] == inside["sens"] and whole["dice"] == inside["dice"]


def test_pooled_metrics_against_all_pixels():
    rng = np.random.default_rng(2)
    cases = [vessel_like(rng, (120 + 10 * i, 100)) for i in range(4)]
    probs, labels = [c[0] for c in cases], [c[1] for c in cases]
    all_p = np.concatenate([p.ravel() for p in probs])
    all_y = np.concatenate([y.ravel() for y in labels])
    pooled = pooled_metrics(probs, labels)
    exact = image_metrics(all_p, all_y)
    for name in ("spec", "sens", "acc", "dice", "jaccard"):
        assert pooled[name] == pytest.approx(exact[name], abs=1e-15)
    # AUC and AUPRC from histograms: the bounds that PooledScores documents.
    assert pooled["auc"] == pytest.approx(roc_auc_score(all_y, all_p), abs=1e-5)
    assert pooled["auprc"] == pytest.approx(average_precision_score(all_y, all_p), abs=2e-4)
    assert pooled["auprc"] <= average_precision_score(all_y, all_p) + 1e-12
    # Pooled differs from the mean over images, the paper's aggregation.
    assert pooled != mean_metrics(image_metrics(p, y) for p, y in zip(probs, labels, strict=True))


def test_pooled_metrics_exact_for_8_bit_and_binary_scores():
    rng = np.random.default_rng(3)
    prob, label = vessel_like(rng, (80, 90))
    levels = (np.round(prob * 255) / 255).astype(np.float32)
    for scores in (levels, (prob > 0.5).astype(np.float32)):
        pooled = pooled_metrics([scores[:40], scores[40:]], [label[:40], label[40:]])
        assert pooled["auc"] == pytest.approx(roc_auc_score(label.ravel(), scores.ravel()), abs=1e-12)
        assert pooled["auprc"] == pytest.approx(average_precision_score(label.ravel(), scores.ravel()), abs=1e-12)


def test_best_dice_threshold_is_the_best_of_all_thresholds():
    rng = np.random.default_rng(4)
    cases = [vessel_like(rng, (30, 30)) for _ in range(3)]
    probs = [np.round(p * 50) / 50 for p, _ in cases]  # ties, to exercise the half-way threshold
    labels = [y for _, y in cases]
    chosen = best_dice_threshold(probs, labels)
    candidates = np.unique(np.concatenate([p.ravel() for p in probs]))
    best = max(pooled_metrics(probs, labels, threshold=t)["dice"] for t in candidates)
    assert pooled_metrics(probs, labels, threshold=chosen)["dice"] == pytest.approx(best)
    assert chosen not in candidates  # half-way between two scores
    # Separable classes: any threshold between them is perfect; the result lies between.
    separable = best_dice_threshold([np.array([0.2, 0.3, 0.7, 0.8])], [np.array([0, 0, 1, 1], bool)])
    assert separable == pytest.approx(0.5)
    region = [np.array([True, True, True, False])]
    assert best_dice_threshold([np.array([0.2, 0.3, 0.7, 0.9])], [np.array([0, 1, 1, 0], bool)], region) == 0.25


def test_degenerate_cases_are_nan_not_errors():
    prob = np.array([[0.1, 0.7], [0.2, 0.3]])
    none = image_metrics(prob, np.zeros((2, 2), bool))
    assert math.isnan(none["auc"]) and math.isnan(none["auprc"]) and math.isnan(none["sens"])
    assert none["spec"] == 0.75 and none["dice"] == 0.0
    everything = image_metrics(prob, np.ones((2, 2), bool))
    assert math.isnan(everything["auc"]) and everything["auprc"] == 1.0 and math.isnan(everything["spec"])
    empty = image_metrics(prob, np.ones((2, 2), bool), np.zeros((2, 2), bool))
    assert all(math.isnan(v) for v in empty.values())
    nothing_anywhere = image_metrics(np.zeros((2, 2)), np.zeros((2, 2), bool))
    assert math.isnan(nothing_anywhere["dice"]) and math.isnan(nothing_anywhere["jaccard"])
    assert best_dice_threshold([prob], [np.zeros((2, 2), bool)]) == 0.5
    assert math.isnan(pooled_metrics([prob], [np.zeros((2, 2), bool)])["auc"])
    means = mean_metrics([none, {**none, "auc": 0.8}, {"auc": None}])
    assert means["auc"] == 0.8 and means["spec"] == 0.75 and math.isnan(means["sens"])
    assert all(math.isnan(v) for v in mean_metrics([]).values())


def make_cases(seed, count, shape=(50, 60)):
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        prob, label = vessel_like(rng, shape)
        fov = np.zeros(shape, bool)
        fov[3:-3, 4:-4] = True
        cases.append((f"{seed}_{i:02d}", prob, label & fov, fov))
    return cases


def test_evaluate_cases_shape_and_values():
    cases = make_cases(5, 3)
    result = evaluate_cases(iter(cases), threshold=0.4)
    assert set(result) == {"whole", "fov"}
    for protocol, region in (("whole", lambda c: None), ("fov", lambda c: c[3])):
        part = result[protocol]
        assert part["threshold"] == 0.4
        assert list(part["mean"]) == list(METRICS) and list(part["pooled"]) == list(METRICS)
        assert [image["name"] for image in part["images"]] == [c[0] for c in cases]
        for image, case in zip(part["images"], cases, strict=True):
            assert image == {"name": case[0], **image_metrics(case[1], case[2], region(case), 0.4)}
        assert part["mean"] == mean_metrics(part["images"])
        regions = None if protocol == "whole" else [c[3] for c in cases]
        assert part["pooled"] == pooled_metrics([c[1] for c in cases], [c[2] for c in cases], regions, 0.4)


def test_merge_folds_equals_scoring_all_at_once():
    folds = [make_cases(6, 2), make_cases(7, 3), make_cases(8, 1)]
    merged = merge_evaluations([evaluate_cases(fold) for fold in folds])
    together = evaluate_cases([case for fold in folds for case in fold])
    for protocol in ("whole", "fov"):
        assert merged[protocol]["images"] == together[protocol]["images"]
        assert merged[protocol]["pooled"] == together[protocol]["pooled"]
        for name in METRICS:
            assert merged[protocol]["mean"][name] == pytest.approx(together[protocol]["mean"][name], abs=1e-15)
    single = evaluate_cases(folds[0])
    assert merge_evaluations([single])["whole"]["pooled"] == single["whole"]["pooled"]


def test_merge_folds_with_different_thresholds_and_without_pooled_data():
    a, b = evaluate_cases(make_cases(9, 2), 0.5), evaluate_cases(make_cases(10, 2), 0.3)
    merged = merge_evaluations([a, b])
    assert merged["whole"]["threshold"] is None
    counts = merged["whole"]["pooled_data"]["counts"]
    assert counts["tp"] == a["whole"]["pooled_data"]["counts"]["tp"] + b["whole"]["pooled_data"]["counts"]["tp"]
    with pytest.raises(ValueError):
        PooledScores.from_dict(merged["whole"]["pooled_data"]).add(np.zeros(2), np.zeros(2, bool))
    del b["fov"]["pooled_data"]
    merged = merge_evaluations([a, b])
    assert all(math.isnan(v) for v in merged["fov"]["pooled"].values())
    assert len(merged["fov"]["images"]) == 4 and not math.isnan(merged["fov"]["mean"]["auc"])


def test_write_and_read_evaluation(tmp_path):
    cases = make_cases(11, 2)
    cases.append(("empty", cases[0][1], np.zeros_like(cases[0][2]), cases[0][3]))  # no positive pixel: NaN
    result = evaluate_cases(cases)
    path = tmp_path / "metrics" / "finetuned.json"
    write_evaluation(result, path)

    def reject(token):
        raise AssertionError(f"non-standard JSON token {token}")

    strict = json.loads(path.read_text(), parse_constant=reject)
    assert strict["whole"]["images"][2]["auc"] is None
    back = read_evaluation(path)
    assert math.isnan(back["whole"]["images"][2]["auc"])
    assert back["whole"]["mean"] == pytest.approx(result["whole"]["mean"])
    merged = merge_evaluations([back, back])  # a result read back from disk merges like a fresh one
    assert merged["fov"]["pooled"] == pytest.approx(result["fov"]["pooled"])
    rows = list(csv.DictReader((tmp_path / "metrics" / "finetuned.csv").open()))
    assert list(rows[0]) == ["protocol", "name", *METRICS]
    assert [(r["protocol"], r["name"]) for r in rows] == [(p, c[0]) for p in ("whole", "fov") for c in cases]
    assert rows[2]["auc"] == "" and float(rows[0]["dice"]) == result["whole"]["images"][0]["dice"]
