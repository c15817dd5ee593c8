"""The Python API: load, train and evaluate, as a notebook uses them."""

import shutil

import numpy as np
import pytest
from PIL import Image

import patch2image
from patch2image.errors import UserError
from patch2image.metrics import image_metrics
from patch2image.networks import create_network
from patch2image.weights import save_weights


def _photograph(height=60, width=80) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_load_segments_an_array_and_a_path(tmp_path):
    weights = tmp_path / "w.safetensors"
    save_weights(weights, create_network("light"), {"network": "light", "threshold": 0.4})
    model = patch2image.load(weights)
    rgb = _photograph()
    prob = model(rgb)
    assert prob.shape == (60, 80) and prob.dtype == np.float32 and 0 <= prob.min() <= prob.max() <= 1
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    np.testing.assert_allclose(model(tmp_path / "photo.png"), prob, atol=1e-6)
    np.testing.assert_array_equal(model.mask(rgb), prob >= 0.4)
    assert model.threshold == 0.4 and model.metadata.network == "light"


def test_wrong_input_is_one_clear_error(tmp_path):
    weights = tmp_path / "w.safetensors"
    save_weights(weights, create_network("light"), {"network": "light"})
    model = patch2image.load(weights)
    with pytest.raises(UserError, match=r"shape \(H, W, 3\) and dtype uint8"):
        model(np.zeros((10, 10), np.float32))
    with pytest.raises(UserError, match="no such weights file"):
        patch2image.load(tmp_path / "missing.safetensors")


def test_train_runs_the_phases_and_returns_the_rows(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "name: tiny\nprotocol: smoke\ndataset: {kind: synthetic, synthetic_images: 4, synthetic_size: 64}\n"
        "phases: {patch: {epochs: 1}, finetune: {epochs: 1}}\nevaluation: {patch_stride: 16}\n"
    )
    rows = patch2image.train(config, tmp_path / "run")
    assert set(rows) == {"patch", "frozen", "finetuned"}
    assert 0 <= rows["finetuned"]["whole"]["mean"]["auc"] <= 1


def test_a_shipped_model_on_real_drive_images(datasets, tmp_path):
    model = patch2image.load("drive-light")
    # A folder of two DRIVE test images with their labels and masks: evaluate() scores it as a dataset.
    folder = tmp_path / "two"
    for sub, source, pattern in (("images", "images", "0[12]_test.tif"), ("labels", "1st_manual", "0[12]_*.gif"),
                                 ("masks", "mask", "0[12]_*.gif")):  # fmt: skip
        (folder / sub).mkdir(parents=True)
        for path in (datasets / "DRIVE" / "test" / source).glob(pattern):
            shutil.copy(path, folder / sub / path.name)
    image = folder / "images" / "01_test.tif"
    from patch2image.data import load_sample, open_dataset

    sample = load_sample(open_dataset(folder).files("all")[0])
    assert image_metrics(model(image), sample.label)["auc"] > 0.97
    result = patch2image.evaluate("drive-light", folder, split="all")
    assert [row["name"] for row in result["whole"]["images"]] == ["01", "02"]
    assert result["whole"]["mean"]["auc"] > 0.97


def _readme_python_examples() -> list[str]:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## From Python") :]
    return re.findall(r"```python\n(.*?)```", section[: section.index("\n## ", 1)], re.S)


def test_the_readmes_first_python_example_runs_without_any_dataset(tmp_path, monkeypatch, capsys):
    examples = _readme_python_examples()
    assert len(examples) == 2  # the first runs anywhere; the second, labelled, needs DRIVE
    monkeypatch.chdir(tmp_path)  # a fresh clone's user may be anywhere, with no dataset beside the project
    exec(examples[0], {})
    assert "vessels: " in capsys.readouterr().out
    assert "evaluate" not in examples[0] and "datasets" in examples[1]
