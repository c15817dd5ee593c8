"""ONNX export: onnxruntime agrees with PyTorch, sizes stay dynamic, metadata travels, segment runs it."""

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from patch2image.errors import UserError
from patch2image.inference import predict_image
from patch2image.networks import create_network
from patch2image.runtime.export import OnnxModel, export_onnx
from patch2image.weights import WeightsMetadata, save_weights

METADATA = {
    "network": "light",
    "input_size": None,
    "fov_diameter": None,
    "preprocessing": {"order": "clahe-gamma", "gamma": 1.7, "clahe": "opencv"},
    "patch_size": 32,
}


def run_cli(command: str, argv: list[str]) -> int:
    """``patch2image COMMAND ARGV`` as the command line runs it."""
    from patch2image import cli

    return cli.main([command, *argv])


def spread(network: torch.nn.Module) -> torch.nn.Module:
    """Rescale the last layer so that random-init logits have mean 0 and deviation 2 on random images.

    Random-init probabilities otherwise lie within 0.01 of 0.5, where a 1e-4 agreement proves little.
    """
    network.eval()
    last = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.bias.zero_()
        logits = network(torch.rand(1, 1, 128, 128, generator=torch.Generator().manual_seed(2)))
        gain = 2 / float(logits.std())
        last.weight.mul_(gain)
        last.bias.fill_(-float(logits.mean()) * gain)
    return network


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{name: (torch network, path of its .safetensors, path of its .onnx)} for Light and Mini-Unet."""
    folder = tmp_path_factory.mktemp("export")
    models = {}
    for name in ("light", "mini-unet"):
        torch.manual_seed(0)
        network = spread(create_network(name))
        weights, path = folder / f"{name}.safetensors", folder / f"{name}.onnx"
        save_weights(weights, network, METADATA | {"network": name})
        if name == "light":  # one through the command, one through the library
            assert run_cli("export", [str(weights), "--onnx", str(path)]) == 0
        else:
            export_onnx(network, path, METADATA | {"network": name})
        models[name] = (network, weights, path)
    return models


@pytest.mark.parametrize("name", ["light", "mini-unet"])
@pytest.mark.parametrize("shape", [(1, 1, 96, 128), (2, 1, 200, 276)])
def test_onnxruntime_agrees_with_torch(exported, name, shape):
    network, _, path = exported[name]
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = torch.sigmoid(network(x))
    assert expected.std() > 0.1  # probabilities spread out: the comparison means something
    got = OnnxModel(path).probabilities(x.numpy())
    assert got.shape == expected.shape
    assert float(np.abs(got - expected.numpy()).max()) < 1e-4


def test_onnx_model_is_dynamic_and_carries_metadata(exported):
    _, _, path = exported["light"]
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version >= 17
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] and dims[2] and dims[3]  # symbolic batch, height and width
    assert OnnxModel(path).metadata == WeightsMetadata.from_dict(METADATA)


def test_predict_image_with_onnxruntime_in_tiles(exported):
    network, _, path = exported["light"]
    grey = np.random.default_rng(0).random((203, 301), dtype=np.float32)
    expected = predict_image(network, grey)
    assert np.abs(predict_image(OnnxModel(path), grey, tile=128, overlap=96) - expected).max() < 1e-4


def test_segment_with_onnxruntime(exported, tmp_path, capsys):
    _, weights, path = exported["light"]
    rgb = np.zeros((72, 90, 3), np.uint8)
    rgb[8:64, 10:80] = np.random.default_rng(0).integers(60, 200, (56, 70, 3))
    Image.fromarray(rgb).save(tmp_path / "eye.png")
    maps = {}
    # weights with PyTorch, the .onnx file, weights exported for onnxruntime and OpenVINO, the default (auto)
    runs = {
        "torch": [weights, "--backend", "torch"],
        "onnxruntime": [path, "--backend", "onnxruntime"],
        "memory": [weights, "--backend", "onnxruntime"],
        "openvino": [path, "--backend", "openvino"],
        "auto": [path],
    }
    for run, model in runs.items():
        out = tmp_path / run
        argv = [str(tmp_path / "eye.png"), "--model", *map(str, model), "--out", str(out), "--precision", "fp32"]
        assert run_cli("segment", argv) == 0
        assert f"({model[-1] if run != 'auto' else 'auto: '}" in capsys.readouterr().out
        maps[run] = np.asarray(Image.open(out / "eye_prob.png")).astype(int)
    assert maps["torch"].std() > 10
    for run in runs:
        assert np.abs(maps["torch"] - maps[run]).max() <= 1, run


def test_onnx_file_needs_onnxruntime(exported, tmp_path, capsys):
    _, _, path = exported["light"]
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "x.png")
    argv = [str(tmp_path / "x.png"), "--model", str(path), "--out", str(tmp_path / "o"), "--backend", "torch"]
    assert run_cli("segment", argv) == 2
    assert "onnxruntime" in capsys.readouterr().err


def test_not_an_onnx_file(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(UserError, match="bad.onnx"):
        OnnxModel(tmp_path / "bad.onnx")
