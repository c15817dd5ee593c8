"""After the network: one post-processing for the Python API, ``patch2image segment`` and the web page.

1. The probabilities are resized back to the photograph's size and kept within [0, 1].
2. They are set to 0 outside the photograph's field of view, where there is no retina to find vessels
   in (``inside_fov``; a photograph without a dark surround is left as it is).
3. The mask is ``probability >= threshold``; for the optic disc, only its largest 8-connected region
   (``largest_region``: the disc is one region, specks are not).

And the images every front end writes from them: the probability map as PNG grey levels, the
overlay, and the disc's measurement.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from patch2image.parameters import THRESHOLD, check
from patch2image.preprocessing import resize

OVERLAY_COLOURS = {"vessels": np.array([0, 255, 0], np.float32), "optic_disc": np.array([255, 200, 0], np.float32)}
"""RGB tint of the segmented pixels: green vessels, an amber optic disc."""
OVERLAY_ALPHA = 0.6


@dataclass(frozen=True)
class Postprocessing:
    """What is done to the network's probabilities of one photograph, and how its mask is drawn from them."""

    task: str = "vessels"
    inside_fov: bool = True  # clear everything outside the photograph's field of view (its dark surround)
    largest_region: bool = True  # optic disc: keep the largest connected region of the mask

    def probabilities(self, prob: np.ndarray, fov: np.ndarray) -> np.ndarray:
        """Probabilities at the network's working size -> (H, W) float32 at the size of ``fov``, the photograph's
        field-of-view mask."""
        prob = np.clip(resize(prob, fov.shape), 0, 1).astype(np.float32, copy=False)
        return inside_field_of_view(prob, fov) if self.inside_fov else prob

    def mask(self, prob: np.ndarray, threshold: float) -> np.ndarray:
        """(H, W) bool: the vessels (or the optic disc) where ``prob >= threshold``."""
        check({"threshold": THRESHOLD}, {"threshold": threshold})
        mask = prob >= threshold
        if self.task == "optic_disc" and self.largest_region:
            mask = largest_region(mask)
        return mask


def inside_field_of_view(prob: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """``prob`` set to 0 outside ``fov``; a photograph without a dark surround (all True) is left as it is."""
    return prob if fov.all() else np.where(fov, prob, 0).astype(prob.dtype, copy=False)


def largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected region of a binary mask."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def probability_png(prob: np.ndarray, bits: int = 16) -> np.ndarray:
    """Probabilities as PNG grey levels: 16 bits (value / 65535) keep the ranking of faint vessels,
    which 8 bits (value / 255, for viewing) would tie with the background below 1/510."""
    top = 65535 if bits == 16 else 255
    return np.round(np.clip(prob, 0, 1) * top).astype(np.uint16 if bits == 16 else np.uint8)


def overlay(rgb: np.ndarray, mask: np.ndarray, task: str = "vessels") -> np.ndarray:
    """The photograph with the segmented pixels tinted in the task's colour (``OVERLAY_COLOURS``)."""
    # One 256-entry table per channel: no float copy of a possibly 12-megapixel photograph.
    levels = np.arange(256, dtype=np.float32)[None, :]
    colour = OVERLAY_COLOURS[task][:, None]
    tables = np.round((1 - OVERLAY_ALPHA) * levels + OVERLAY_ALPHA * colour).astype(np.uint8)
    result = rgb.copy()
    result[mask] = tables[np.arange(3), rgb[mask]]
    return result


def disc_measurement(mask: np.ndarray) -> dict:
    """Centroid (x, y) and equivalent diameter of the segmented disc, in pixels; empty values without one."""
    rows, cols = np.nonzero(mask)
    if not len(rows):
        return {"centre_x": "", "centre_y": "", "diameter": ""}
    diameter = 2 * np.sqrt(len(rows) / np.pi)
    return {"centre_x": round(float(cols.mean()), 1), "centre_y": round(float(rows.mean()), 1),
            "diameter": round(float(diameter), 1)}  # fmt: skip
