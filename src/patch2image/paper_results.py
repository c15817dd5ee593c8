"""The paper's published figures (arXiv 1904.03892, Tables 1-4), as plain data.

All are whole-image scores at threshold 0.5, averaged over the test images (the ``whole`` protocol and
the ``mean`` aggregation of :mod:`patch2image.evaluation`).

``PAPER[dataset][network][row]`` is ``{metric: value}``; a metric or a row the paper does not report is
absent. Datasets: ``drive``, ``stare``, ``chase_db1``, ``idrid``; networks: ``light``, ``mini-unet``,
``dense``; rows: ``patch``, ``frozen``, ``finetuned``, ``scratch``.
"""

from patch2image.metrics import METRICS

ROWS = ("patch", "frozen", "finetuned", "scratch")
ROW_LABELS = {"patch": "Patch", "frozen": "Image/Frozen", "finetuned": "Image/Fine-tuned", "scratch": "Image/Scratch"}
TABLES = {"drive": "Table 1", "stare": "Table 2", "chase_db1": "Table 3", "idrid": "Table 4"}


def _row(*values: float) -> dict:
    return dict(zip(METRICS, values, strict=True))


PAPER: dict[str, dict[str, dict[str, dict[str, float]]]] = {
    "drive": {
        "light": {
            "patch": _row(0.9811, 0.9806, 0.7996, 0.9646, 0.7970, 0.6629, 0.8861),
            "frozen": _row(0.9800, 0.9781, 0.8113, 0.9634, 0.7939, 0.6586, 0.8798),
            "finetuned": _row(0.9808, 0.9772, 0.8187, 0.9632, 0.7949, 0.6600, 0.8822),
            "scratch": _row(0.9764, 0.9791, 0.7808, 0.9616, 0.7797, 0.6393, 0.8646),
        },
        "mini-unet": {
            "patch": _row(0.9865, 0.9805, 0.8415, 0.9682, 0.8218, 0.6978, 0.9096),
            "frozen": _row(0.9864, 0.9778, 0.8586, 0.9673, 0.8204, 0.6957, 0.9097),
            "finetuned": _row(0.9866, 0.9822, 0.8342, 0.9691, 0.8246, 0.7017, 0.9114),
            "scratch": _row(0.9851, 0.9813, 0.8273, 0.9676, 0.8164, 0.6900, 0.9045),
        },
        "dense": {
            "patch": _row(0.9874, 0.9816, 0.8398, 0.9690, 0.8252, 0.7026, 0.9136),
            "frozen": _row(0.9869, 0.9798, 0.8494, 0.9683, 0.8235, 0.7001, 0.9112),
            "finetuned": _row(0.9870, 0.9830, 0.8277, 0.9693, 0.8242, 0.7013, 0.9129),
            "scratch": _row(0.9852, 0.9834, 0.8134, 0.9684, 0.8174, 0.6914, 0.9047),
        },
    },
    "stare": {
        "light": {"finetuned": _row(0.9777, 0.9813, 0.7434, 0.9636, 0.7499, 0.6037, 0.8424)},
        "mini-unet": {"finetuned": _row(0.9867, 0.9865, 0.7955, 0.9723, 0.8083, 0.6805, 0.8966)},
        "dense": {"finetuned": _row(0.9869, 0.9844, 0.8152, 0.9718, 0.8100, 0.6827, 0.9033)},
    },
    "chase_db1": {
        "light": {"finetuned": _row(0.9780, 0.9819, 0.7535, 0.9659, 0.7530, 0.6049, 0.8307)},
        "mini-unet": {"finetuned": _row(0.9875, 0.9861, 0.8117, 0.9737, 0.8093, 0.6804, 0.8923)},
        "dense": {"finetuned": _row(0.9878, 0.9869, 0.8016, 0.9737, 0.8068, 0.6768, 0.8935)},
    },
    "idrid": {
        "light": {
            "patch": {"jaccard": 0.6413},
            "frozen": {"jaccard": 0.5463},
            "finetuned": {"jaccard": 0.7898},
            "scratch": {"jaccard": 0.7498},
        },
        "mini-unet": {
            "patch": {"jaccard": 0.9035},
            "frozen": {"jaccard": 0.8551},
            "finetuned": {"jaccard": 0.9216},
            "scratch": {"jaccard": 0.8720},
        },
        "dense": {
            "patch": {"jaccard": 0.9233},
            "frozen": {"jaccard": 0.9337},
            "finetuned": {"jaccard": 0.9390},
            "scratch": {"jaccard": 0.7678},
        },
    },
}

# IDRiD optic-disc challenge: the best entry's Jaccard, the reference Table 4 compares with.
IDRID_CHALLENGE_BEST_JACCARD = 0.9338


def paper_value(dataset: str, network: str, row: str, metric: str) -> float | None:
    """The paper's figure, or None where the paper does not report it."""
    return PAPER.get(dataset, {}).get(network, {}).get(row, {}).get(metric)
