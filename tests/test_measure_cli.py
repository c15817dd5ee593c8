"""``patch2image measure``, ``segment --measure`` and ``patch2image.measure`` on files and photographs."""

import csv

import cv2
import numpy as np
import pytest
from test_measure import disc_mask, tree

import patch2image
from patch2image.cli import main
from patch2image.data import write_png
from patch2image.measure import CSV_COLUMNS, measure_masks


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def mask_folders(tmp_path):
    vessels, discs, fovs = (tmp_path / name for name in ("vessels", "discs", "fovs"))
    for folder in (vessels, discs, fovs):
        folder.mkdir()
    write_png(vessels / "eye_mask.png", tree().astype(np.uint8) * 255)
    write_png(discs / "eye_mask.png", disc_mask((600, 600), (300, 310), 70).astype(np.uint8) * 255)
    write_png(fovs / "eye_mask.png", disc_mask((600, 600), (300, 300), 580).astype(np.uint8) * 255)
    return vessels, discs, fovs


def test_measure_reads_masks_and_writes_one_row_per_image(tmp_path, mask_folders, capsys):
    vessels, discs, fovs = mask_folders
    out = tmp_path / "out"
    argv = ["measure", str(vessels / "eye_mask.png"), "--masks", "--disc-masks", str(discs), "--fov-masks", str(fovs)]
    assert main([*argv, "--out", str(out), "--microns-per-pixel", "10", "--quiet"]) == 0
    rows = read_rows(out / "measurements.csv")
    assert list(rows[0]) == list(CSV_COLUMNS) and rows[0]["image"] == "eye"
    expected = measure_masks(tree(), disc_mask((600, 600), (300, 300), 580), disc_mask((600, 600), (300, 310), 70),
                             microns_per_pixel=10)  # fmt: skip
    assert float(rows[0]["zone_b_vessel_density"]) == pytest.approx(expected["zone_b_vessel_density"], rel=1e-5)
    assert rows[0]["scale_source"] == "given"
    assert main([*argv, "--out", str(out), "--quiet"]) == 2  # an existing table is not replaced silently
    assert "measurements.csv: exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fov-degrees", "-3"], "--fov-degrees -3.0: must be"),
        (["--microns-per-pixel", "0"], "--microns-per-pixel 0.0: must be"),
        (["--disc-masks", "somewhere"], "--disc-masks and --fov-masks go with --masks"),
    ],
)
def test_bad_options_give_one_line(tmp_path, extra, message, capsys):
    assert main(["measure", str(tmp_path / "x.png"), "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_missing_disc_mask_is_that_file_s_error_and_the_others_go_on(tmp_path, mask_folders, capsys):
    vessels, discs, _ = mask_folders
    write_png(vessels / "other_mask.png", tree().astype(np.uint8) * 255)
    out = tmp_path / "out"
    assert main(["measure", str(vessels), "--masks", "--disc-masks", str(discs), "--out", str(out), "--quiet"]) == 1
    assert "other_mask.png: no such file" in capsys.readouterr().err
    assert [row["image"] for row in read_rows(out / "measurements.csv")] == ["eye"]


FOV_FEATURES = {"vessel_density": 0.01, "fractal_dimension": 0.02, "calibre_um": 0.04, "distance_tortuosity": 0.01,
                "squared_curvature_per_mm": 0.10, "tortuosity_density_per_mm": 0.15}  # fmt: skip
"""Relative tolerance of each field-of-view feature of a real photograph rotated by 90 degrees or resized by 2
(measured on DRIVE 01: at most 0.3%, 1.4%, 3.1%, 0.3%, 5.5% and 10.7%)."""


def test_a_photograph_rotated_or_resized_with_its_scale_gives_the_same_figures(datasets):
    from patch2image.data import read_image

    rgb = read_image(datasets / "DRIVE" / "test" / "images" / "01_test.tif")
    options = {"model": "drive-mini-unet", "disc_model": None}
    base = patch2image.measure(rgb, microns_per_pixel=24, **options)
    rotated = patch2image.measure(np.ascontiguousarray(np.rot90(rgb)), microns_per_pixel=24, **options)
    big = cv2.resize(rgb, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    resized = patch2image.measure(big, microns_per_pixel=12, **options)
    for name, tolerance in FOV_FEATURES.items():
        for other in (rotated, resized):
            assert other[f"fov_{name}"] == pytest.approx(base[f"fov_{name}"], rel=tolerance), name


def test_segment_measure_writes_the_table_beside_the_masks(datasets, tmp_path):
    photo = datasets / "DRIVE" / "test" / "images" / "01_test.tif"
    out = tmp_path / "seg"
    argv = ["segment", str(photo), "--out", str(out), "--model", "drive-mini-unet", "--backend", "torch"]
    assert main([*argv, "--precision", "fp32", "--measure", "--fov-degrees", "45", "--quiet"]) == 0
    (row,) = read_rows(out / "measurements.csv")
    assert row["image"] == "01_test" and row["disc_found"] == "1" and row["scale_source"] == "fov_degrees"
    assert float(row["fov_vessel_density"]) == pytest.approx(0.13, abs=0.03)
    assert main([*argv, "--precision", "fp32", "--measure", "--quiet"]) == 0  # its own earlier table: replaced
