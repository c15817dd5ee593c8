"""Training on several datasets at once, and the robustness augmentation that goes with it."""

import json

import numpy as np
import pytest
import torch
import yaml

from patch2image.cli import main
from patch2image.config import AugmentationConfig, load_config
from patch2image.training.augmentation import augment
from patch2image.training.images import prepare_data
from patch2image.weights import read_weights

TWO_SYNTHETIC = {
    "name": "two",
    "protocol": "smoke",
    "dataset": [
        {"kind": "synthetic", "synthetic_images": 8, "synthetic_size": 64},
        {"kind": "synthetic", "synthetic_images": 8, "synthetic_size": 96},
    ],
    "augmentation": {"scale": [0.7, 1.4], "contrast": 0.3},
    "phases": {"patch": {"epochs": 2}, "finetune": {"epochs": 2}},
    "evaluation": {"patch_stride": 8},
}


def _write(tmp_path, config: dict, name="config.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_two_datasets_are_pooled_at_the_first_ones_scale(tmp_path):
    config = load_config(_write(tmp_path, TWO_SYNTHETIC))
    train, val, test, task = prepare_data(config, tmp_path / "out")
    assert task == "vessels"
    assert len(train.names) == 2 * 6 and len(val.names) == 2 * 2 and len(test.names) == 2 * 2
    # the 96-pixel images were shrunk so that their eye is as wide as in the 64-pixel ones
    first, second = train.fov_diameters[:6], train.fov_diameters[6:]
    assert np.median(second) == pytest.approx(np.median(first), rel=0.05)
    assert all(h <= 68 and w <= 68 for h, w in train.sizes)
    # how far each photograph was shrunk is kept, for the working-scale rule: 1 for the first, 1.5 for the second
    assert np.median(train.shrinks[:6]) == pytest.approx(1, rel=0.05)
    assert np.median(train.shrinks[6:]) == pytest.approx(1.5, rel=0.1)
    assert [n.split("-")[0] for n in test.names] == ["synthetic1"] * 2 + ["synthetic2"] * 2


def test_a_run_on_two_datasets_scores_every_test_image_and_records_both(tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(_write(tmp_path, TWO_SYNTHETIC)), "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "metrics" / "finetuned.json").read_text())
    names = [image["name"] for image in result["whole"]["images"]]
    assert len(names) == 4 and len(set(names)) == 4
    _, metadata = read_weights(out / "finetuned.safetensors")
    assert metadata.dataset == "synthetic+synthetic" and metadata.fold is None
    assert metadata.extra["datasets"] == [{"kind": "synthetic", "fold": None}] * 2
    assert metadata.max_shrink == pytest.approx(1.5, rel=0.15) and metadata.max_zoom == 1.4  # augmentation.scale
    assert sorted(p.stem for p in (out / "predictions" / "finetuned").glob("*.png")) == sorted(names)


def test_hold_out_test_false_trains_on_the_test_images_too_and_scores_no_rows(tmp_path, capsys):
    every = [dict(d, hold_out_test=False) for d in TWO_SYNTHETIC["dataset"]]
    config = load_config(_write(tmp_path, dict(TWO_SYNTHETIC, dataset=[every[0], TWO_SYNTHETIC["dataset"][1]])))
    train, val, test, _ = prepare_data(config, tmp_path / "prepared")
    assert len(train.names) == 6 + 2 + 6 and len(val.names) == 2 * 2  # the first's test images train
    assert [n.split("-")[0] for n in test.names] == ["synthetic2"] * 2  # the second's are still held out

    out = tmp_path / "run"
    assert main(["train", str(_write(tmp_path, dict(TWO_SYNTHETIC, dataset=every))), "--out", str(out), "--quiet"]) == 0
    assert "no test images were held out" in capsys.readouterr().out
    assert not (out / "metrics").exists() and not (out / "predictions").exists()
    _, metadata = read_weights(out / "finetuned.safetensors")
    assert metadata.test_images == [] and metadata.threshold == 0.5


def test_a_list_of_datasets_names_the_item_in_errors(tmp_path, capsys):
    bad = dict(TWO_SYNTHETIC, dataset=[{"kind": "synthetic"}, {"kind": "synthetic", "colour": 1}])
    assert main(["train", str(_write(tmp_path, bad)), "--out", str(tmp_path / "o")]) == 2
    assert "dataset[1].colour: unknown key" in capsys.readouterr().err


def test_fold_applies_to_every_dataset_with_folds(tmp_path, datasets):
    config = {
        "name": "x",
        "dataset": [
            {"kind": "drive", "path": str(datasets / "DRIVE")},
            {"kind": "stare", "path": str(datasets / "STARE"), "fold": 1},
            {"kind": "chase_db1", "path": str(datasets / "CHASE_DB1"), "fold": 1},
        ],
    }
    loaded = load_config(_write(tmp_path, config), fold=3)
    assert [d.fold for d in loaded.datasets] == [None, 3, 3]
    assert loaded.dataset_name == "drive+stare+chase_db1"


def test_vessels_and_optic_disc_datasets_do_not_mix(tmp_path, capsys, datasets):
    config = {
        "name": "x",
        "dataset": [
            {"kind": "drive", "path": str(datasets / "DRIVE")},
            {"kind": "idrid", "path": str(datasets / "IDRiD")},
        ],
    }
    assert main(["train", str(_write(tmp_path, config)), "--out", str(tmp_path / "o")]) == 2
    assert "different tasks" in capsys.readouterr().err


def test_real_datasets_meet_at_one_eye_width(tmp_path, datasets):
    """DRIVE, STARE and CHASE_DB1 photographs differ in size and eye width; pooled, the eyes match."""
    config = {
        "name": "x",
        "dataset": [
            {"kind": "drive", "path": str(datasets / "DRIVE")},
            {"kind": "chase_db1", "path": str(datasets / "CHASE_DB1"), "fold": 1},
        ],
    }
    train, _, test, _ = prepare_data(load_config(_write(tmp_path, config)), tmp_path / "out")
    drive = [d for n, d in zip(train.names, train.fov_diameters, strict=True) if n.startswith("drive-")]
    chase = [d for n, d in zip(train.names, train.fov_diameters, strict=True) if n.startswith("chase_db1-")]
    assert len(drive) == 16 and len(chase) == 19  # fold 1: 19 training, 2 validation, 7 test
    assert np.median(chase) == pytest.approx(np.median(drive), rel=0.02)
    # CHASE_DB1's 999x960 photographs come down to about DRIVE's eye size
    assert all(abs(h - 540) < 60 for h, _ in train.sizes if h != 584)
    assert test.original[-1].original_size == (960, 999)


def test_rescaling_zooms_image_and_label_together():
    x = torch.zeros(4, 1, 40, 40)
    x[:, :, 15:25, 15:25] = 1  # a centred square of side 10
    zoomed, labels = augment(
        x,
        x.clone(),
        torch.Generator().manual_seed(0),
        AugmentationConfig(flip=False, vertical_flip=False, translate=0, scale=[2.0, 2.0]),
    )
    assert set(labels.unique().tolist()) <= {0.0, 1.0}
    assert labels.sum(dim=(1, 2, 3)).tolist() == [400.0] * 4  # side 20
    assert torch.equal(zoomed > 0.5, labels > 0.5)


def test_rotation_turns_image_and_label_together_without_shearing():
    only_rotation = AugmentationConfig(flip=False, vertical_flip=False, translate=0, rotate=90)
    rows, cols = torch.meshgrid(torch.arange(40) - 19.5, torch.arange(80) - 39.5, indexing="ij")
    disc = ((rows**2 + cols**2) <= 12**2).float().expand(6, 1, 40, 80).clone()  # centred: a turn keeps it
    turned, labels = augment(disc, disc.clone(), torch.Generator().manual_seed(0), only_rotation)
    assert set(labels.unique().tolist()) <= {0.0, 1.0} and torch.equal(turned > 0.5, labels > 0.5)
    # on a 2:1 image a turn computed in normalised coordinates would make the disc an ellipse
    assert (labels != disc).sum(dim=(1, 2, 3)).max() <= 30  # interpolation at the rim only; an ellipse: 75-325

    bar = torch.zeros(6, 1, 40, 80)
    bar[:, :, 19:21, 10:70] = 1  # a horizontal vessel through the centre
    _, labels = augment(bar, bar.clone(), torch.Generator().manual_seed(0), only_rotation)
    assert (labels[:, :, :10].sum(dim=(1, 2, 3)) > 0).sum() >= 3  # most turned far enough to leave the middle rows


def test_contrast_changes_keep_the_input_in_range_and_its_order():
    x = torch.linspace(0, 1, 100).reshape(1, 1, 10, 10).repeat(8, 1, 1, 1)
    changed, _ = augment(
        x,
        x.clone(),
        torch.Generator().manual_seed(0),
        AugmentationConfig(flip=False, vertical_flip=False, translate=0, contrast=1.0),
    )
    assert changed.min() >= 0 and changed.max() <= 1
    flat = changed.reshape(8, -1)
    assert torch.all(flat[:, 1:] >= flat[:, :-1])  # a power keeps the order of grey levels
    assert not torch.allclose(changed, x)


def test_without_robustness_augmentation_the_random_stream_is_the_papers():
    x = torch.rand(6, 1, 16, 16)
    plain = augment(x, x.clone(), torch.Generator().manual_seed(1), AugmentationConfig())
    off_config = AugmentationConfig(scale=None, rotate=0.0, contrast=0.0)
    off = augment(x, x.clone(), torch.Generator().manual_seed(1), off_config)
    assert torch.equal(plain[0], off[0])


def test_no_second_observer_row_when_only_some_test_images_have_one(tmp_path):
    """Three datasets in one run, one without a second observer: training ends, with no row over other images."""
    import types

    from patch2image.training.run_directory import RunDirectory

    def sample(name, second):
        label = np.zeros((8, 8), bool)
        label[2:5, 2:5] = True
        return types.SimpleNamespace(name=name, label=label, fov=np.ones((8, 8), bool), second_label=second)

    run = types.SimpleNamespace(out=tmp_path, test=types.SimpleNamespace(original=[]))
    run.test.original = [sample("stare", np.ones((8, 8), bool)), sample("les_av", None)]
    RunDirectory.score_second_observer(run)
    assert not (tmp_path / "metrics").exists()
    run.test.original = [sample("stare", np.ones((8, 8), bool))]
    RunDirectory.score_second_observer(run)
    assert (tmp_path / "metrics" / "second_observer.json").is_file()
