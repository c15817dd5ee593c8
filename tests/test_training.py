"""The training engine and the four phases, on data the tests generate (configs/smoke.yaml)."""

import copy
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from patch2image.cli import build_parser, main
from patch2image.config import AugmentationConfig, PatchConfig, PhaseConfig, load_config
from patch2image.errors import UserError
from patch2image.networks import create_network
from patch2image.patch_database import patch_database
from patch2image.training.augmentation import augment
from patch2image.training.fit import TrainingData, fit
from patch2image.training.loss import bce_dice_loss

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


def test_loss_matches_the_reference_formula():
    logits = torch.tensor([[2.0, -1.0], [0.5, -3.0]])
    target = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    p = torch.sigmoid(logits)
    bce = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    dice = (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    assert bce_dice_loss(logits, target).item() == pytest.approx((bce + 1 - dice).item(), rel=1e-6)


def test_perfect_prediction_has_near_zero_loss():
    target = (torch.rand(1, 1, 8, 8) > 0.5).float()
    assert bce_dice_loss((target * 2 - 1) * 30, target).item() < 1e-3


def test_augmentation_moves_image_and_label_together():
    x = torch.rand(16, 1, 32, 32)
    x, y = augment(x, (x > 0.5).float(), torch.Generator().manual_seed(0), AugmentationConfig())
    assert x.shape == y.shape == (16, 1, 32, 32)
    assert torch.equal(x > 0.5, y > 0.5)


def test_augmentation_flips_both_ways_and_shifts_within_the_limit():
    x = torch.zeros(64, 1, 20, 20)
    x[:, :, 2, 3] = 1  # one marked pixel: where it lands tells the flip and the shift
    moved, _ = augment(x, x.clone(), torch.Generator().manual_seed(0), AugmentationConfig(translate=0.1))
    rows, cols = [], []
    for image in moved[:, 0]:
        r, c = torch.nonzero(image == 1)[0].tolist()
        rows.append(r)
        cols.append(c)
    # a flip sends row 2 near row 17 (and column 3 near 16); a shift moves it by at most 2
    assert any(r <= 4 for r in rows) and any(r >= 15 for r in rows)
    assert any(c <= 5 for c in cols) and any(c >= 14 for c in cols)
    assert all(r <= 4 or r >= 15 for r in rows) and all(c <= 5 or c >= 14 for c in cols)


def test_grid_patches_cover_the_image_and_match_labels():
    images = np.random.default_rng(0).random((2, 70, 50)).astype(np.float32)
    x, y = patch_database(images, images > 0.5, PatchConfig(size=32, stride=16))
    assert x.shape == (2 * 4 * 3, 1, 32, 32)  # rows: 0,16,32,48 over 70 -> padded to 80; cols 0,16,32 over 50
    assert torch.equal(x > 0.5, y > 0.5)
    assert torch.equal(x[0, 0], torch.from_numpy(images[0, :32, :32]))


def test_balanced_patches_are_centred_on_each_class():
    label = np.zeros((1, 64, 64), bool)
    label[0, 30:34, 30:34] = True
    x, y = patch_database(label.astype(np.float32), label, PatchConfig(size=32, sampling="balanced", per_class=10))
    assert len(x) == 20
    assert y[:10, 0, 16, 16].eq(1).all() and y[10:, 0, 16, 16].eq(0).all()


def _smoke_run(tmp_path, name="run", **overrides):
    config = yaml.safe_load(SMOKE.read_text())
    for key, value in overrides.items():
        config[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, tmp_path / name


def test_smoke_run_writes_every_phase_row_and_artifact(tmp_path, capsys):
    config, out = _smoke_run(tmp_path)
    assert main(["train", str(config), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    for row in ("Patch", "Image/Frozen", "Image/Fine-tuned", "Image/Scratch"):
        assert row in printed
    for weights in ("patch", "finetuned", "scratch"):
        assert (out / f"{weights}.safetensors").is_file()
    for row in ("patch", "frozen", "finetuned", "scratch"):
        result = json.loads((out / "metrics" / f"{row}.json").read_text())
        assert set(result) == {"whole", "fov"}
        assert 0 <= result["whole"]["mean"]["auc"] <= 1
    history = list(csv.DictReader((out / "history.csv").open()))
    assert [r["phase"] for r in history] == ["patch"] * 3 + ["finetune"] * 3 + ["scratch"] * 3
    assert set(history[0]) == {"phase", "epoch", "loss", "val_loss", "lr", "seconds"}
    assert yaml.safe_load((out / "config.yaml").read_text())["name"] == "smoke"


def test_same_seed_same_weights(tmp_path):
    for name in ("a", "b"):
        config, out = _smoke_run(tmp_path, name, phases={"patch": {"epochs": 2, "batch_size": 32}})
        assert main(["train", str(config), "--out", str(out), "--quiet"]) == 0
    a, b = load_file(str(tmp_path / "a/patch.safetensors")), load_file(str(tmp_path / "b/patch.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_threshold_validation_scores_at_the_dice_best_threshold_of_the_validation_images(tmp_path, capsys):
    from patch2image.config import load_config
    from patch2image.inference import predict_image
    from patch2image.metrics import best_dice_threshold
    from patch2image.training.images import prepare_data
    from patch2image.weights import load_model

    config, out = _smoke_run(
        tmp_path, phases={"patch": {"epochs": 2, "batch_size": 32}}, evaluation={"threshold": "validation"}
    )
    assert main(["train", str(config), "--out", str(out), "--quiet"]) == 0
    assert "thresholds chosen on validation images" in capsys.readouterr().out
    loaded = load_config(config)
    _, val, _, _ = prepare_data(loaded, out)
    model, _ = load_model(out / "patch.safetensors")
    expected = best_dice_threshold([predict_image(model, image) for image in val.inputs], list(val.label))
    result = json.loads((out / "metrics" / "frozen.json").read_text())
    assert result["whole"]["threshold"] == result["fov"]["threshold"] == pytest.approx(expected)
    assert expected != 0.5


def test_existing_run_dir_is_not_overwritten_without_resume(tmp_path, capsys):
    config, out = _smoke_run(tmp_path, phases={"patch": {"epochs": 1, "batch_size": 32}})
    assert main(["train", str(config), "--out", str(out), "--quiet"]) == 0
    assert main(["train", str(config), "--out", str(out), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err


def _checkpoint_epoch(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()["state"])["epoch"]


def test_sigkill_then_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    phases = {"patch": {"epochs": 4, "batch_size": 8}, "finetune": {"epochs": 8, "batch_size": 1}}
    config, killed = _smoke_run(
        tmp_path, "killed", phases=phases, dataset={"kind": "synthetic", "synthetic_images": 8, "synthetic_size": 128}
    )
    command = [sys.executable, "-m", "patch2image", "train", str(config), "--out", str(killed), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "checkpoints" / "finetune.safetensors"
    deadline = time.time() + 600  # generous: a loaded machine slows the phase before it
    while time.time() < deadline and process.poll() is None:
        if checkpoint.exists() and _checkpoint_epoch(checkpoint) >= 2:
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    interrupted_at = _checkpoint_epoch(checkpoint)
    assert 2 <= interrupted_at < 8
    assert not (killed / "finetuned.safetensors").exists()

    # Resumed in a process like the other two: this one's torch threads may have been changed by earlier tests,
    # and another thread count sums in another order, which changes the last bits of the weights.
    subprocess.run([*command, "--resume"], check=True, capture_output=True)
    uninterrupted = tmp_path / "uninterrupted"
    subprocess.run([*command[:-3], "--out", str(uninterrupted), "--quiet"], check=True, capture_output=True)
    a = load_file(str(killed / "finetuned.safetensors"))
    b = load_file(str(uninterrupted / "finetuned.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = list(csv.DictReader((killed / "history.csv").open()))
    assert [int(r["epoch"]) for r in history if r["phase"] == "finetune"] == list(range(1, 9))


def test_configuration_errors_name_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nphases:\n  patch: {epochs: many}\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "phases.patch.epochs" in err and "expected int" in err and "Traceback" not in err


def test_frozen_batchnorm_fine_tuning_keeps_the_statistics_and_trains_the_rest(tmp_path, capsys):
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(4, 1, 32, 32, generator=generator)
    data = TrainingData(x, (x > 0.6).float())
    for mode, stats_change in (("frozen", False), ("train", True)):
        model = create_network("dense")
        before = {k: v.clone() for k, v in model.state_dict().items()}
        phase = PhaseConfig(epochs=1, batch_size=2, batchnorm=mode)
        fit(model, data, data, "finetune", phase, tmp_path / f"{mode}.safetensors", precision="fp32", quiet=True)
        after = model.state_dict()
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        assert any(k.endswith("running_mean") for k in changed) == stats_change, mode
        assert any(k.endswith("weight") for k in changed), mode  # convolutions and BatchNorm's scale still learn
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nphases:\n  scratch: {batchnorm: frozen}\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "phases.scratch.batchnorm" in capsys.readouterr().err


def test_precise_batchnorm_leaves_the_statistics_of_the_kept_weights(tmp_path):
    generator = torch.Generator().manual_seed(2)
    x = torch.rand(4, 1, 32, 32, generator=generator)
    data = TrainingData(x, (x > 0.6).float())
    for mode, matches in (("precise", True), ("train", False)):
        model = create_network("dense")
        phase = PhaseConfig(epochs=1, batch_size=2, batchnorm=mode)
        fit(model, data, data, "scratch", phase, tmp_path / f"{mode}.safetensors", precision="fp32", quiet=True)
        recomputed = copy.deepcopy(model)
        torch.optim.swa_utils.update_bn([x[:2], x[2:]], recomputed)
        first = "body.1.running_var"
        assert torch.allclose(model.state_dict()[first], recomputed.state_dict()[first]) == matches, mode


def test_every_shipped_configuration_loads(request):
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        if "../shared/datasets" in path.read_text():
            request.getfixturevalue("datasets")  # their dataset paths must exist: skip without the datasets
        config = load_config(path)
        assert config.name == path.stem, path
        assert isinstance(config.augmentation, AugmentationConfig)


def test_seed_on_the_command_line_replaces_the_configurations():
    smoke = ROOT / "configs" / "smoke.yaml"
    assert load_config(smoke).seed != 7 and load_config(smoke, seed=7).seed == 7
    assert build_parser().parse_args(["train", str(smoke), "--out", "x", "--seed", "7"]).seed == 7


def test_a_folder_of_optic_disc_labels_trains_an_optic_disc_model(tmp_path):
    from patch2image.data.synthetic import write_synthetic_dataset
    from patch2image.weights import load_model

    folder = write_synthetic_dataset(tmp_path / "discs", n_train=4, n_test=2, size=64)
    config, out = _smoke_run(
        tmp_path,
        dataset={"kind": "folder", "path": str(folder), "task": "optic_disc"},
        phases={"patch": {"epochs": 1}},
    )
    assert load_config(config).patches.sampling == "balanced"  # the optic disc's sampling, as for IDRiD
    assert main(["train", str(config), "--out", str(out), "--quiet"]) == 0
    assert load_model(out / "patch.safetensors")[1].task == "optic_disc"
    config.write_text(config.read_text().replace("kind: folder", "kind: drive"))
    with pytest.raises(UserError, match="dataset.task: drive is a vessels dataset, not optic_disc"):
        load_config(config)
