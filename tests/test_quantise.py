"""``export --int8``: a calibrated int8 model that onnxruntime and OpenVINO run close to float32, metadata kept."""

import numpy as np
import torch
from PIL import Image

from patch2image import cli
from patch2image.inference import predict_image
from patch2image.networks import create_network
from patch2image.runtime.export import OnnxModel
from patch2image.runtime.openvino_model import OpenVinoModel
from patch2image.weights import save_weights

METADATA = {
    "network": "light",
    "input_size": None,
    "fov_diameter": None,
    "preprocessing": {"order": "clahe-gamma", "gamma": 1.7, "clahe": "opencv"},
}


def test_export_int8_runs_in_both_runtimes_close_to_float32(tmp_path, capsys):
    torch.manual_seed(0)
    network = create_network("light").eval()
    weights = tmp_path / "light.safetensors"
    save_weights(weights, network, METADATA)
    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):  # smooth random "photographs": calibration needs structure, not noise
        small = rng.integers(20, 230, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize((96, 72), Image.BILINEAR).save(photos / f"p{i}.png")
    onnx_file = tmp_path / "int8.onnx"
    assert cli.main(["export", str(weights), "--onnx", str(onnx_file), "--int8", str(photos)]) == 0
    assert "int8, calibrated on 4 images" in capsys.readouterr().out

    runners = [OnnxModel(onnx_file), OpenVinoModel(onnx_file)]
    assert runners[0].metadata.extra["int8"]["calibration_images"] == 4
    assert runners[0].metadata.network == "light"
    grey = np.asarray(Image.open(photos / "p0.png").convert("L"), np.float32) / 255
    expected = predict_image(network, grey)
    for runner in runners:
        assert float(np.abs(predict_image(runner, grey) - expected).mean()) < 0.02


def test_int8_needs_calibration_images(tmp_path, capsys):
    torch.manual_seed(0)
    weights = tmp_path / "light.safetensors"
    save_weights(weights, create_network("light"), METADATA)
    argv = ["export", str(weights), "--onnx", str(tmp_path / "x.onnx"), "--int8", str(tmp_path / "none")]
    assert cli.main(argv) == 2
    assert "none" in capsys.readouterr().err
