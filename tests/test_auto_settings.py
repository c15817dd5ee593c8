"""``precision: auto`` / ``layout: auto``: measured, remembered, kept by a resumed phase, harmless to the run."""

import json

import pytest
import torch
import yaml

from patch2image.cli import main
from patch2image.config import PhaseConfig
from patch2image.networks import create_network
from patch2image.runtime.cache import read_cached_json
from patch2image.training import fit as fit_module
from patch2image.training.auto_settings import CHOICES_FILE, TrainingSettings, candidates, choose_settings
from patch2image.training.fit import TrainingData, fit


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCH2IMAGE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _batch(n=4, size=32):
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, size, size, generator=generator)
    return x, (x > 0.6).float()


def test_fixed_values_are_the_only_candidates():
    assert candidates("fp32", "contiguous") == [TrainingSettings("fp32", "contiguous")]
    assert len(candidates("auto", "channels_last")) == 2
    assert {(c.precision, c.layout) for c in candidates("auto", "auto")} == {
        (p, m) for p in ("fp32", "bf16") for m in ("channels_last", "contiguous")
    }


def test_auto_measures_once_then_remembers_and_touches_neither_weights_nor_random_stream(cache):
    model = create_network("light")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _batch()
    lines = []
    torch.manual_seed(3)
    chosen = choose_settings(model, x, y, "auto", "auto", label="patch", announce=lines.append)
    after_draw = torch.rand(1)
    torch.manual_seed(3)
    assert torch.equal(torch.rand(1), after_draw)  # the measurement drew nothing from the global stream
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert chosen in candidates("auto", "auto")
    assert len(lines) == 1 and lines[0].startswith("patch training settings auto: ") and "fastest" in lines[0]
    (entry,) = read_cached_json(CHOICES_FILE).values()
    assert entry["choice"] == {"precision": chosen.precision, "layout": chosen.layout}
    assert len(entry["seconds_per_step"]) == 4

    again = choose_settings(model, x, y, "auto", "auto", label="patch", announce=lines.append)
    assert again == chosen and "measured earlier" in lines[1]
    other_shape = choose_settings(model, *_batch(2, 64), "auto", "auto", announce=lines.append)
    assert other_shape in candidates("auto", "auto") and len(read_cached_json(CHOICES_FILE)) == 2


def test_a_remembered_choice_outside_the_candidates_is_measured_again(cache):
    model, (x, y) = create_network("light"), _batch()
    choose_settings(model, x, y, "auto", "auto", announce=lambda line: None)
    entries = read_cached_json(CHOICES_FILE)
    for entry in entries.values():
        entry["choice"] = {"precision": "bf16", "layout": "contiguous"}
    (cache / CHOICES_FILE).write_text(json.dumps(entries))
    lines = []
    chosen = choose_settings(model, x, y, "fp32", "auto", announce=lines.append)
    assert chosen.precision == "fp32" and "measured earlier" not in lines[0]


def test_a_resumed_phase_keeps_the_settings_in_its_checkpoint(cache, tmp_path, monkeypatch):
    x, y = _batch(8)
    data, checkpoint, phase = TrainingData(x, y), tmp_path / "patch.safetensors", PhaseConfig(epochs=2, batch_size=4)
    real_epoch, calls = fit_module._train_epoch, []

    def interrupted_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(fit_module, "_train_epoch", interrupted_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        fit(create_network("light"), data, data, "patch", phase, checkpoint, quiet=True)
    monkeypatch.setattr(fit_module, "_train_epoch", real_epoch)
    (entry,) = read_cached_json(CHOICES_FILE).values()
    first = entry["choice"]
    # The machine's remembered choice changes; the resumed phase must not.
    other = next(c for c in candidates("auto", "auto") if (c.precision, c.layout) != tuple(first.values()))
    entry["choice"] = {"precision": other.precision, "layout": other.layout}
    (cache / CHOICES_FILE).write_text(json.dumps({next(iter(read_cached_json(CHOICES_FILE))): entry}))
    rows = fit(create_network("light"), data, data, "patch", phase, checkpoint, quiet=True)
    assert [r["settings"] for r in rows] == [first, first]


def test_a_run_records_what_auto_chose_and_a_fixed_choice_is_used_as_given(cache, tmp_path, capsys):
    config = tmp_path / "fixed.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "fixed",
                "protocol": "smoke",
                "precision": "fp32",
                "layout": "contiguous",
                "dataset": {"kind": "synthetic", "synthetic_images": 6, "synthetic_size": 48},
                "phases": {"patch": {"epochs": 1}, "finetune": {"epochs": 1}, "scratch": {"epochs": 1}},
                "evaluation": {"patch_stride": 16},
            }
        )
    )
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    fixed = {"precision": "fp32", "layout": "contiguous"}
    assert info["training_settings"] == {"patch": fixed, "finetune": fixed, "scratch": fixed}
    assert "training settings auto" not in capsys.readouterr().out


def test_a_bad_layout_is_one_line_naming_the_key(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("name: bad\nlayout: sideways\n")
    assert main(["train", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "layout" in err and "sideways" in err and "Traceback" not in err
