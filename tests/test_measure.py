"""Vessel measurements: closed-form answers on drawn patterns, zones, scale, the row and its invariance."""

import math

import cv2
import numpy as np
import pytest

import patch2image
from patch2image.measure import COLUMNS, csv_text, measure_masks
from patch2image.measure import features as F
from patch2image.measure.curves import fit_curve
from patch2image.measure.scale import MEAN_DISC_DIAMETER_UM, MICRONS_PER_DEGREE
from patch2image.measure.segments import skeleton_of
from patch2image.measure.zones import Disc, find_disc, zone_masks


def draw(points: np.ndarray, shape=(600, 600), thickness: int = 1) -> np.ndarray:
    """A polyline through (x, y) points, one pixel wide (8-connected), at sub-pixel precision."""
    image = np.zeros(shape, np.uint8)
    cv2.polylines(image, [np.round(points * 16).astype(np.int32)], False, 1, thickness, cv2.LINE_8, shift=4)
    return image.astype(bool)


def only_curve(mask: np.ndarray):
    skeleton = skeleton_of(mask)
    assert len(skeleton.segments) == 1
    return fit_curve(skeleton.segments[0])


@pytest.mark.parametrize("degrees", [0, 10, 22.5, 30, 45, 60, 90, 135])
def test_a_straight_line_has_tortuosity_one_and_no_curvature(degrees):
    t = np.linspace(0, 400, 2000)
    a = np.deg2rad(degrees)
    curve = only_curve(draw(np.stack([300 + (t - 200) * np.cos(a), 300 + (t - 200) * np.sin(a)], 1)))
    assert F.distance_factor(curve) == pytest.approx(1, abs=1e-6)
    assert F.squared_curvature(curve) < 1e-6
    assert F.tortuosity_density(curve) == pytest.approx(0, abs=1e-6)
    assert curve.length == pytest.approx(curve.chord)


@pytest.mark.parametrize("radius", [50, 100, 200])
def test_an_arc_has_its_length_chord_and_squared_curvature(radius):
    angle = np.pi  # a half circle: arc pi R, chord 2 R, squared curvature integral (1/R)^2 * pi R
    theta = np.linspace(0, angle, 4000)
    curve = only_curve(draw(np.stack([300 + radius * np.cos(theta), 300 + radius * np.sin(theta)], 1), (600, 600)))
    assert curve.length == pytest.approx(angle * radius, rel=0.015)
    assert F.distance_factor(curve) == pytest.approx(angle / 2, rel=0.015)
    assert F.squared_curvature(curve) == pytest.approx(angle / radius, rel=0.10)
    assert F.tortuosity_density(curve) == 0  # one arc, no inflection


@pytest.mark.parametrize(("amplitude", "wavelength"), [(20, 200), (40, 200), (10, 100)])
def test_a_sine_curve_has_its_length_and_squared_curvature(amplitude, wavelength):
    x = np.linspace(0, 400, 40001)
    k = 2 * np.pi / wavelength
    slope, bend = amplitude * k * np.cos(k * x), -amplitude * k**2 * np.sin(k * x)
    speed = np.sqrt(1 + slope**2)
    length = np.trapezoid(speed, x)
    squared = np.trapezoid((bend / speed**3) ** 2 * speed, x)
    curve = only_curve(draw(np.stack([100 + x, 300 + amplitude * np.sin(k * x)], 1)))
    assert curve.length == pytest.approx(length, rel=0.015)
    assert F.squared_curvature(curve) == pytest.approx(squared, rel=0.10)
    assert F.tortuosity_density(curve) > 0  # arcs of both signs


@pytest.mark.parametrize("width", range(1, 10))
@pytest.mark.parametrize("vertical", [False, True])
def test_calibre_of_a_straight_vessel_is_its_width_within_half_a_pixel(width, vertical):
    mask = np.zeros((100, 300), bool)
    mask[50 - width // 2 : 50 - width // 2 + width, 20:280] = True
    mask = mask.T if vertical else mask
    skeleton = skeleton_of(mask)
    calibre = F.mean_calibre(F.widths(mask, skeleton.pixels), skeleton.segment_pixels, np.ones_like(mask))
    assert abs(calibre - width) <= 0.5


@pytest.mark.parametrize("width", [3, 6, 9])
def test_calibre_of_an_oblique_vessel_is_its_width_within_half_a_pixel(width):
    rows, cols = np.mgrid[:400, :400]
    a = np.deg2rad(30)
    across = (cols - 200) * -np.sin(a) + (rows - 200) * np.cos(a)  # distance from a line through the centre
    along = (cols - 200) * np.cos(a) + (rows - 200) * np.sin(a)
    mask = (np.abs(across) < width / 2) & (np.abs(along) < 150)
    skeleton = skeleton_of(mask)
    calibre = F.mean_calibre(F.widths(mask, skeleton.pixels), skeleton.segment_pixels, np.ones_like(mask))
    assert abs(calibre - width) <= 0.5


def test_main_vessel_calibre_is_the_mean_width_of_the_six_widest_and_ignores_the_thin_ones():
    fov = np.zeros((300, 400), np.uint8)
    cv2.ellipse(fov, (200, 150), (195, 145), 0, 0, 360, 1, -1)
    vessels = np.zeros((300, 400), bool)
    for i, width in enumerate([3, 5, 7, 9, 11, 13]):
        vessels[20:280, 30 + i * 40 : 30 + i * 40 + width] = True
    row = measure_masks(vessels, fov.astype(bool))
    assert row["fov_main_calibre_px"] == pytest.approx(8.0, abs=0.5)  # (3 + 5 + ... + 13) / 6
    for column in range(275, 395, 8):  # twelve thin twigs: the mean calibre falls, the main vessels' stays
        vessels[40:260, column : column + 2] = True
    thinned = measure_masks(vessels, fov.astype(bool))
    assert thinned["fov_calibre_px"] < row["fov_calibre_px"] - 2
    assert thinned["fov_main_calibre_px"] == pytest.approx(row["fov_main_calibre_px"])


def test_fractal_dimension_of_a_filled_square_is_two_and_of_a_line_one():
    sizes = F.box_sizes(512)
    assert sizes[0] == 2 and sizes[-1] == 64
    assert F.fractal_dimension(np.ones((512, 512), bool), sizes) == pytest.approx(2, abs=1e-9)
    line = np.zeros((512, 512), bool)
    line[200, :] = True
    assert F.fractal_dimension(line, sizes) == pytest.approx(1, abs=1e-9)


def sierpinski_carpet(level: int) -> np.ndarray:
    carpet = np.ones((1, 1), bool)
    for _ in range(level):
        hole = np.zeros_like(carpet)
        carpet = np.block([[carpet, carpet, carpet], [carpet, hole, carpet], [carpet, carpet, carpet]])
    return carpet


def koch_curve(level: int, side: float) -> np.ndarray:
    points = np.array([[0.0, 0.0], [side, 0.0]])
    turn = np.array([[0.5, -math.sqrt(3) / 2], [math.sqrt(3) / 2, 0.5]])
    for _ in range(level):
        a, b = points[:-1], points[1:]
        step = (b - a) / 3
        new = np.stack([a, a + step, a + step + step @ turn.T, a + 2 * step], 1).reshape(-1, 2)
        points = np.vstack([new, points[-1:]])
    return points


def test_fractal_dimension_of_a_sierpinski_carpet_and_a_koch_curve():
    carpet = sierpinski_carpet(6)  # 729 x 729
    assert F.fractal_dimension(carpet, F.box_sizes(len(carpet))) == pytest.approx(math.log(8) / math.log(3), abs=0.03)
    side = 1800
    koch = draw(koch_curve(7, side) + [50, 50], (650, side + 100))
    measured = F.fractal_dimension(koch, F.box_sizes(side))
    assert measured == pytest.approx(math.log(4) / math.log(3), abs=0.03)


def test_density_of_a_drawn_pattern_is_exact():
    region = np.zeros((200, 300), bool)
    region[20:180, 30:270] = True  # 160 x 240
    vessels = np.zeros_like(region)
    vessels[::10, :] = True  # 16 of the region's 160 rows, and rows outside it that must not count
    assert F.vessel_density(vessels, region) == 16 / 160


def test_zones_are_the_annuli_of_the_disc_margin_in_disc_diameters():
    fov = np.ones((1000, 1000), bool)
    disc = Disc(500.0, 500.0, 100.0)
    zones = zone_masks(disc, fov)
    b, c = zones["zone_b"][0], zones["zone_c"][0]
    rows, cols = np.nonzero(b)
    radius = np.hypot(rows - 500, cols - 500)
    assert radius.min() >= 100 and radius.max() < 150  # 0.5 to 1 DD beyond a margin 50 px from the centre
    assert np.hypot(*(np.argwhere(c) - 500).T).max() < 250  # up to 2 DD beyond the margin
    assert b.sum() == pytest.approx(np.pi * (150**2 - 100**2), rel=0.01)
    assert zones["zone_b"][1] == pytest.approx(1, abs=0.01) and zones["zone_b"][2] == ""


def test_a_zone_leaving_the_field_of_view_is_left_empty_with_its_reason():
    fov = np.zeros((1000, 1000), bool)
    fov[:, :400] = True  # the disc sits near the edge
    mask, share, reason = zone_masks(Disc(540.0, 500.0, 100.0), fov)["zone_c"]
    assert mask is None and share < 0.5 and "inside the field of view" in reason


def disc_mask(shape, centre, diameter):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return np.hypot(rows - centre[1], cols - centre[0]) < diameter / 2


def test_the_disc_is_the_largest_region_and_implausible_discs_are_refused():
    fov = disc_mask((600, 600), (300, 300), 560)
    mask = disc_mask((600, 600), (200, 300), 80) | disc_mask((600, 600), (450, 300), 10)
    found = find_disc(mask, fov, 560)
    assert found.found and found.centre_x == pytest.approx(200, abs=0.5) and found.diameter == pytest.approx(80, 0.02)
    speck = find_disc(disc_mask((600, 600), (200, 300), 11), fov, 560)
    assert not speck.found and "small" in speck.reason
    assert not find_disc(np.zeros((600, 600), bool), fov, 560).found
    assert find_disc(None, fov, 560).reason == "no optic disc mask"


def tree(shape=(600, 600)) -> np.ndarray:
    """A small vessel tree: a thick trunk, two curved branches and a thin wavy twig."""
    mask = np.zeros(shape, np.uint8)
    cv2.line(mask, (300, 300), (300, 60), 1, 7)
    cv2.ellipse(mask, (200, 300), (100, 180), 0, 0, 80, 1, 4)
    cv2.ellipse(mask, (400, 300), (100, 200), 0, 100, 180, 1, 4)
    x = np.arange(300, 560)
    cv2.polylines(mask, [np.stack([x, 300 + 25 * np.sin(x / 20)], 1).astype(np.int32)], False, 1, 2)
    return mask.astype(bool)


def test_a_row_has_every_column_and_reasons_where_nothing_is_measured():
    fov = disc_mask((600, 600), (300, 300), 580)
    row = measure_masks(tree(), fov)
    assert list(row) == list(COLUMNS)
    assert row["disc_found"] == 0 and row["zone_b_reason"].startswith("no optic disc")
    assert row["zone_b_vessel_density"] is None and row["scale_source"] == "none" and row["fov_calibre_um"] is None
    assert row["fov_reason"] == "" and row["fov_segments"] >= 4 and row["fov_branch_points"] >= 1
    header = csv_text([{"image": "x"} | row]).splitlines()[0].split(",")
    assert header == ["image", *COLUMNS]


def test_scale_is_given_or_from_the_camera_angle_or_estimated_from_the_disc():
    fov = disc_mask((600, 600), (300, 300), 580)
    disc = disc_mask((600, 600), (300, 300), 80)
    assert measure_masks(tree(), fov, disc, microns_per_pixel=5)["microns_per_pixel"] == 5
    row = measure_masks(tree(), fov, disc, fov_degrees=45)
    assert row["scale_source"] == "fov_degrees"
    assert row["microns_per_pixel"] == pytest.approx(45 * MICRONS_PER_DEGREE / row["fov_diameter_px"])
    row = measure_masks(tree(), fov, disc)
    assert row["scale_source"] == "disc_estimate"
    assert row["microns_per_pixel"] == pytest.approx(MEAN_DISC_DIAMETER_UM / row["disc_diameter_px"])
    assert row["fov_calibre_um"] == pytest.approx(row["fov_calibre_px"] * row["microns_per_pixel"])


def scaled_features(row: dict) -> dict:
    names = ("vessel_density", "fractal_dimension", "calibre_um", "distance_tortuosity", "squared_curvature_per_mm",
             "tortuosity_density_per_mm")  # fmt: skip
    return {f"{z}_{n}": row[f"{z}_{n}"] for z in ("fov", "zone_b", "zone_c") for n in names}


TOLERANCE = {"vessel_density": 0.01, "fractal_dimension": 0.06, "calibre_um": 0.06, "distance_tortuosity": 0.02,
             "squared_curvature_per_mm": 0.3, "tortuosity_density_per_mm": 0.3}  # fmt: skip
"""Relative tolerance of each feature under rotation and resizing. Curvature is the most sensitive: a resize by
nearest neighbour turns smooth edges into steps, and the skeleton's wiggle, not the vessel's, changes with it;
zone B of this sparse tree holds few boxes for the fractal dimension."""


def assert_close(a: dict, b: dict) -> None:
    for name, value in a.items():
        tolerance = next(t for key, t in TOLERANCE.items() if name.endswith(key))
        assert b[name] == pytest.approx(value, rel=tolerance), name


def test_rotating_by_90_degrees_or_resizing_by_2_with_the_scale_keeps_the_scaled_figures():
    fov = disc_mask((600, 600), (300, 300), 580)
    disc = disc_mask((600, 600), (300, 310), 70)
    vessels = tree()
    base = measure_masks(vessels, fov, disc, microns_per_pixel=10)
    assert base["zone_b_reason"] == "" and base["zone_c_reason"] == ""
    rotated = measure_masks(np.rot90(vessels), np.rot90(fov), np.rot90(disc), microns_per_pixel=10)
    assert_close(scaled_features(base), scaled_features(rotated))
    big = [cv2.resize(m.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST) > 0
           for m in (vessels, fov, disc)]  # fmt: skip
    resized = measure_masks(*big, microns_per_pixel=5)
    assert_close(scaled_features(base), scaled_features(resized))


def test_the_api_measures_a_mask_or_a_probability_map():
    probabilities = tree().astype(np.float32) * 0.9
    row = patch2image.measure(probabilities, microns_per_pixel=10)
    assert row == measure_masks(tree(), np.ones((600, 600), bool), microns_per_pixel=10)
    import patch2image.measure as module  # the package: still callable

    assert module(tree())["fov_segments"] == row["fov_segments"]


def test_the_data_dictionary_in_the_docs_is_the_table_s_own():
    from pathlib import Path

    from patch2image.measure.table import data_dictionary

    page = Path(__file__).resolve().parents[1] / "docs" / "measurements.md"
    assert data_dictionary() in page.read_text()
