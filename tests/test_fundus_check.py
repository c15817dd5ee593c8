"""A photograph that does not look like a fundus photograph gets a warning, never a refusal: a line from
``segment``, a flag on the Python API's probabilities, a line on the page's card (and the API's JSON).

The rule is checked on every photograph of every dataset (no warning) and on the non-fundus photographs
scikit-image ships (a warning each), and on scikit-image's own fundus photograph (no warning).
"""

import dataclasses
import warnings

import cv2
import numpy as np
import pytest
import skimage.data

import patch2image
from patch2image.cli import main
from patch2image.data import open_dataset, read_image
from patch2image.fundus_check import check_photograph
from patch2image.serve import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

MODEL = "drive-light"
DATASETS = ("DRIVE", "STARE", "CHASE_DB1", "IDRiD", "LES-AV")
NOT_FUNDUS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "colorwheel", "camera", "brick")


def scikit_image(name: str) -> np.ndarray:
    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


@pytest.mark.parametrize("kind", DATASETS)
def test_no_warning_on_any_photograph_of_the_datasets(datasets, kind):
    dataset = open_dataset(datasets / kind)
    warned = {}
    for files in dataset.files("all"):
        check = check_photograph(read_image(files.image))
        if not check.looks_like_fundus:
            warned[files.image.name] = check.warning
    assert not warned


@pytest.mark.parametrize("name", NOT_FUNDUS)
def test_a_warning_on_photographs_that_are_not_fundus_photographs(name):
    check = check_photograph(scikit_image(name))
    assert not check.looks_like_fundus
    assert check.warning.startswith("does not look like a fundus photograph (") and "\n" not in check.warning


def test_no_warning_on_scikit_images_fundus_photograph():
    assert check_photograph(scikit_image("retina")).looks_like_fundus


def test_the_rule_says_what_it_did_not_find():
    portrait = check_photograph(scikit_image("astronaut")).warning
    assert "no round field of view on a dark surround: its outline is ragged" in portrait
    rocket = check_photograph(scikit_image("rocket")).warning
    assert "the surround is not dark" in rocket and "not the retina's colour: 14% of it" in rocket


@pytest.fixture(scope="module")
def photographs(tmp_path_factory, datasets):
    """A portrait and a DRIVE photograph, as files."""
    folder = tmp_path_factory.mktemp("photographs")
    cv2.imwrite(str(folder / "astronaut.png"), scikit_image("astronaut")[..., ::-1])
    drive = read_image(datasets / "DRIVE" / "test" / "images" / "01_test.tif")
    cv2.imwrite(str(folder / "01_test.png"), drive[..., ::-1])
    return folder


@pytest.mark.parametrize("workers", [0, 1])
def test_segment_prints_one_warning_line_and_still_segments(photographs, tmp_path, capsys, workers):
    out = tmp_path / "out"
    code = main(["segment", str(photographs), "--model", MODEL, "--out", str(out), "--workers", str(workers)])
    err = capsys.readouterr().err
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert lines == [f"warning: {photographs / 'astronaut.png'}: {check_photograph(scikit_image('astronaut')).warning}"]
    assert (out / "astronaut_mask.png").is_file() and (out / "01_test_mask.png").is_file()


def test_the_python_api_flags_the_result(photographs):
    model = patch2image.load(MODEL)
    portrait = model(scikit_image("astronaut"))
    assert portrait.shape == (512, 512) and portrait.dtype == np.float32
    assert not portrait.looks_like_fundus and portrait.fundus.warning.startswith("does not look like a fundus")
    eye = model(photographs / "01_test.png")
    assert eye.looks_like_fundus and eye.fundus.warning is None
    unchecked = dataclasses.replace(model, check_fundus=False)(scikit_image("astronaut"))  # as evaluate scores
    assert unchecked.fundus is None and np.array_equal(unchecked, portrait)


def test_the_page_gets_the_warning(photographs):
    with TestClient(create_app(models=[MODEL])) as client:
        for name, expected in (("astronaut.png", False), ("01_test.png", True)):
            data = (photographs / name).read_bytes()
            result = client.post("/api/segment", files={"image": (name, data)}, data={"model": MODEL}).json()
            assert result["looks_like_fundus"] is expected, result
            assert (result["warning"] is None) is expected
    script = (create_app.__globals__["STATIC"] / "app.js").read_text()
    assert "body.warning" in script  # the card shows it
