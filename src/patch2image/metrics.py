"""Segmentation metrics of one image, of pooled pixels, and the threshold that maximises Dice.

The seven metrics of the paper's tables, in :data:`METRICS` order:

- ``auc``: area under the ROC curve, ties counted half (identical to ``sklearn.metrics.roc_auc_score``);
- ``spec``, ``sens``, ``acc``, ``dice``, ``jaccard``: from the confusion counts at a threshold, a pixel
  being predicted positive where ``prob >= threshold``;
- ``auprc``: area under the precision-recall curve as **average precision**,
  ``sum_n (R_n - R_{n-1}) P_n`` over the distinct thresholds (identical to
  ``sklearn.metrics.average_precision_score``; no trapezoid, which is optimistic on PR curves).

AUC and AUPRC are computed from sorted scores per class rather than by calling scikit-learn: one
``np.sort`` per class instead of two ``argsort`` of every pixel, over ten times faster on a DRIVE
image, with the same values (the tests check them against scikit-learn).

Degenerate cases never raise: a ratio whose denominator is zero is NaN. So ``sens`` is NaN without a
positive pixel, ``spec`` without a negative one, ``dice`` and ``jaccard`` when neither the label nor the
prediction has a positive pixel, ``auc`` when either class is missing and ``auprc`` when no pixel is
positive. :func:`mean_metrics` ignores NaN values.

Pooled metrics (all pixels of all images as one set) come from a :class:`PooledScores` accumulator:
confusion counts, exact, and per-class histograms of ``logit(prob)`` for AUC and AUPRC (exact for 8-bit
and binary scores, else within about 1e-4: see :class:`PooledScores`). Both add up, so folds merge
exactly and memory stays flat even for IDRiD's 12-megapixel images.
"""

from collections.abc import Iterable

import numpy as np

METRICS = ("auc", "spec", "sens", "acc", "dice", "jaccard", "auprc")
METRIC_LABELS = {
    "auc": "AUC",
    "spec": "Spec",
    "sens": "Sens",
    "acc": "Acc",
    "dice": "Dice",
    "jaccard": "Jaccard",
    "auprc": "AUPRC",
}
"""Each metric's name in tables and figures; a new metric is a function in :func:`image_metrics`, its name in
``METRICS`` and its label here."""
COUNTS = ("tp", "fp", "fn", "tn")


def _pixels(prob, label, region=None) -> tuple[np.ndarray, np.ndarray]:
    """The scored pixels as two flat arrays (scores, bool labels); ``region`` None means every pixel."""
    prob = np.asarray(prob)
    label = np.asarray(label)
    if prob.shape != label.shape:
        raise ValueError(f"prob has shape {prob.shape} but label has shape {label.shape}")
    if not np.issubdtype(prob.dtype, np.floating):
        prob = prob.astype(np.float32)
    label = label.astype(bool, copy=False)
    if region is None:
        return prob.ravel(), label.ravel()
    region = np.asarray(region, dtype=bool)
    if region.shape != prob.shape:
        raise ValueError(f"region has shape {region.shape} but prob has shape {prob.shape}")
    return prob[region], label[region]


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else float("nan")


def confusion_counts(prob, label, region=None, threshold: float = 0.5) -> dict:
    """Confusion counts at ``threshold``: ``{"tp", "fp", "fn", "tn"}`` as ints.

    Parameters
    ----------
    prob : array of float
        Predicted probabilities; a pixel is predicted positive where ``prob >= threshold``.
    label : array of bool
        Ground truth, same shape (non-zero is positive).
    region : array of bool or None
        Pixels to score (e.g. the field of view); None scores every pixel.
    threshold : float
    """
    scores, truth = _pixels(prob, label, region)
    predicted = scores >= threshold
    tp = int(np.count_nonzero(predicted & truth))
    positives = int(np.count_nonzero(truth))
    predicted_positives = int(np.count_nonzero(predicted))
    fp = predicted_positives - tp
    fn = positives - tp
    return {"tp": tp, "fp": fp, "fn": fn, "tn": truth.size - tp - fp - fn}


def metrics_from_counts(tp: int, fp: int, fn: int, tn: int) -> dict:
    """Specificity, sensitivity, accuracy, Dice and Jaccard from confusion counts (NaN where 0/0)."""
    return {
        "spec": _ratio(tn, tn + fp),
        "sens": _ratio(tp, tp + fn),
        "acc": _ratio(tp + tn, tp + fp + fn + tn),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "jaccard": _ratio(tp, tp + fp + fn),
    }


def _ranking_areas(positive: np.ndarray, negative: np.ndarray) -> tuple[float, float]:
    """(ROC AUC, average precision) from the positive and the negative scores, each sorted ascending.

    Only the distinct positive scores matter: the ROC AUC is the Mann-Whitney statistic (a negative
    tied with a positive counts half), and average precision only steps where recall grows.
    """
    n_pos, n_neg = positive.size, negative.size
    if n_pos == 0:
        return float("nan"), float("nan")
    starts = np.flatnonzero(np.r_[True, positive[1:] != positive[:-1]])
    values = positive[starts]
    counts = np.diff(np.r_[starts, n_pos])
    neg_below = np.searchsorted(negative, values, side="left")
    neg_equal = np.searchsorted(negative, values, side="right") - neg_below
    auc = float("nan")
    if n_neg:
        auc = float((counts * (neg_below + 0.5 * neg_equal)).sum() / (float(n_pos) * n_neg))
    true_at_or_above = n_pos - starts  # positives with a score >= each distinct value
    false_at_or_above = n_neg - neg_below
    precision = true_at_or_above / (true_at_or_above + false_at_or_above)
    return auc, float((counts * precision).sum() / n_pos)


def _binned_areas(positive: np.ndarray, negative: np.ndarray) -> tuple[float, float]:
    """(ROC AUC, average precision) from per-class counts over score bins in ascending order.

    Scores in one bin are treated as tied, as :func:`_ranking_areas` treats equal scores.
    """
    positive = np.asarray(positive, dtype=np.float64)
    negative = np.asarray(negative, dtype=np.float64)
    n_pos, n_neg = positive.sum(), negative.sum()
    if n_pos == 0:
        return float("nan"), float("nan")
    auc = float("nan")
    if n_neg:
        neg_below = np.cumsum(negative) - negative
        auc = float((positive * (neg_below + 0.5 * negative)).sum() / (n_pos * n_neg))
    true_at_or_above = np.cumsum(positive[::-1])[::-1]
    false_at_or_above = np.cumsum(negative[::-1])[::-1]
    steps = positive > 0
    precision = true_at_or_above[steps] / (true_at_or_above[steps] + false_at_or_above[steps])
    return auc, float((positive[steps] * precision).sum() / n_pos)


def image_metrics(prob, label, region=None, threshold: float = 0.5) -> dict:
    """The seven metrics of one image.

    Parameters
    ----------
    prob : ndarray of float, shape (H, W)
        Predicted probabilities in [0, 1], at the label's (original) size.
    label : ndarray of bool, shape (H, W)
        Ground truth.
    region : ndarray of bool, shape (H, W), or None
        The pixels scored: the field-of-view mask for the ``fov`` protocol, None for the whole image
        (the paper's protocol).
    threshold : float, default 0.5
        A pixel is predicted positive where ``prob >= threshold``.

    Returns
    -------
    dict
        ``{metric: float}`` for every name in :data:`METRICS`. AUPRC is average precision (see the
        module docstring). NaN where undefined: ``auc`` without both classes, ``auprc`` without a
        positive pixel, a count ratio whose denominator is zero.
    """
    scores, truth = _pixels(prob, label, region)
    auc, auprc = _ranking_areas(np.sort(scores[truth]), np.sort(scores[~truth]))
    counts = confusion_counts(scores, truth, None, threshold)
    return {"auc": auc, **metrics_from_counts(**counts), "auprc": auprc}


def binary_metrics(prediction, label, region=None) -> dict:
    """The seven metrics of a binary segmentation, such as a second observer's.

    AUC and AUPRC of a 0/1 score are those of a single-point curve, as scikit-learn defines them:
    ``prediction`` is scored by :func:`image_metrics` as a probability of 0 or 1.
    """
    return image_metrics(np.asarray(prediction).astype(bool).astype(np.float32), label, region, threshold=0.5)


def mean_metrics(values: Iterable[dict]) -> dict:
    """The mean of each metric over images (the paper's aggregation), ignoring NaN values.

    A metric that is NaN (or missing, or None) for every image is NaN.
    """
    values = list(values)
    means = {}
    for name in METRICS:
        column = np.array([_float(v.get(name)) for v in values], dtype=np.float64)
        column = column[~np.isnan(column)]
        means[name] = float(column.mean()) if column.size else float("nan")
    return means


def _float(value) -> float:
    return float("nan") if value is None else float(value)


class PooledScores:
    """Accumulates what the pooled metrics need, image by image: confusion counts and score histograms.

    Spec, sens, acc, Dice and Jaccard come from the summed confusion counts, exactly. AUC and AUPRC come
    from per-class histograms of ``logit(prob)``, bins ``BIN_WIDTH`` (0.01) wide over ``LOGIT_RANGE``
    (-17, 17), the range of float32 sigmoid outputs below 1; scores beyond fall in the end bins. Scores in
    one bin count as tied, with scikit-learn's convention for ties. Hence:

    - exact for scores quantised to 8 bits (such as the saved PNG maps: neighbouring levels lie at least
      0.0157 apart in logit, so never share a bin) and for 0/1 scores (a second observer);
    - for float scores, AUC within about 1e-5 of the exact value on all pixels (ties count half, so the
      error is of second order in the bin width), AUPRC within about 1e-4, always below it (ties take the
      precision of the whole bin, a first-order error). The tests bound both.

    Histograms add up, so cross-validation folds merge exactly (``a.update(b)``) and memory does not grow
    with the number of pixels (IDRiD's test set is 330 million pixels at original size).

    Parameters
    ----------
    threshold : float or None
        The threshold of the confusion counts; None if the accumulated parts used different thresholds.
    """

    LOGIT_RANGE = (-17.0, 17.0)
    BIN_WIDTH = 0.01
    BINS = int(round((LOGIT_RANGE[1] - LOGIT_RANGE[0]) / BIN_WIDTH))

    def __init__(self, threshold: float | None = 0.5):
        self.threshold = threshold
        self.counts = dict.fromkeys(COUNTS, 0)
        self.positive = np.zeros(self.BINS, dtype=np.int64)
        self.negative = np.zeros(self.BINS, dtype=np.int64)

    @classmethod
    def bin_of(cls, prob) -> np.ndarray:
        """The histogram bin of each probability."""
        prob = np.asarray(prob, dtype=np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            logit = np.log(prob) - np.log1p(-prob)
        low, high = cls.LOGIT_RANGE
        index = np.floor((np.clip(logit, low, high) - low) / cls.BIN_WIDTH)
        return np.clip(np.nan_to_num(index, nan=0.0), 0, cls.BINS - 1).astype(np.intp)

    def add(self, prob, label, region=None) -> "PooledScores":
        """Add one image's pixels (``region`` None: all of them); returns self."""
        if self.threshold is None:
            raise ValueError("cannot add pixels to merged pooled scores whose thresholds differ")
        scores, truth = _pixels(prob, label, region)
        for key, value in confusion_counts(scores, truth, None, self.threshold).items():
            self.counts[key] += value
        bins = self.bin_of(scores)
        self.positive += np.bincount(bins[truth], minlength=self.BINS)
        self.negative += np.bincount(bins[~truth], minlength=self.BINS)
        return self

    def update(self, other: "PooledScores") -> "PooledScores":
        """Add another accumulator's pixels (another fold); returns self."""
        if self.threshold != other.threshold:
            self.threshold = None
        for key in COUNTS:
            self.counts[key] += other.counts[key]
        self.positive += other.positive
        self.negative += other.negative
        return self

    def metrics(self) -> dict:
        """The seven pooled metrics, ``{metric: float}`` in :data:`METRICS` order."""
        auc, auprc = _binned_areas(self.positive, self.negative)
        return {"auc": auc, **metrics_from_counts(**self.counts), "auprc": auprc}

    def to_dict(self) -> dict:
        """Plain data for JSON: the counts, and the histograms as sparse ``[[bin, count], ...]`` lists."""
        return {
            "threshold": self.threshold,
            "counts": dict(self.counts),
            "histogram": {
                "logit_range": list(self.LOGIT_RANGE),
                "bin_width": self.BIN_WIDTH,
                "positive": _sparse(self.positive),
                "negative": _sparse(self.negative),
            },
        }

    @classmethod
    def from_dict(cls, data: dict) -> "PooledScores":
        histogram = data["histogram"]
        if list(histogram["logit_range"]) != list(cls.LOGIT_RANGE) or histogram["bin_width"] != cls.BIN_WIDTH:
            raise ValueError(f"pooled histogram bins {histogram['logit_range']}/{histogram['bin_width']} differ")
        pooled = cls(data["threshold"])
        pooled.counts = {key: int(data["counts"][key]) for key in COUNTS}
        for name in ("positive", "negative"):
            pairs = np.asarray(histogram[name], dtype=np.int64).reshape(-1, 2)
            getattr(pooled, name)[pairs[:, 0]] = pairs[:, 1]
        return pooled


def _sparse(counts: np.ndarray) -> list:
    index = np.flatnonzero(counts)
    return np.stack([index, counts[index]], axis=1).tolist()


def pooled_metrics(probs, labels, regions=None, threshold: float = 0.5) -> dict:
    """The seven metrics over all pixels of all images taken as one set.

    Parameters
    ----------
    probs, labels : iterables of arrays
        Per image, as :func:`image_metrics` takes them; sizes may differ between images.
    regions : iterable of bool arrays or None
        Per image, the pixels scored; None scores every pixel of every image.
    threshold : float, default 0.5

    Returns
    -------
    dict
        ``{metric: float}``. Spec, sens, acc, Dice and Jaccard are exact; AUC and AUPRC come from score
        histograms, exact for 8-bit or binary scores, else within about 1e-4 (see :class:`PooledScores`).
    """
    pooled = PooledScores(threshold)
    regions = [None] * len(probs) if regions is None else regions
    for prob, label, region in zip(probs, labels, regions, strict=True):
        pooled.add(prob, label, region)
    return pooled.metrics()


def best_dice_threshold(probs, labels, regions=None) -> float:
    """The threshold that maximises the pooled Dice over the given (validation) images.

    Every distinct score is tried, exactly. The threshold returned lies halfway between the best score
    and the next lower one, so ``prob >= threshold`` selects the same pixels on these images and is not
    sensitive to rounding. Ties go to the highest threshold.

    Parameters
    ----------
    probs, labels, regions : as :func:`pooled_metrics` takes them.

    Returns
    -------
    float
        The threshold; 0.5 if no pixel is positive (Dice is then undefined at every threshold).
    """
    regions = [None] * len(probs) if regions is None else regions
    positive, negative = [], []
    for prob, label, region in zip(probs, labels, regions, strict=True):
        scores, truth = _pixels(prob, label, region)
        positive.append(scores[truth])
        negative.append(scores[~truth])
    positive = np.sort(np.concatenate(positive)) if positive else np.zeros(0)
    negative = np.sort(np.concatenate(negative)) if negative else np.zeros(0)
    if positive.size == 0:
        return 0.5
    starts = np.flatnonzero(np.r_[True, positive[1:] != positive[:-1]])
    values = positive[starts]
    # Dice only rises where a positive pixel enters, so the distinct positive scores are the candidates.
    true_at_or_above = positive.size - starts
    false_at_or_above = negative.size - np.searchsorted(negative, values, side="left")
    dice = 2 * true_at_or_above / (positive.size + true_at_or_above + false_at_or_above)
    best = len(values) - 1 - int(np.argmax(dice[::-1]))  # the last maximum: the highest threshold
    chosen = float(values[best])
    lower = [float(values[best - 1])] if best > 0 else []
    below = np.searchsorted(negative, values[best], side="left")
    if below:
        lower.append(float(negative[below - 1]))
    return (chosen + max(lower)) / 2 if lower else chosen
