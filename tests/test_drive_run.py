"""A real short run on DRIVE, from the command line: train every phase, evaluate, report."""

import json

import pytest
import yaml

from patch2image.cli import main


@pytest.fixture(scope="module")
def drive_run(tmp_path_factory, datasets):
    tmp = tmp_path_factory.mktemp("drive")
    config = {
        "name": "drive-short",
        "network": "light",
        "protocol": "smoke",
        "dataset": {"kind": "drive", "path": str(datasets / "DRIVE")},
        "patches": {"size": 32, "sampling": "grid", "stride": 32},
        "phases": {
            "patch": {"epochs": 1, "batch_size": 32},
            "finetune": {"epochs": 1, "batch_size": 1},
            "scratch": {"epochs": 1, "batch_size": 1},
        },
        "evaluation": {"patch_stride": 16},
    }
    path = tmp / "drive-short.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp / "run"
    assert main(["train", str(path), "--out", str(out), "--quiet"]) == 0
    return out


def test_drive_run_scores_the_20_test_images_in_every_row(drive_run):
    for row in ("patch", "frozen", "finetuned", "scratch", "second_observer"):
        result = json.loads((drive_run / "metrics" / f"{row}.json").read_text())
        assert len(result["whole"]["images"]) == 20 and len(result["fov"]["images"]) == 20
        assert (drive_run / "metrics" / f"{row}.csv").is_file()
    human = json.loads((drive_run / "metrics" / "second_observer.json").read_text())
    # The second observer agrees with the first about as well as the literature says (accuracy ~0.947 in the FOV).
    assert 0.93 < human["fov"]["mean"]["acc"] < 0.96


def test_evaluate_a_run_directory(drive_run, tmp_path, capsys):
    assert main(["evaluate", str(drive_run), "--json", str(tmp_path / "rows.json")]) == 0
    assert "Image/Fine-tuned" in capsys.readouterr().out or "finetuned" in (tmp_path / "rows.json").read_text()
    strict = json.loads((tmp_path / "rows.json").read_text(), parse_constant=lambda token: pytest.fail(token))
    assert set(strict) >= {"patch", "frozen", "finetuned", "scratch"}


def test_evaluate_a_model_on_drive_reproduces_the_run_row(drive_run, datasets, tmp_path):
    out = tmp_path / "eval.json"
    weights = drive_run / "finetuned.safetensors"
    assert main(["evaluate", "--model", str(weights), "--dataset", str(datasets / "DRIVE"), "--json", str(out)]) == 0
    ours = json.loads(out.read_text())
    assert (tmp_path / "eval.csv").is_file()
    row = json.loads((drive_run / "metrics" / "finetuned.json").read_text())
    assert ours["whole"]["mean"]["auc"] == pytest.approx(row["whole"]["mean"]["auc"], abs=2e-3)


def test_report_of_the_run(drive_run, tmp_path):
    assert main(["report", str(drive_run), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.html").is_file()
    tables = (tmp_path / "report" / "tables.md").read_text()
    assert "Image/Fine-tuned" in tables
