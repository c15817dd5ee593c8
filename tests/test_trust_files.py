"""What a file may do to the program: weights, checkpoints, run folders, the cache, photographs and arrays.

Each test is a hostile or damaged input a user could give (or a disk could hold): it is refused with one
line naming the file and what is wrong, or, for the per-user cache, used only when it is whole and
otherwise rebuilt with one warning. Refusals keep the project's contract (tests/test_bad_input.py):
exit status 2 and exactly one line ``error: <file or key>: <what is wrong>`` on stderr, no traceback.

- Photographs and labels are turned as their EXIF orientation says, as every viewer shows them.
- A weights file is checked whole when it is read: finite floating-point tensors whose names and shapes
  fit the network its metadata describes (built first on PyTorch's meta device, so nothing is allocated
  for a network that does not fit), and metadata values within their ranges.
- A configuration's ``network: module:Class`` is checked to be a network class before it is called.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_bad_input import _fast_config
from test_bad_input import _one_error as one_error

import patch2image
from patch2image.cli import main
from patch2image.data import read_image, read_mask
from patch2image.errors import UserError
from patch2image.inference import Segmenter
from patch2image.networks import create_network
from patch2image.weights import METADATA_KEY, WeightsMetadata, load_model, write_safetensors


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error(code: int, err: str, *fragments: str) -> str:
    assert code == 2, err
    return one_error(code, err, *fragments)


def _fundus(height: int, width: int, seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[:height, :width]
    inside = (y - height / 2) ** 2 + (x - width / 2) ** 2 <= (0.45 * min(height, width)) ** 2
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[inside] = np.array([170, 80, 30]) + np.random.default_rng(seed).integers(0, 60, (int(inside.sum()), 1))
    return rgb


LIGHT_METADATA = {"network": "light", "input_size": None, "fov_diameter": None}


@pytest.fixture(scope="module")
def light() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.clone() for k, v in create_network("light").state_dict().items()}


@pytest.fixture(scope="module")
def model(tmp_path_factory, light) -> Path:
    """Random-init Light without scale information (photographs are segmented at their own size)."""
    path = tmp_path_factory.mktemp("model") / "light.safetensors"
    _weights(path, light, LIGHT_METADATA)
    return path


def _weights(path: Path, tensors: dict, metadata) -> Path:
    """A weights file as anyone could write it: any tensors, any metadata (a dictionary, or raw JSON text)."""
    text = metadata if isinstance(metadata, str) else json.dumps(metadata)
    write_safetensors(path, tensors, {METADATA_KEY: text})
    return path


@pytest.fixture
def eye(tmp_path) -> Path:
    path = tmp_path / "eye.png"
    Image.fromarray(_fundus(40, 48)).save(path)
    return path


# --- EXIF orientation ---------------------------------------------------------------------------------------


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _sideways(upright: np.ndarray, path: Path, orientation: int = 6, **options) -> Path:
    """``upright`` stored as a camera held sideways stores it: turned, with the orientation that undoes that.

    Orientation 6 says "turn 90 degrees clockwise to show": the stored pixels are the upright ones turned
    90 degrees anticlockwise.
    """
    assert orientation == 6
    stored = np.ascontiguousarray(np.rot90(upright, 1))
    Image.fromarray(stored).save(path, exif=_exif(orientation), **options)
    return path


def test_a_photograph_is_read_upright(tmp_path):
    upright = np.zeros((60, 40, 3), np.uint8)
    upright[:10] = 255  # a white band at the top of the photograph as shown
    path = _sideways(upright, tmp_path / "portrait.jpg", quality=95)
    rgb = read_image(path)
    assert rgb.shape == (60, 40, 3)
    assert rgb[:8].mean() > 240 and rgb[12:].mean() < 15


def test_a_label_is_read_upright(tmp_path):
    upright = np.zeros((60, 40), np.uint8)
    upright[:10, :5] = 255
    mask = read_mask(_sideways(upright, tmp_path / "label.png"))
    assert np.array_equal(mask, upright > 0)


def test_segment_writes_masks_the_size_of_the_photograph_as_shown(model, tmp_path, capsys):
    photo = _sideways(_fundus(48, 40), tmp_path / "eye.jpg", quality=95)
    code, _, err = _cli(capsys, "segment", photo, "--model", model, "--out", tmp_path / "out", "--backend", "torch")
    assert code == 0, err
    assert np.asarray(Image.open(tmp_path / "out" / "eye_mask.png")).shape == (48, 40)
    assert patch2image.load(str(model))(photo).shape == (48, 40)


# --- weights: tensors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_weights_are_refused_when_read(model, light, tmp_path, eye, capsys, value):
    damaged = {k: v.clone() for k, v in light.items()}
    damaged["body.0.0.weight"].fill_(value)
    path = _weights(tmp_path / "damaged.safetensors", damaged, LIGHT_METADATA)
    code, _, err = _cli(capsys, "segment", eye, "--model", path, "--out", tmp_path / "out")
    _one_error(code, err, str(path), "body.0.0.weight", "NaN or infinite")
    assert not (tmp_path / "out").exists()


def test_non_finite_probabilities_are_an_error_naming_the_model():
    network = create_network("light")
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.mul_(1e30)  # finite, but every sum overflows
    segmenter = Segmenter(network, WeightsMetadata(network="light", name="overflowing"))
    with pytest.raises(UserError, match="model 'overflowing' gave NaN or infinite probabilities"):
        segmenter(_fundus(40, 48))


def test_integer_weight_tensors_are_refused(light, tmp_path):
    as_integers = {k: (v * 100).to(torch.int64) for k, v in light.items()}
    path = _weights(tmp_path / "integers.safetensors", as_integers, LIGHT_METADATA)
    with pytest.raises(UserError, match=r"integers\.safetensors: weights do not fit .* holds torch\.int64 values"):
        load_model(path)


def test_network_arguments_are_checked_before_anything_is_allocated(light, tmp_path, capsys, eye, monkeypatch):
    """A 39 KB file asking for Dense of width 10,000 (21.8 GB) is refused from its metadata alone."""

    def allocate(*args, **kwargs):
        raise AssertionError("the network was built for real")

    monkeypatch.setattr("patch2image.weights.create_network", allocate)
    path = _weights(tmp_path / "wide.safetensors", light, {"network": "dense", "network_args": {"width": 10000}})
    code, _, err = _cli(capsys, "segment", eye, "--model", path, "--out", tmp_path / "out")
    _one_error(code, err, str(path), "network_args", "width must be a whole number from 1 to 64, got 10000")


def test_a_network_over_the_parameter_limit_is_refused_unbuilt(light, tmp_path, monkeypatch):
    monkeypatch.setattr("patch2image.weights.create_network", lambda *a, **k: pytest.fail("built for real"))
    path = _weights(
        tmp_path / "big.safetensors", light, {"network": "dense", "network_args": {"width": 64, "growth": 32}}
    )
    with pytest.raises(UserError, match=r"big\.safetensors: network 'dense'.* parameters, over the limit"):
        load_model(path)


def test_tensor_shapes_are_compared_with_the_network_before_it_is_built(light, tmp_path, monkeypatch):
    monkeypatch.setattr("patch2image.weights.create_network", lambda *a, **k: pytest.fail("built for real"))
    path = _weights(tmp_path / "three.safetensors", light, LIGHT_METADATA | {"network_args": {"in_channels": 3}})
    with pytest.raises(UserError, match=r"three\.safetensors: weights do not fit the network Light \(body\.0\.0"):
        load_model(path)


# --- weights: metadata values ---------------------------------------------------------------------------------

BAD_METADATA = [
    pytest.param(
        {"threshold": float("nan")}, "metadata threshold: must be a number between 0 and 1", id="threshold-nan"
    ),
    pytest.param({"threshold": 5}, "metadata threshold: must be a number between 0 and 1, got 5", id="threshold-5"),
    pytest.param({"threshold": "high"}, "metadata threshold: expected float, got 'high'", id="threshold-text"),
    pytest.param({"size_divisor": 0}, "metadata size_divisor: must be a whole number from 1 to 256", id="divisor-0"),
    pytest.param({"size_divisor": 10**9}, "metadata size_divisor", id="divisor-huge"),
    pytest.param({"fov_diameter": 1e12}, "metadata fov_diameter: must be a number of pixels", id="fov-huge"),
    pytest.param({"fov_diameter": float("inf")}, "metadata fov_diameter", id="fov-inf"),
    pytest.param({"input_size": ["a", 3]}, "metadata input_size: must be [height, width]", id="input-size-text"),
    pytest.param({"task": "../../evil"}, "metadata task: must be one of vessels, optic_disc", id="task-path"),
    pytest.param({"network_args": {"in_channels": -3}}, "metadata network_args", id="in-channels-negative"),
    pytest.param({"network_args": {"in_channels": "3"}}, "in_channels must be a whole number", id="in-channels-text"),
    pytest.param({"patch_size": 7}, "metadata patch_size: must be a multiple of 4", id="patch-size"),
    pytest.param({"preprocessing": {"channel": "ir"}}, "metadata preprocessing.channel", id="preprocessing"),
    pytest.param({"preprocessing": {"gamma": "x"}}, "metadata preprocessing.gamma", id="gamma-text"),
    pytest.param({"metrics": {"whole": {"dice": "good"}}}, "metadata metrics.whole", id="metrics-text"),
    pytest.param({"extra": {"a": json.loads("[" * 40 + "]" * 40)}}, "metadata extra: nested more than", id="deep"),
]


@pytest.mark.parametrize(("change", "says"), BAD_METADATA)
def test_metadata_values_are_checked_when_the_file_is_read(light, tmp_path, eye, capsys, change, says):
    path = _weights(tmp_path / "odd.safetensors", light, LIGHT_METADATA | change)
    code, _, err = _cli(capsys, "segment", eye, "--model", path, "--out", tmp_path / "out")
    _one_error(code, err, f"error: {path}: ", says)
    with pytest.raises(UserError, match="odd.safetensors: metadata"):
        patch2image.load(str(path))


def test_metadata_nested_100000_deep_is_one_line(light, tmp_path, eye, capsys):
    deep = json.dumps(LIGHT_METADATA)[:-1] + ', "extra": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    path = _weights(tmp_path / "deep.safetensors", light, deep)
    code, _, err = _cli(capsys, "segment", eye, "--model", path, "--out", tmp_path / "out")
    _one_error(code, err, str(path), "nested too deeply")


def test_the_shipped_models_pass_the_checks():
    for name, metadata in patch2image.weights.shipped_models():
        assert load_model(name)[1] == metadata


# --- a configuration's network --------------------------------------------------------------------------------


@pytest.mark.parametrize("network", ["os:system", "subprocess:getoutput", "collections:OrderedDict"])
def test_a_configuration_network_that_is_not_a_module_class_is_not_called(tmp_path, capsys, network):
    marker = tmp_path / "ran"
    config = _fast_config(tmp_path, network=network, network_args={"cmd": f"touch {marker}"})
    code, _, err = _cli(capsys, "train", config, "--out", tmp_path / "run", "--quiet")
    _one_error(code, err, f"network {network!r}", "not a torch.nn.Module subclass")
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


def test_a_configuration_network_too_big_is_refused_before_anything_is_written(tmp_path, capsys):
    config = _fast_config(tmp_path, network="dense", network_args={"width": 10000})
    code, _, err = _cli(capsys, "train", config, "--out", tmp_path / "run", "--quiet")
    _one_error(code, err, "width must be a whole number from 1 to 64")
    assert not (tmp_path / "run").exists()


# --- Python API arrays ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(model) -> Segmenter:
    return patch2image.load(str(model))


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 40, 3), (40, 0, 3)])
def test_an_empty_array_is_one_line(loaded, shape):
    with pytest.raises(UserError, match=r"^image array: array holds an empty image"):
        loaded(np.zeros(shape, np.uint8))


def test_an_array_over_the_pixel_limit_is_refused_as_a_file_is(loaded):
    huge = np.zeros((20000, 20000, 3), np.uint8)  # not touched: the operating system gives zero pages lazily
    with pytest.raises(UserError, match=r"image array: array holds 20000x20000 = 400 megapixels, about 1\.1 GiB"):
        loaded(huge)


def test_a_working_size_over_the_pixel_limit_is_refused(model):
    segmenter = patch2image.load(str(model), size=(20000, 20000))
    with pytest.raises(UserError, match=r"would segment it at 20000x20000 = 400 megapixels \(given size"):
        segmenter(_fundus(40, 48))
