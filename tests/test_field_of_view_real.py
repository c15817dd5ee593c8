"""Computed field-of-view masks on the real datasets: they hold the labelled pixels and match the references.

Every image of DRIVE (computed masks, not the official ones), STARE (labels-ah), CHASE_DB1 (first
observer) and IDRiD (optic disc). The labels run past the retina in places: the first observer's
vessels on CHASE_DB1 images 01-09 end up to 12 pixels out, in the black surround or on the
outer foot of the rim's step, and DRIVE's and IDRiD's by 1-5 pixels. So the 99.9% is of labelled
pixels inside the mask or less than 1% of the field's width outside it (9 pixels on CHASE_DB1,
5 on DRIVE), and a floor holds the labelled pixels strictly inside. Measured: the worst images hold
99.89% (DRIVE 08), 99.99% (STARE im0004), 99.36% (CHASE_DB1 Image_06L) and 99.84% (IDRiD_10)
strictly inside, and all but 0.1% of each image's labelled pixels lie within 5.4 pixels of the mask
(Image_06L). Before the dim rim was traced, Image_06L held 97.05%, with 0.1% of its labelled pixels
25 pixels out, in a dark crescent of the retina.
"""

import numpy as np
import pytest
from scipy import ndimage as ndi

from patch2image.data import field_of_view_mask, fov_diameter, load_sample, open_dataset, read_mask

FOLDERS = {"drive": "DRIVE", "stare": "STARE", "chase_db1": "CHASE_DB1", "idrid": "IDRiD"}
SHARE = 0.999  # of labelled pixels inside the mask or within the tolerance of it
TOLERANCE = 0.01  # share of the field of view's width
STRICTLY_INSIDE = {"drive": 0.998, "stare": 0.998, "chase_db1": 0.992, "idrid": 0.998}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _computed_masks(datasets, kind: str):
    """(name, image, label, computed mask, official mask or None) for every image of a dataset."""
    cases = open_dataset(datasets / FOLDERS[kind], kind).files("all")
    assert cases, f"no {kind} images under {datasets / FOLDERS[kind]}"
    for case in cases:
        sample = load_sample(case)
        if kind == "drive":
            assert sample.fov_source == "dataset"
            yield case.name, sample.image, sample.label, field_of_view_mask(sample.image), sample.fov
        else:
            assert sample.fov_source.startswith("computed: ")
            yield case.name, sample.image, sample.label, sample.fov, None


def _coverage(label: np.ndarray, mask: np.ndarray, tolerance: float) -> tuple[float, float]:
    """Shares of labelled pixels inside ``mask``, and inside it or at most ``tolerance`` pixels outside."""
    outside = label & ~mask
    total = int(label.sum())
    if not outside.any():
        return 1.0, 1.0
    # distances only around the labelled pixels outside: the whole of an IDRiD image takes a second
    pad = int(np.ceil(tolerance)) + 1
    rows, cols = np.nonzero(outside)
    y0, y1 = max(0, rows.min() - pad), min(mask.shape[0], rows.max() + pad + 1)
    x0, x1 = max(0, cols.min() - pad), min(mask.shape[1], cols.max() + pad + 1)
    distance = ndi.distance_transform_edt(~mask[y0:y1, x0:x1])
    far = int((outside[y0:y1, x0:x1] & (distance > tolerance)).sum())
    return 1 - outside.sum() / total, 1 - far / total


@pytest.mark.parametrize("kind", list(FOLDERS))
def test_computed_mask_holds_the_labelled_pixels(datasets, kind):
    failures = []
    for name, _, label, mask, _ in _computed_masks(datasets, kind):
        assert mask.shape == label.shape and mask.dtype == bool
        tolerance = TOLERANCE * fov_diameter(mask)
        inside, near = _coverage(label, mask, tolerance)
        if near < SHARE or inside < STRICTLY_INSIDE[kind]:
            failures.append(f"{name}: {inside:.4%} inside, {near:.4%} within {tolerance:.1f} px")
    assert not failures, f"{kind}: labelled pixels left out of the computed mask: " + "; ".join(failures)


def test_computed_mask_matches_drive_official_masks(datasets):
    ious = {name: _iou(mask, official) for name, _, _, mask, official in _computed_masks(datasets, "drive")}
    assert len(ious) == 40
    low = {name: round(iou, 4) for name, iou in ious.items() if iou < 0.98}
    assert not low, f"IoU with DRIVE's official masks below 0.98: {low}"
    assert np.mean(list(ious.values())) >= 0.99


def test_computed_mask_matches_stare_vgan_masks(datasets):
    ious = {}
    for case in open_dataset(datasets / "STARE", "stare").files("all"):
        sample = load_sample(case)
        ious[case.name] = _iou(sample.fov, read_mask(datasets / "STARE" / "vgan_fov_masks" / case.image.name))
    assert len(ious) == 20
    low = {name: round(iou, 4) for name, iou in ious.items() if iou < 0.98}
    assert not low, f"IoU with STARE's V-GAN masks below 0.98: {low}"
    assert np.mean(list(ious.values())) >= 0.99


def test_dim_rim_is_traced():
    """A disc whose rim fades to 8% of the range over a quarter of its edge (CHASE_DB1's dark crescents)."""
    rng = np.random.default_rng(0)
    height, width, radius = 800, 820, 300
    y, x = np.mgrid[:height, :width]
    r = np.hypot(x - width / 2, y - height / 2)
    angle = np.arctan2(y - height / 2, x - width / 2)
    disc = r <= radius
    dim = np.clip(1.5 - np.abs(angle + np.pi / 3) / 0.8, 0, 1)  # 1 within 23 degrees of -60 degrees
    fade = np.sqrt(np.clip((r - 0.6 * radius) / (0.4 * radius), 0, 1))
    red = np.where(disc, 180 * (1 - (0.3 + 0.62 * dim) * fade), 0) + rng.normal(0, 2, disc.shape)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = np.clip(red, 0, 255).astype(np.uint8)
    rgb[..., 1] = rgb[..., 0] // 3

    mask = field_of_view_mask(rgb)
    dim_rim = disc & (dim > 0.5) & (r > 0.9 * radius)
    assert (mask & dim_rim).sum() / dim_rim.sum() > 0.97
    assert _iou(mask, disc) > 0.99
