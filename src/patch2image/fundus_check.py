"""Does a photograph look like a fundus photograph? A warning for the user, never a refusal.

A fundus camera images the retina as a round, reddish field on a dark surround. The rule
(:data:`RULE`) asks for both, on the field-of-view mask the segmentation computes anyway:

- a field of view found: it covers between 30% and 90% of the image, is convex (solidity, its area
  over its convex hull's, at least 0.9) and round (its area over that of its smallest enclosing circle,
  cut by the frame, at least 0.8), and the surround is dark (its median brightness at most 0.35 of
  the field's);
- colour: at least 60% of the field's pixels are warm (red the largest channel, blue the smallest).

Measured by ``benchmarks/fundus_check.py`` on every photograph of DRIVE, STARE, CHASE_DB1, IDRiD and
LES-AV (191) and on 18 non-fundus images scikit-image ships; the figures, and those of the optic disc
and vessel features that were measured and left out because fundus and non-fundus photographs overlap
on them, are in docs/fundus_check.md. A crop inside the eye (no dark surround) is warned about too:
the warning says what was not found, and the segmentation goes on.
"""

from dataclasses import dataclass

import cv2
import numpy as np

WORK_SIDE = 512
"""The features are measured on a copy whose longer side is this many pixels."""

RULE = {
    "fov_share": (0.30, 0.90),
    "fov_solidity": (0.90, None),
    "fov_roundness": (0.80, None),
    "surround_level": (None, 0.35),
    "warm_share": (0.60, None),
}
"""feature: (least, most) a fundus photograph has; the figures behind them are in docs/fundus_check.md."""

_SAYS = {
    "fov_share": "it covers {value:.0%} of the image",
    "fov_solidity": "its outline is ragged",
    "fov_roundness": "it is not round",
    "surround_level": "the surround is not dark",
    "warm_share": "{value:.0%} of it has the retina's red-orange colour",
}


@dataclass(frozen=True)
class FundusCheck:
    """The features of one photograph and what the rule says of them."""

    features: dict[str, float]
    reasons: tuple[str, ...]

    @property
    def looks_like_fundus(self) -> bool:
        return not self.reasons

    @property
    def warning(self) -> str | None:
        """One line for the user, or None when the photograph looks like a fundus photograph."""
        if self.looks_like_fundus:
            return None
        reasons = "; ".join(self.reasons)
        return f"does not look like a fundus photograph ({reasons}); its segmentation may mean nothing"


def check_photograph(rgb: np.ndarray, fov: np.ndarray | None = None) -> FundusCheck:
    """The check of an (H, W, 3) uint8 RGB photograph; ``fov``: its field-of-view mask, when already found."""
    features = measure(rgb, fov)
    failed = {
        name: _SAYS[name].format(value=features[name])
        for name, (least, most) in RULE.items()
        if (least is not None and features[name] < least) or (most is not None and features[name] > most)
    }
    reasons = []
    field = [says for name, says in failed.items() if name != "warm_share"]
    if field:
        reasons.append(f"no round field of view on a dark surround: {', '.join(field)}")
    if "warm_share" in failed:
        reasons.append(f"not the retina's colour: {failed['warm_share']}")
    return FundusCheck(features, tuple(reasons))


def measure(rgb: np.ndarray, fov: np.ndarray | None = None) -> dict[str, float]:
    """The rule's features, each rounded to 4 decimal places."""
    small, fov = work_copy(rgb, fov)
    brightest = small.max(axis=2)
    red, green, blue = (small[..., c].astype(np.int16) for c in range(3))
    warm = (red >= green) & (green >= blue) & (red > blue + 8)
    inside = fov & (brightest > 10)  # the field's own dark rim has no colour to judge
    features = {
        "fov_share": float(fov.mean()),
        "fov_solidity": _solidity(fov),
        "fov_roundness": _roundness(fov),
        "surround_level": _surround_level(brightest, fov),
        "warm_share": float(warm[inside].mean()) if inside.any() else 0.0,
    }
    return {name: round(value, 4) for name, value in features.items()}


def work_copy(rgb: np.ndarray, fov: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The photograph and its field-of-view mask, resized to ``WORK_SIDE`` pixels on the longer side."""
    from patch2image.data import field_of_view_mask

    height, width = rgb.shape[:2]
    scale = WORK_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    fov = field_of_view_mask(rgb) if fov is None else fov
    small_fov = cv2.resize(fov.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return small, small_fov


def _largest_outline(fov: np.ndarray):
    contours, _ = cv2.findContours(fov.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return max(contours, key=cv2.contourArea) if contours else None


def _solidity(fov: np.ndarray) -> float:
    outline = _largest_outline(fov)
    hull = cv2.contourArea(cv2.convexHull(outline)) if outline is not None else 0.0
    return min(1.0, float(fov.sum() / hull)) if hull > 0 else 0.0


def _roundness(fov: np.ndarray) -> float:
    outline = _largest_outline(fov)
    if outline is None:
        return 0.0
    (x, y), radius = cv2.minEnclosingCircle(outline)
    circle = np.zeros(fov.shape, np.uint8)
    cv2.circle(circle, (round(x), round(y)), round(radius), 1, -1)
    return min(1.0, float(fov.sum() / max(1, circle.sum())))


def _surround_level(brightest: np.ndarray, fov: np.ndarray) -> float:
    if fov.all():
        return 1.0
    return float(np.median(brightest[~fov]) / max(1.0, float(np.median(brightest[fov]))))


class Probabilities(np.ndarray):
    """(H, W) float32 probabilities, as :class:`patch2image.inference.Segmenter` returns them, with
    ``fundus``: the :class:`FundusCheck` of the photograph they were computed from (None: not checked)."""

    fundus: FundusCheck | None = None

    def __array_finalize__(self, obj) -> None:
        self.fundus = getattr(obj, "fundus", None)

    @property
    def looks_like_fundus(self) -> bool:
        return self.fundus is None or self.fundus.looks_like_fundus


def with_check(prob: np.ndarray, check: FundusCheck) -> Probabilities:
    flagged = prob.view(Probabilities)
    flagged.fundus = check
    return flagged
