"""The paper's published figures (arXiv 1904.03892, Tables 1-4), as plain data.

The tables' figures are whole-image scores at threshold 0.5, averaged over the test images (the
``whole`` protocol and the ``mean`` aggregation of :mod:`patch2image.evaluation`): DRIVE on its test
set (Table 1), STARE over 5 cross-validation folds (Table 2), CHASE_DB1 over 4 (Table 3), IDRiD's
optic disc on its test set (Table 4).

``PAPER[dataset][network][row]`` is ``{metric: value}``; a metric or a row the paper does not report is
absent. Datasets: ``drive``, ``stare``, ``chase_db1``, ``idrid``; networks: ``light``, ``mini-unet``,
``dense``; rows: ``patch``, ``frozen``, ``finetuned``, ``scratch``. Tables 1-3 give all seven metrics
for every network and row; Table 4 gives the Jaccard index only.

Besides its own results the paper quotes the IDRiD optic-disc challenge's best entry
(:data:`IDRID_CHALLENGE_BEST_JACCARD`) and other methods' figures on STARE and CHASE_DB1
(:data:`PUBLISHED_COMPARISONS`).
"""

from typing import NamedTuple

TABLES = {"drive": "Table 1", "stare": "Table 2", "chase_db1": "Table 3", "idrid": "Table 4"}
TABLE_COLUMNS = ("auc", "spec", "sens", "acc", "dice", "jaccard", "auprc")
"""The metrics of Tables 1-3, in the paper's column order (names as :data:`patch2image.metrics.METRICS`'s): the
figures are keyed by name, so a metric added to the package is simply absent from the paper's rows."""


def _row(*values: float) -> dict:
    return dict(zip(TABLE_COLUMNS, values, strict=True))


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
        "light": {
            "patch": _row(0.9780, 0.9833, 0.7259, 0.9643, 0.7456, 0.6000, 0.8502),
            "frozen": _row(0.9743, 0.9800, 0.7379, 0.9619, 0.7405, 0.5913, 0.8268),
            "finetuned": _row(0.9777, 0.9813, 0.7434, 0.9636, 0.7499, 0.6037, 0.8424),
            "scratch": _row(0.9714, 0.9762, 0.7257, 0.9576, 0.7181, 0.5642, 0.8067),
        },
        "mini-unet": {
            "patch": _row(0.9854, 0.9861, 0.7731, 0.9702, 0.7914, 0.6579, 0.8929),
            "frozen": _row(0.9817, 0.9844, 0.7858, 0.9694, 0.7913, 0.6570, 0.8757),
            "finetuned": _row(0.9867, 0.9865, 0.7955, 0.9723, 0.8083, 0.6805, 0.8966),
            "scratch": _row(0.9856, 0.9842, 0.7956, 0.9699, 0.7993, 0.6676, 0.8897),
        },
        "dense": {
            "patch": _row(0.9849, 0.9868, 0.7695, 0.9705, 0.7929, 0.6682, 0.8969),
            "frozen": _row(0.9831, 0.9852, 0.7907, 0.9704, 0.7991, 0.6607, 0.8782),
            "finetuned": _row(0.9869, 0.9844, 0.8152, 0.9718, 0.8100, 0.6827, 0.9033),
            "scratch": _row(0.9836, 0.9854, 0.7792, 0.9702, 0.7915, 0.6588, 0.8863),
        },
    },
    "chase_db1": {
        "light": {
            "patch": _row(0.9775, 0.9834, 0.7350, 0.9660, 0.7490, 0.5997, 0.8332),
            "frozen": _row(0.9751, 0.9797, 0.7498, 0.9636, 0.7403, 0.5888, 0.8126),
            "finetuned": _row(0.9780, 0.9819, 0.7535, 0.9659, 0.7530, 0.6049, 0.8307),
            "scratch": _row(0.9743, 0.9790, 0.7444, 0.9625, 0.7330, 0.5793, 0.8063),
        },
        "mini-unet": {
            "patch": _row(0.9849, 0.9867, 0.7761, 0.9719, 0.7916, 0.6558, 0.8785),
            "frozen": _row(0.9837, 0.9829, 0.8072, 0.9705, 0.7898, 0.6535, 0.8678),
            "finetuned": _row(0.9875, 0.9861, 0.8117, 0.9737, 0.8093, 0.6804, 0.8923),
            "scratch": _row(0.9876, 0.9851, 0.8158, 0.9733, 0.8080, 0.6785, 0.8897),
        },
        "dense": {
            "patch": _row(0.9863, 0.9888, 0.7556, 0.9723, 0.7892, 0.6524, 0.8851),
            "frozen": _row(0.9834, 0.9868, 0.7653, 0.9711, 0.7839, 0.6453, 0.8708),
            "finetuned": _row(0.9878, 0.9869, 0.8016, 0.9737, 0.8068, 0.6768, 0.8935),
            "scratch": _row(0.9857, 0.9861, 0.7968, 0.9726, 0.7999, 0.6671, 0.8849),
        },
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


class Comparison(NamedTuple):
    """Another method's published figure, as the paper quotes it."""

    method: str
    metric: str  # one of METRICS
    value: float
    note: str = ""  # how it differs from the whole-image protocol, if it does


# The other methods' figures the paper lists beside its own, per dataset (whole image unless ``note`` says).
PUBLISHED_COMPARISONS: dict[str, tuple[Comparison, ...]] = {
    "stare": (
        Comparison("Liskowski and Krawiec 2016", "auc", 0.9928, "FOV patches only"),
        Comparison("Oliveira et al. 2018", "auc", 0.9905),
        Comparison("Maninis et al. 2016", "dice", 0.8310, "one random 10/10 split"),
    ),
    "chase_db1": (
        Comparison("Oliveira et al. 2018", "auc", 0.9855),
        Comparison("Mo and Zhang 2017", "auc", 0.9812),
    ),
}


def paper_value(dataset: str, network: str, row: str, metric: str) -> float | None:
    """The paper's figure, or None where the paper does not report it."""
    return PAPER.get(dataset, {}).get(network, {}).get(row, {}).get(metric)
