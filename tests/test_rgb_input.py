"""Colour input, ``preprocessing: {channel: rgb}``: three channels from the pre-processing through the patches,
augmentation, training, the weights' metadata, every backend, export, evaluation and the web page; and
one-channel weights that load and segment as before."""

import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml
from PIL import Image

import patch2image
from patch2image import cli
from patch2image.config import AugmentationConfig, PatchConfig, config_from_dict
from patch2image.data import read_image
from patch2image.inference import Segmenter, predict_image, predict_patches
from patch2image.networks import count_parameters, create_network
from patch2image.patch_database import patch_database
from patch2image.preprocessing import Preprocessing
from patch2image.training.augmentation import augment
from patch2image.weights import load_model, read_weights, save_weights

ROOT = Path(__file__).resolve().parents[1]
FP32 = ["--precision", "fp32"]  # segment's default, auto, may choose bfloat16 for PyTorch


# --------------------------------------------------------------------------- the pieces, on arrays


def test_configuration_builds_the_network_with_the_channels_of_its_preprocessing():
    smoke = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    assert config_from_dict(dict(smoke)).network_arguments == {}  # one channel: the metadata as before
    rgb = config_from_dict(smoke | {"preprocessing": {"channel": "rgb"}, "network_args": {"in_channels": 3}})
    assert rgb.network_arguments == {"in_channels": 3}
    assert count_parameters(create_network(rgb.network, **rgb.network_arguments)) == 8889 + 2 * 8 * 3 * 3


def test_the_rgb_experiment_differs_from_the_green_one_only_in_its_channel():
    paths = [ROOT / "configs" / f"drive-mini-unet-robust-{channel}.yaml" for channel in ("green", "rgb")]
    green, rgb = (yaml.safe_load(path.read_text()) for path in paths)
    assert (green.pop("preprocessing"), rgb.pop("preprocessing")) == ({"channel": "green"}, {"channel": "rgb"})
    assert (green.pop("name"), rgb.pop("name")) == ("drive-mini-unet-robust-green", "drive-mini-unet-robust-rgb")
    assert rgb == green
    assert config_from_dict(yaml.safe_load(paths[1].read_text())).network_arguments == {"in_channels": 3}


@pytest.mark.parametrize("config", [PatchConfig(size=16, stride=8), PatchConfig(size=16, sampling="balanced")])
def test_colour_patches_are_each_channels_patches(config):
    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 40, 36), dtype=np.float32)
    labels = rng.random((2, 40, 36)) > 0.7
    x, y = patch_database(images, labels, config, seed=5)
    assert x.shape[1:] == (3, 16, 16) and y.shape == (len(x), 1, 16, 16)
    for c in range(3):
        x_c, y_c = patch_database(images[:, c], labels, config, seed=5)
        assert torch.equal(x[:, c : c + 1], x_c) and torch.equal(y, y_c)


def test_augmentation_moves_every_channel_and_the_label_alike():
    base = torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    x = torch.cat([base, base, base], dim=1)
    config = AugmentationConfig(translate=0.1, scale=[0.7, 1.4], contrast=0.3)
    moved, _ = augment(x, (base > 0.5).float(), torch.Generator().manual_seed(1), config)
    assert moved.shape == x.shape and not torch.equal(moved, x)
    assert torch.equal(moved[:, 0], moved[:, 1]) and torch.equal(moved[:, 0], moved[:, 2])
    moved, label = augment(x, (base > 0.5).float(), torch.Generator().manual_seed(1), AugmentationConfig())
    assert torch.equal(moved > 0.5, label.expand_as(moved) > 0.5)


class PixelWise(torch.nn.Module):
    """Each pixel's logit x_r - 2 x_g + 3 x_b - 1 from that pixel alone: tiles, patches and flips change nothing."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -2.0, 3.0]).view(1, 3, 1, 1))
            self.conv.bias.fill_(-1)

    def forward(self, x):
        return self.conv(x)


def test_colour_images_are_segmented_whole_in_tiles_and_in_patches():
    image = np.random.default_rng(0).random((3, 70, 90), dtype=np.float32)
    expected = 1 / (1 + np.exp(-(image[0] - 2 * image[1] + 3 * image[2] - 1)))
    model = PixelWise()
    for prob in (
        predict_image(model, image),
        predict_image(model, image, tile=32, overlap=8),
        predict_image(model, image, tta=True),
        predict_patches(model, image, 16, 4),
        Segmenter(model, {}, mode="patch", stride=8, tta=True).predict(image),
    ):
        np.testing.assert_allclose(prob, expected, atol=1e-6)
    torch.manual_seed(0)
    light = create_network("light", in_channels=3).eval()
    image = np.random.default_rng(1).random((3, 200, 300), dtype=np.float32)
    whole = predict_image(light, image)
    # Tile margins (overlap / 4) cover Light's receptive field (21 px): the same as one pass.
    assert np.abs(predict_image(light, image, tile=176, overlap=88) - whole).max() < 1e-6


# --------------------------------------------------------------------------- a trained colour model, everywhere


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory) -> Path:
    """configs/smoke.yaml with colour input: two epochs on patches, two fine-tuning (a few seconds)."""
    folder = tmp_path_factory.mktemp("rgb")
    config = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text()) | {
        "name": "smoke-rgb",
        "preprocessing": {"channel": "rgb"},
        "precision": "fp32",
        "layout": "channels_last",
        "phases": {"patch": {"epochs": 2}, "finetune": {"epochs": 2}},
    }
    path = folder / "smoke-rgb.yaml"
    path.write_text(yaml.safe_dump(config))
    out = folder / "run"
    assert cli.main(["train", str(path), "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def weights(rgb_run) -> Path:
    return rgb_run / "finetuned.safetensors"


@pytest.fixture(scope="module")
def photo(rgb_run) -> Path:
    return sorted((rgb_run / "synthetic-data" / "test" / "images").glob("*.png"))[0]


def written_probabilities(weights: Path, photo: Path, **options) -> np.ndarray:
    """The 16-bit probability map ``segment`` writes, computed by the library with PyTorch in float32."""
    prob = patch2image.load(weights, backend="torch", precision="fp32", **options)(read_image(photo))
    return np.round(prob * 65535).astype(np.uint16)


def test_training_records_a_three_channel_network_that_loading_rebuilds(rgb_run, weights, photo):
    _, metadata = read_weights(weights)
    assert metadata.preprocessing["channel"] == "rgb" and metadata.network_arguments == {"in_channels": 3}
    assert "in_channels" not in metadata.network_args  # the channel count is stored once: the pre-processing's
    model, metadata = load_model(weights)
    assert model.body[0][0].in_channels == 3
    network_input = Segmenter(model, metadata).prepare(read_image(photo))
    assert network_input.ndim == 3 and len(network_input) == 3
    info = json.loads((rgb_run / "run.json").read_text())
    assert info["parameters"] == count_parameters(model)
    for row in ("patch", "frozen", "finetuned"):
        assert 0 <= json.loads((rgb_run / "metrics" / f"{row}.json").read_text())["whole"]["mean"]["auc"] <= 1


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("options", [{}, {"mode": "patch", "stride": 8}, {"tta": True}], ids=["image", "patch", "tta"])
def test_every_backend_gives_pytorchs_probabilities(weights, photo, backend, options):
    expected = patch2image.load(weights, backend="torch", precision="fp32", **options)(photo)
    assert expected.std() > 0.01  # the trained network's probabilities vary: agreeing means something
    got = patch2image.load(weights, backend=backend, precision="fp32", **options)(photo)
    assert float(np.abs(got - expected).max()) <= 1e-4


def test_segment_runs_colour_weights_with_every_backend_workers_and_tta(weights, photo, tmp_path):
    expected = written_probabilities(weights, photo)
    runs = {
        "torch": ["--backend", "torch"],
        "onnxruntime": ["--backend", "onnxruntime"],
        "openvino": ["--backend", "openvino"],
        "auto": ["--backend", "auto"],
        "workers": ["--backend", "torch", "--workers", "1"],
        "tta": ["--backend", "torch", "--tta"],
    }
    written = {}
    for name, extra in runs.items():
        out = tmp_path / name
        argv = [str(photo), "--model", str(weights), "--out", str(out), "--quiet", *FP32, *extra]
        assert cli.main(["segment", *argv]) == 0
        written[name] = np.asarray(Image.open(out / f"{photo.stem}_prob.png"))
    np.testing.assert_array_equal(written["torch"], expected)
    np.testing.assert_array_equal(written["workers"], expected)
    for name in ("onnxruntime", "openvino", "auto"):  # 1e-4 is 6.6 steps of 1/65535, plus one of rounding
        assert np.abs(written[name].astype(int) - expected).max() <= 8, name
    np.testing.assert_array_equal(written["tta"], written_probabilities(weights, photo, tta=True))


def test_export_and_int8_export_of_colour_weights(weights, photo, tmp_path, capsys):
    onnx_file = tmp_path / "rgb.onnx"
    assert cli.main(["export", str(weights), "--onnx", str(onnx_file)]) == 0
    assert onnx.load(str(onnx_file)).graph.input[0].type.tensor_type.shape.dim[1].dim_value == 3
    expected = patch2image.load(weights, backend="torch", precision="fp32")(photo)
    assert float(np.abs(patch2image.load(onnx_file, precision="fp32")(photo) - expected).max()) <= 1e-4
    out = tmp_path / "seg"
    assert cli.main(["segment", str(photo), "--model", str(onnx_file), "--out", str(out), "--quiet"]) == 0

    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for source in sorted(photo.parent.glob("*.png"))[:2]:
        (calibration / source.name).write_bytes(source.read_bytes())
    int8 = tmp_path / "int8.onnx"
    capsys.readouterr()
    assert cli.main(["export", str(weights), "--onnx", str(int8), "--int8", str(calibration)]) == 0
    assert "int8, calibrated on 2 images" in capsys.readouterr().out
    quantised = patch2image.load(int8)
    assert quantised.metadata.preprocessing["channel"] == "rgb"
    assert float(np.abs(quantised(photo) - expected).mean()) < 0.02


def test_evaluate_colour_weights_and_their_run(rgb_run, weights, tmp_path, capsys):
    result = tmp_path / "result.json"
    argv = ["evaluate", "--model", str(weights), "--dataset", str(rgb_run / "synthetic-data"), "--json", str(result)]
    assert cli.main(argv) == 0
    assert 0 <= json.loads(result.read_text())["whole"]["mean"]["auc"] <= 1
    assert cli.main(["evaluate", str(rgb_run)]) == 0
    assert "Image/Fine-tuned" in capsys.readouterr().out


def test_the_web_page_segments_with_colour_weights(weights, photo):
    from patch2image.serve import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer Starlette prefers httpx2 to httpx
        from starlette.testclient import TestClient

    with TestClient(create_app(models=[str(weights)])) as client:
        response = client.post("/api/segment", files={"image": (photo.name, photo.read_bytes())})
        assert response.status_code == 200, response.text
        prob = np.asarray(Image.open(io.BytesIO(client.get(response.json()["urls"]["prob"]).content)))
    np.testing.assert_array_equal(prob, written_probabilities(weights, photo))


# --------------------------------------------------------------------------- one-channel weights, as before


@pytest.mark.parametrize("channel", [None, "luma", "green"])
def test_one_channel_weights_load_and_segment_as_before(tmp_path, channel):
    preprocessing = {"order": "clahe-gamma", "gamma": 1.7, "clahe": "opencv"}  # as files written before colour
    if channel:
        preprocessing["channel"] = channel
    torch.manual_seed(0)
    network = create_network("light").eval()
    path = tmp_path / "grey.safetensors"
    save_weights(path, network, {"network": "light", "preprocessing": preprocessing})
    model, metadata = load_model(path)
    assert model.body[0][0].in_channels == 1 and metadata.network_arguments == {}
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    segmenter = Segmenter(model, metadata, inside_fov=False)  # noise has no field of view: the network's own output
    grey = segmenter.prepare(rgb)
    np.testing.assert_array_equal(grey, Preprocessing(**preprocessing)(rgb))
    with torch.inference_mode():
        expected = torch.sigmoid(network(torch.from_numpy(grey)[None, None]))[0, 0].numpy()
    np.testing.assert_allclose(segmenter(rgb), expected, atol=1e-6)


def test_shipped_weights_are_one_channel_networks():
    model, metadata = load_model("drive-light")
    assert model.body[0][0].in_channels == 1 and "channel" not in metadata.preprocessing
    assert Segmenter(model, metadata).prepare(np.zeros((40, 40, 3), np.uint8)).ndim == 2
