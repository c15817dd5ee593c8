"""Pre-processing: grey, CLAHE, gamma, rescaling, resizing."""

import numpy as np
import pytest
from skimage.data import retina

from patch2image.errors import UserError
from patch2image.preprocessing import (
    Preprocessing,
    extend_past_field_of_view,
    resize,
    resize_label,
    round_to_multiple,
)


@pytest.fixture(scope="module")
def photo():
    return np.ascontiguousarray(retina()[::2, ::2])


def test_output_is_grey_in_unit_range(photo):
    grey = Preprocessing()(photo)
    assert grey.shape == photo.shape[:2] and grey.dtype == np.float32
    assert grey.min() == 0 and grey.max() == 1


def test_opencv_clahe_is_close_to_scikit_images(photo):
    fast = Preprocessing(clahe="opencv")(photo)
    reference = Preprocessing(clahe="skimage")(photo)
    assert np.abs(fast - reference).mean() < 0.05
    assert np.corrcoef(fast.ravel(), reference.ravel())[0, 1] > 0.97


def test_the_order_is_configurable_and_matters(photo):
    code = Preprocessing(order="clahe-gamma")(photo)
    text = Preprocessing(order="gamma-clahe")(photo)
    assert not np.allclose(code, text)


def test_gamma_darkens_mid_tones():
    rgb = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (64, 1, 3))
    grey = Preprocessing(order="clahe-gamma", gamma=1.7)(rgb)
    flat = Preprocessing(order="clahe-gamma", gamma=1.0)(rgb)
    assert grey.mean() < flat.mean()


def test_green_channel_is_the_green_channel_processed_as_grey(photo):
    green = Preprocessing(channel="green")(photo)
    grey_green = Preprocessing()(np.repeat(photo[..., 1:2], 3, axis=2))  # luma of (g, g, g) is g
    assert np.abs(green - grey_green).mean() < 1e-3
    assert np.abs(green - Preprocessing()(photo)).mean() > 0.01
    with pytest.raises(UserError, match="preprocessing.channel"):
        Preprocessing(channel="red")


@pytest.mark.parametrize("settings", [{}, {"order": "gamma-clahe", "gamma": 1.2}, {"clahe": "skimage"}])
def test_rgb_is_each_colour_channel_processed_as_the_green_one_is(photo, settings):
    colour = Preprocessing(channel="rgb", **settings)(photo)
    assert colour.shape == (3, *photo.shape[:2]) and colour.dtype == np.float32
    assert Preprocessing(channel="rgb").channels == 3 and Preprocessing(channel="green").channels == 1
    for c in range(3):
        order = [0, 1, 2]
        order[1], order[c] = c, 1  # channel c where green was: the same values, so the same first rescaling
        expected = Preprocessing(channel="green", **settings)(np.ascontiguousarray(photo[..., order]))
        np.testing.assert_array_equal(colour[c], expected)
    assert np.abs(colour[0] - colour[1]).mean() > 0.01  # the channels differ: each was enhanced on its own


def test_unknown_order_is_refused():
    with pytest.raises(UserError, match="order"):
        Preprocessing(order="gamma-only")


def test_resize_and_back(photo):
    small = resize(photo, (284, 428))
    assert small.shape == (284, 428, 3)
    prob = resize(np.random.default_rng(0).random((284, 428), dtype=np.float32), photo.shape[:2])
    assert prob.shape == photo.shape[:2]


def test_labels_are_binarised_after_resizing():
    label = np.zeros((100, 100), bool)
    label[40:60, 40:60] = True
    small = resize_label(label, (50, 50))
    assert small.dtype == bool and small.sum() == 100


def test_sizes_round_to_multiples_of_4():
    assert round_to_multiple((584, 565)) == (584, 564)
    assert round_to_multiple((1.0, 7)) == (4, 8)


def test_extending_past_the_field_of_view_removes_the_rim_and_keeps_the_retina():
    rows, cols = np.mgrid[:120, :160]
    fov = (rows - 60) ** 2 + (cols - 80) ** 2 <= 50**2
    rgb = np.zeros((120, 160, 3), np.uint8)
    rgb[fov] = np.random.default_rng(0).integers(140, 180, (fov.sum(), 3))
    rgb[55:65, 30:130] = 60  # a dark vessel across the whole field of view, to its edge
    extended = extend_past_field_of_view(rgb, fov)
    inside = (rows - 60) ** 2 + (cols - 80) ** 2 <= 47**2
    assert np.array_equal(extended[inside], rgb[inside].astype(np.float32))
    ring = ((rows - 60) ** 2 + (cols - 80) ** 2 > 52**2) & ((rows - 60) ** 2 + (cols - 80) ** 2 <= 60**2)
    away_from_vessel = ring & ((rows < 45) | (rows > 75))
    assert 130 < extended[away_from_vessel].mean() < 190  # the retina's level, not the black surround
    grey = Preprocessing(extend_fov=True)(rgb, fov)
    assert grey.shape == (120, 160) and 0 <= grey.min() and grey.max() <= 1
    assert Preprocessing(extend_fov=True)(rgb).shape == (120, 160)  # the mask found when not given
