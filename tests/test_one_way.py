"""One way through: the Python API, the command line and the web page share defaults, checks and post-processing,
and the threshold a run chooses travels in its weights."""

import io
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from test_segment import fundus

import patch2image
from patch2image.cli import build_parser, main
from patch2image.data import field_of_view_mask
from patch2image.errors import UserError
from patch2image.inference import Segmenter
from patch2image.networks import create_network
from patch2image.runtime.auto import AutoModel
from patch2image.segment import Outputs
from patch2image.serve import create_app
from patch2image.weights import load_model, read_weights, save_weights

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # newer Starlette prefers httpx2 to httpx
    from starlette.testclient import TestClient


def disc_weights(path, threshold: float = 0.5) -> str:
    """Random-initialised Light as an optic disc model, segmenting photographs at their own size."""
    torch.manual_seed(3)
    metadata = {"network": "light", "task": "optic_disc", "threshold": threshold, "input_size": None}
    save_weights(path, create_network("light"), metadata | {"fov_diameter": None})
    return str(path)


def test_api_command_line_and_page_give_the_same_probabilities_and_mask(tmp_path, capsys):
    rgb = fundus(72, 96)
    photo = tmp_path / "eye.png"
    Image.fromarray(rgb).save(photo)
    weights = disc_weights(tmp_path / "disc.safetensors")
    model = patch2image.load(weights, backend="torch", precision="fp32")
    prob = model(rgb)
    outside = ~field_of_view_mask(rgb)
    assert 0.1 < outside.mean() < 0.6
    threshold = round(float(np.quantile(prob[~outside], 0.6)), 4)  # the page keeps 4 decimals
    assert ndimage.label(prob >= threshold)[1] > 1  # several regions: keeping the disc's largest one shows
    assert not prob[outside].any()  # nothing found where there is no retina
    mask = model.mask(rgb, threshold)
    assert not mask[outside].any()
    assert ndimage.label(mask, np.ones((3, 3)))[1] == 1  # 8-connected

    out = tmp_path / "out"
    argv = ["segment", str(photo), "--model", weights, "--out", str(out), "--threshold", str(threshold)]
    assert main([*argv, "--backend", "torch", "--precision", "fp32", "--quiet"]) == 0, capsys.readouterr().err
    written = np.asarray(Image.open(out / "eye_prob.png")).astype(np.int64)
    np.testing.assert_array_equal(written, np.round(prob * 65535))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "eye_mask.png")) > 0, mask)

    with TestClient(create_app(models=[weights])) as page:
        result = page.post("/api/segment", files={"image": ("eye.png", photo.read_bytes())}).json()
        served = {
            kind: np.asarray(Image.open(io.BytesIO(page.get(f"{result['urls'][kind]}?threshold={threshold}").content)))
            for kind in ("prob", "mask")
        }
    np.testing.assert_array_equal(served["prob"].astype(np.int64), written)
    np.testing.assert_array_equal(served["mask"] > 0, mask)


def test_a_runs_validation_threshold_is_in_its_weights(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "name: tiny\nprotocol: smoke\ndataset: {kind: synthetic, synthetic_images: 4, synthetic_size: 64}\n"
        "phases: {patch: {epochs: 1}, finetune: {epochs: 1}}\nevaluation: {patch_stride: 16, threshold: validation}\n"
    )
    run = tmp_path / "run"
    patch2image.train(config, run)
    for weights, row in (("patch", "frozen"), ("finetuned", "finetuned")):
        chosen = json.loads((run / "metrics" / f"{row}.json").read_text())["whole"]["threshold"]
        assert chosen != 0.5  # the validation images chose one: the default would not tell
        assert read_weights(run / f"{weights}.safetensors")[1].threshold == chosen
        assert patch2image.load(run / f"{weights}.safetensors", backend="torch").threshold == chosen


@pytest.fixture
def one_image_dataset(tmp_path):
    rgb = fundus(48, 48)
    for folder, image in (("images", rgb), ("labels", (rgb[..., 0] > 200).astype(np.uint8) * 255)):
        (tmp_path / "data" / folder).mkdir(parents=True)
        Image.fromarray(image).save(tmp_path / "data" / folder / "eye.png")
    return tmp_path / "data"


def test_evaluate_scores_at_the_models_threshold_as_segment_does(tmp_path, one_image_dataset, capsys):
    weights = tmp_path / "w.safetensors"
    save_weights(weights, create_network("light"), {"network": "light", "threshold": 0.3})
    result = patch2image.evaluate(weights, one_image_dataset)
    assert result["whole"]["threshold"] == result["source"]["threshold"] == 0.3
    out = tmp_path / "cli.json"
    data = ["--images", str(one_image_dataset / "images"), "--labels", str(one_image_dataset / "labels")]
    assert main(["evaluate", "--model", str(weights), *data, "--json", str(out)]) == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["whole"]["threshold"] == 0.3
    for command in ("evaluate", "segment"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        assert "--threshold THRESHOLD mask threshold on the probability (default: the model's" in " ".join(
            capsys.readouterr().out.split()
        )


def test_load_has_the_command_lines_defaults(tmp_path):
    weights = tmp_path / "w.safetensors"
    save_weights(weights, create_network("light"), {"network": "light"})
    args = build_parser().parse_args(["segment", "photo.png", "--out", "out"])
    assert (args.backend, args.precision) == ("auto", "auto")
    runner = patch2image.load(weights).model
    assert isinstance(runner, AutoModel) and runner.choosing == "backend auto" and runner.precision == "auto"
    assert {name.split()[0] for name in runner.factories} >= {"torch", "onnxruntime"}


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"tile": 3}, "tile 3: must be at least 8"),
        ({"overlap": -1}, "overlap -1: must be at least 0"),
        ({"mode": "patch", "stride": 0}, "stride 0: must be between 1 and the patch size (32)"),
        ({"stride": 0}, "stride 0: must be at least 1"),
        ({"max_pixels": 0}, "max_pixels 0: must be positive"),
        ({"mode": "tiles"}, "mode tiles: must be one of image, patch"),
    ],
)
def test_segmenter_checks_its_parameters_for_every_front_end(tmp_path, capsys, options, says):
    network, metadata = create_network("light"), {"network": "light"}
    with pytest.raises(UserError, match=f"^{says.replace('(', '.').replace(')', '.')}$"):
        Segmenter(network, metadata, **options)
    if "max_pixels" in options or "mode" in options:
        return  # the command line has no such option, or refuses the value while it parses
    weights = tmp_path / "w.safetensors"
    save_weights(weights, network, metadata)
    Image.fromarray(fundus(72, 96)).save(tmp_path / "eye.png")
    flags = [f"--{name}={value}" for name, value in options.items()]
    argv = ["segment", str(tmp_path / "eye.png"), "--model", str(weights), "--out", str(tmp_path / "out"), *flags]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"error: --{says}"


def test_one_threshold_range_for_python_the_command_line_and_the_page(tmp_path, capsys):
    with pytest.raises(UserError, match="threshold 1.5: must be between 0 and 1"):
        Outputs(threshold=1.5)
    model, metadata = load_model(disc_weights(tmp_path / "disc.safetensors"))
    with pytest.raises(UserError, match="threshold -0.1: must be between 0 and 1"):
        Segmenter(model, metadata).mask_of(np.zeros((4, 4), np.float32), -0.1)
    with TestClient(create_app(models=[str(tmp_path / "disc.safetensors")])) as page:
        png = io.BytesIO()
        Image.fromarray(fundus(72, 96)).save(png, format="PNG")
        response = page.post("/api/segment", files={"image": ("eye.png", png.getvalue())}, data={"threshold": "2"})
    assert response.status_code == 400 and "must be a number between 0 and 1" in response.json()["error"]
