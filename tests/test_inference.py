"""Image mode (one pass and tiles), patch mode, and the scale rule for photographs."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from patch2image.errors import UserError
from patch2image.inference import (
    Segmenter,
    predict_image,
    predict_patches,
    tile_starts,
    working_size,
)
from patch2image.networks import create_network


def smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width] / 40.0
    image = 0.5 + 0.3 * np.sin(x + 2 * rng.random()) * np.cos(y) + 0.2 * rng.random((height, width))
    return image.astype(np.float32)


class Amplified(nn.Module):
    """A random-init network whose logits are standardised by constants fixed once, on a test image.

    Random-init networks give probabilities within 0.01 of 0.5, where any comparison would pass; these
    spread over (0, 1). The constants stay fixed afterwards, so the model is an ordinary FCN.
    """

    def __init__(self, name: str):
        super().__init__()
        torch.manual_seed(0)
        self.network = create_network(name).eval()
        with torch.no_grad():
            logits = self.network(torch.from_numpy(smooth_image(64, 64))[None, None])
        self.offset, self.gain = float(logits.mean()), 2 / float(logits.std())

    def forward(self, x):
        return (self.network(x) - self.offset) * self.gain


class Identity:
    """A probability runner that returns its input: any correct averaging gives the image back."""

    def probabilities(self, x):
        return x.copy()


@pytest.fixture(scope="module")
def light():
    return Amplified("light").eval()


@pytest.mark.parametrize("shape", [(37, 53), (5, 7), (1, 9), (64, 64)])
def test_image_mode_keeps_size_and_range(light, shape):
    prob = predict_image(light, smooth_image(*shape))
    assert prob.shape == shape and prob.dtype == np.float32
    assert 0 <= prob.min() and prob.max() <= 1


def test_image_mode_spreads_probabilities(light):
    prob = predict_image(light, smooth_image(64, 80))
    assert prob.std() > 0.05  # otherwise the comparisons below would prove nothing


@pytest.mark.parametrize(
    ("name", "shape", "tile", "overlap"),
    [("light", (300, 262), 176, 88), ("light", (203, 517), 184, 92), ("mini-unet", (420, 380), 352, 160)],
)
def test_tiles_equal_one_pass(name, shape, tile, overlap):
    # Tile margins (overlap / 4) cover the receptive field (Light 21 px, Mini-Unet 40 px): exact.
    model = Amplified(name).eval()
    grey = smooth_image(*shape)
    whole = predict_image(model, grey)
    tiled = predict_image(model, grey, tile=tile, overlap=overlap)
    assert np.abs(whole - tiled).max() < 1e-4


def test_tiles_with_tta_equal_one_pass(light):
    grey = smooth_image(200, 300)
    whole = predict_image(light, grey, tta=True)
    assert np.abs(whole - predict_image(light, grey)).max() > 1e-3  # the flip changes something
    assert np.abs(whole - predict_image(light, grey, tile=176, overlap=88, tta=True)).max() < 1e-4


def test_tta_is_the_mean_over_the_image_and_its_three_flips(light):
    grey = smooth_image(96, 128)
    flips = [grey, grey[:, ::-1], grey[::-1], grey[::-1, ::-1]]
    unflip = [lambda p: p, lambda p: p[:, ::-1], lambda p: p[::-1], lambda p: p[::-1, ::-1]]
    expected = np.mean([u(predict_image(light, g.copy())) for g, u in zip(flips, unflip, strict=True)], axis=0)
    assert np.abs(predict_image(light, grey, tta=True) - expected).max() < 1e-5


def test_too_small_overlap_shows_seams(light):
    # The same comparison fails when the margins are smaller than the receptive field.
    grey = smooth_image(300, 262)
    whole = predict_image(light, grey)
    assert np.abs(whole - predict_image(light, grey, tile=128, overlap=8)).max() > 1e-3


def test_tiles_blend_to_the_image_with_any_geometry():
    grey = smooth_image(203, 517)
    for tile, overlap in [(64, 16), (100, 40), (128, 0), (516, 300)]:
        np.testing.assert_allclose(predict_image(Identity(), grey, tile=tile, overlap=overlap), grey, atol=1e-6)


def test_tile_starts_cover_with_overlap():
    for length, tile, overlap in [(2848, 1224, 192), (4288, 1224, 192), (100, 40, 12), (40, 40, 8), (44, 40, 8)]:
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] == max(0, length - tile)
        assert all(s % 4 == 0 for s in starts)
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))


def test_tiles_bound_the_forward_pass(light):
    seen = []
    handle = light.register_forward_pre_hook(lambda module, inputs: seen.append(tuple(inputs[0].shape)))
    try:
        prob = predict_image(light, smooth_image(601, 503), max_pixels=40_000, overlap=64)
    finally:
        handle.remove()
    assert prob.shape == (601, 503)
    assert len(seen) > 9
    assert max(h * w for _, _, h, w in seen) <= 40_000
    assert all(h % 4 == 0 and w % 4 == 0 for _, _, h, w in seen)


def test_tiles_bound_peak_memory():
    # One pass of Light over 3 megapixels needs about 0.5 GB of activations; tiles of 0.12
    # megapixels need the full-size arrays (about 16 bytes per pixel) plus one tile's activations.
    script = textwrap.dedent(
        """
        import resource, numpy as np, torch
        from patch2image.inference import predict_image
        from patch2image.networks import create_network
        torch.set_num_threads(1)
        model = create_network("light").eval()
        predict_image(model, np.zeros((64, 64), np.float32))
        grey = np.random.default_rng(0).random((1500, 2000), dtype=np.float32)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        prob = predict_image(model, grey, max_pixels=120_000, overlap=64)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) / 1024)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    peak_mib = float(result.stdout.strip())
    assert peak_mib < 3 * 16 + 120, peak_mib


def naive_patches(model, grey, patch_size, stride):
    """The patch-level segmentation written plainly: one patch at a time."""
    before = patch_size - stride
    height, width = grey.shape
    padded = np.pad(grey, ((before, patch_size + stride), (before, patch_size + stride)), mode="reflect")
    total, count = np.zeros_like(padded), np.zeros_like(padded)
    with torch.no_grad():
        for y in range(0, before + height, stride):
            for x in range(0, before + width, stride):
                patch = torch.from_numpy(padded[y : y + patch_size, x : x + patch_size].copy())[None, None]
                total[y : y + patch_size, x : x + patch_size] += torch.sigmoid(model(patch))[0, 0].numpy()
                count[y : y + patch_size, x : x + patch_size] += 1
    return (total / np.maximum(count, 1))[before : before + height, before : before + width]


@pytest.mark.parametrize(("shape", "patch_size", "stride", "batch"), [((13, 18), 8, 3, 5), ((40, 36), 32, 16, 7)])
def test_patch_mode_equals_naive_loop(light, shape, patch_size, stride, batch):
    grey = smooth_image(*shape)
    expected = naive_patches(light, grey, patch_size, stride)
    got = predict_patches(light, grey, patch_size, stride, batch_size=batch)
    assert got.shape == shape
    assert np.abs(got - expected).max() < 1e-5


@pytest.mark.parametrize("stride", [1, 2, 3, 5, 16, 32])
def test_patch_mode_averages_every_pixel(stride):
    grey = smooth_image(29, 41)
    np.testing.assert_allclose(predict_patches(Identity(), grey, 32, stride, batch_size=64), grey, atol=1e-6)


def test_patch_mode_refuses_bad_geometry(light):
    with pytest.raises(ValueError, match="stride"):
        predict_patches(light, smooth_image(20, 20), 8, 9)
    with pytest.raises(ValueError, match="multiple of 4"):
        predict_patches(light, smooth_image(20, 20), 6, 2)


def test_prediction_restores_training_mode(light):
    light.train()
    try:
        predict_image(light, smooth_image(16, 16))
        predict_patches(light, smooth_image(16, 16), 8, 4)
        assert light.training
    finally:
        light.eval()


def test_bf16_is_close_to_fp32():
    model = create_network("light").eval()
    grey = smooth_image(64, 96)
    assert np.abs(predict_image(model, grey, precision="bf16") - predict_image(model, grey)).max() < 1e-2


def fundus(height: int, width: int, diameter: int) -> np.ndarray:
    """A synthetic photograph: a reddish disc of ``diameter`` pixels on black, with some texture."""
    y, x = np.mgrid[:height, :width]
    inside = (y - height / 2) ** 2 + (x - width / 2) ** 2 <= (diameter / 2) ** 2
    rng = np.random.default_rng(1)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[inside] = np.array([180, 90, 40]) + rng.integers(0, 40, (int(inside.sum()), 1))
    return rgb


def test_scale_rule_uses_the_field_of_view():
    size, rule = working_size(fundus(300, 400, 200), {"fov_diameter": 500.0, "input_size": [584, 568]})
    assert abs(size[1] - 1000) <= 12 and abs(size[0] - 750) <= 12
    assert size[0] % 4 == 0 and size[1] % 4 == 0
    assert "field of view" in rule


def test_scale_rule_falls_back_to_the_training_size():
    metadata = {"fov_diameter": 540.0, "input_size": [584, 568]}
    flat = np.full((292, 284, 3), 120, np.uint8)  # no dark surround: no field of view to measure
    assert working_size(flat, metadata)[0] == (584, 568)
    assert working_size(fundus(290, 283, 250), {"input_size": [584, 568]})[0] == (584, 568)
    assert working_size(fundus(100, 300, 80), {"input_size": [584, 568]})[0] == (100, 300)
    assert working_size(fundus(101, 303, 80), {})[0] == (100, 304)


def test_scale_rule_shrinks_no_further_than_training_did():
    # the model's eye is 500 px wide; training shrank photographs by at most 2 and taught zooms up to 1.5
    metadata = {"fov_diameter": 100.0, "max_shrink": 2.0, "max_zoom": 1.5}
    within, _ = working_size(fundus(300, 300, 200), metadata)  # a shrink of 2: the plain rule
    assert abs(within[0] - 150) <= 4
    beyond, rule = working_size(fundus(600, 600, 600), metadata)  # a shrink of 6: capped at the zoom taught
    assert abs(beyond[0] - 150) <= 4 and "x1.5 finer" in rule and "at most x2" in rule
    just, _ = working_size(fundus(500, 500, 250), metadata)  # a shrink of 2.5: x1.25 finer, within the zoom
    assert abs(just[0] - 250) <= 4
    untaught = dict(metadata, max_zoom=1.0)  # no rescaling in training: the plain rule whatever the shrink
    assert abs(working_size(fundus(600, 600, 600), untaught)[0][0] - 100) <= 4
    assert abs(working_size(fundus(600, 600, 600), {"fov_diameter": 100.0})[0][0] - 100) <= 4  # older weights


def test_scale_multiplies_the_rules_size_and_is_checked(light):
    metadata = {"fov_diameter": 100.0}
    size, rule = working_size(fundus(300, 300, 200), metadata, scale=1.5)
    assert abs(size[0] - 225) <= 4 and "x1.5 as asked" in rule
    assert working_size(fundus(100, 300, 80), {}, scale=2)[0] == (200, 600)
    for bad in (0, -1, 5, float("nan"), "2"):
        with pytest.raises(UserError, match="scale"):
            Segmenter(light, metadata, scale=bad)


@pytest.mark.parametrize("mode", ["image", "patch"])
def test_segmenter_returns_original_size(light, mode):
    rgb = fundus(90, 110, 80)
    metadata = {"fov_diameter": 40.0, "preprocessing": {"order": "gamma-clahe", "gamma": 1.7, "clahe": "opencv"}}
    prob = Segmenter(light, metadata, mode=mode, stride=8, tta=True)(rgb)
    assert prob.shape == (90, 110) and prob.dtype == np.float32
    assert 0 <= prob.min() and prob.max() <= 1 and prob.std() > 0.01


def test_segmenter_refuses_foreign_preprocessing(light):
    with pytest.raises(UserError, match="preprocessing"):
        Segmenter(light, {"preprocessing": {"sigma": 2}})


class _Needs32(torch.nn.Module):
    """A user network that down-samples five times, as an smp U-Net does: sides must be multiples of 32."""

    size_divisor = 32

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        assert x.shape[-2] % 32 == 0 and x.shape[-1] % 32 == 0, x.shape
        return self.conv(x)


def test_a_network_that_needs_multiples_of_32_is_padded_tiled_and_sized_for():
    from patch2image.networks import size_divisor

    network = _Needs32()
    assert size_divisor(network) == 32 and size_divisor(torch.nn.Identity()) == 4
    grey = np.random.default_rng(0).random((70, 101)).astype(np.float32)
    assert predict_image(network, grey).shape == (70, 101)  # one pass, padded to 96 x 128
    assert predict_image(network, grey, tile=40, overlap=8).shape == (70, 101)  # tiles of 32, starts at 32k
    assert all(start % 32 == 0 or start == 200 - 64 for start in tile_starts(200, 64, 16, 32))
    rgb = np.zeros((70, 101, 3), np.uint8)
    assert working_size(rgb, {"size_divisor": 32})[0] == (64, 96)
    prob = Segmenter(network, {"size_divisor": 32})(rgb)
    assert prob.shape == (70, 101)
