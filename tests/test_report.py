"""The report, from fake run directories laid out as ``patch2image train`` writes them."""

import csv
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from PIL import Image

from patch2image.cli import main
from patch2image.errors import UserError
from patch2image.evaluation import ROW_LABELS, ROWS, evaluate_cases, write_evaluation
from patch2image.report import PAGE_MARKER, build_report

PHASES = {"patch": "patch", "frozen": "patch", "finetuned": "finetune", "scratch": "scratch"}


def make_run(root, name, network, kind, fold=None, rows=ROWS, images=2, seed=0, second=True):
    """A run directory with tiny random images: config, history, metrics, predictions, run.json."""
    rng = np.random.default_rng(seed)
    run = root / name
    (run / "metrics").mkdir(parents=True)
    config = {"name": name, "network": network, "seed": 0, "protocol": "paper", "dataset": {"kind": kind, "fold": fold}}
    config["phases"] = {phase: {"epochs": 300} for phase in ("patch", "finetune", "scratch")}
    config["evaluation"] = {"patch_stride": 2}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    names = [f"{kind}_{fold or 0}_{i:02d}" for i in range(images)]
    labels = {n: rng.random((24, 30)) < 0.2 for n in names}
    fov = np.zeros((24, 30), bool)
    fov[2:-2, 3:-3] = True
    for n in names:
        save_png(run / "predictions" / "image" / f"{n}.png", rng.integers(0, 255, (24, 30, 3)))
        save_png(run / "predictions" / "label" / f"{n}.png", labels[n] * 255)
    for row in rows:
        cases = []
        for n in names:
            prob = np.clip(labels[n] * 0.35 + rng.random((24, 30)) * 0.6, 0, 1).astype(np.float32)
            save_png(run / "predictions" / row / f"{n}.png", prob * 255)
            cases.append((n, prob, labels[n], fov))
        write_evaluation(evaluate_cases(cases), run / "metrics" / f"{row}.json")
    if second:
        cases = [(n, (labels[n] ^ (rng.random((24, 30)) < 0.05)).astype(np.float32), labels[n], fov) for n in names]
        write_evaluation(evaluate_cases(cases), run / "metrics" / "second_observer.json")
    with (run / "history.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["phase", "epoch", "loss", "val_loss", "lr", "seconds"])
        for phase in dict.fromkeys(PHASES[row] for row in rows):
            for epoch in range(1, 5):
                writer.writerow([phase, epoch, 1 / epoch, 1.2 / epoch, 1.0 if epoch < 3 else 0.2, 0.5])
    seconds = {PHASES[row]: 12.5 for row in rows}
    (run / "run.json").write_text(json.dumps({"wall_seconds": seconds, "network": network, "parameters": 8889}))
    return run


def save_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """DRIVE: Light complete, Mini-Unet without scratch; STARE: Light in two folds, one without frozen."""
    root = tmp_path_factory.mktemp("runs")
    make_run(root, "drive-light", "light", "drive", seed=1)
    make_run(root, "drive-mini-unet", "mini-unet", "drive", rows=("patch", "frozen", "finetuned"), seed=2)
    make_run(root, "stare-light-fold1", "light", "stare", fold=1, seed=3)
    make_run(root, "stare-light-fold2", "light", "stare", fold=2, rows=("patch", "finetuned", "scratch"), seed=4)
    out = root / "report"
    names = ("drive-light", "drive-mini-unet", "stare-light-fold1", "stare-light-fold2")
    return root, out, build_report([root / name for name in names], out)


TABLE_TITLES = [
    f"{dataset}: {protocol}, {aggregation}"
    for dataset in ("DRIVE", "STARE")
    for aggregation in ("mean over images", "pooled pixels")
    for protocol in ("whole image", "inside the FOV")
]


def test_markdown_tables_hold_every_row(report):
    _, out, _ = report
    markdown = (out / "tables.md").read_text()
    tables = re.split(r"^### ", markdown, flags=re.M)[1:]
    assert [t.splitlines()[0] for t in tables] == [*TABLE_TITLES, "Runs"]
    for table in tables[:-1]:
        networks = ("Light", "Mini-Unet") if table.startswith("DRIVE") else ("Light",)
        for network in networks:
            block = table.split(f"| {network} |")[1]
            labels = re.findall(r"^\|[^|]*\| (Image/\S+|Patch) \|", f"| {network} |" + block, flags=re.M)
            assert labels[:4] == [ROW_LABELS[row] for row in ROWS]
        assert "| Human | 2nd observer | ours |" in table
    drive_whole_mean, drive_fov_mean = tables[0], tables[1]
    # The paper's Table 1 beside ours, with the difference; whole image only.
    assert "|  |  | paper | 0.9811 | 0.9806 | 0.7996 | 0.9646 | 0.7970 | 0.6629 | 0.8861 |" in drive_whole_mean
    assert drive_whole_mean.count("| paper |") == 8 and drive_whole_mean.count("| Δ |") == 7
    assert "| Image/Scratch | missing | — | — |" in drive_whole_mean  # Mini-Unet skipped scratch
    assert "paper" not in drive_fov_mean.split("\n\n")[1]
    stare_whole_mean = tables[4]
    assert stare_whole_mean.count("| paper |") == 4 and stare_whole_mean.count("| Δ |") == 4  # Table 2 gives every row
    assert "| Image/Frozen | ours (1/2 folds) |" in stare_whole_mean
    assert "4 test images, 2 cross-validation folds merged" in stare_whole_mean
    epochs = "4 of 300 / 4 of 300 / 4 of 300"  # each phase's history rows, of the configured epochs
    assert f"| stare-light-fold2 | STARE | Light | 2 | 8,889 | {epochs} | 2 | 12.5 | 12.5 | 12.5 |" in tables[-1]


def test_numbers_in_tables_are_the_evaluations(report):
    root, out, _ = report
    result = json.loads((root / "drive-light" / "metrics" / "finetuned.json").read_text())
    ours = result["fov"]["pooled"]
    table = (out / "tables.md").read_text().split("### DRIVE: inside the FOV, pooled pixels")[1]
    line = next(line for line in table.splitlines() if "Image/Fine-tuned" in line)
    assert f"{ours['auc']:.4f} | {ours['spec']:.4f}" in line
    merged = json.loads((out / "metrics" / "stare-light" / "finetuned.json").read_text())
    assert len(merged["whole"]["images"]) == 4
    assert (out / "metrics" / "stare-light" / "frozen.csv").read_text().count("\n") == 1 + 2 * 2


def test_latex_tables(report):
    _, out, _ = report
    latex = (out / "tables.tex").read_text()
    assert latex.count(r"\begin{tabular}") == len(TABLE_TITLES) + 1
    for label in ROW_LABELS.values():
        assert latex.count(f"& {label} &") >= len(TABLE_TITLES)
    assert r"& $\Delta$ &" in latex and "& -- &" in latex
    assert r"\label{tab:drive-whole-mean}" in latex


def test_figures_written(report):
    _, out, _ = report
    names = sorted(p.name for p in (out / "figures").iterdir())
    assert names == [
        "drive-jaccard.png",
        "drive-light-curves.png",
        "drive-mini-unet-curves.png",
        "drive-panel-drive_0_00.png",
        "stare-jaccard.png",
        "stare-light-fold1-curves.png",
        "stare-light-fold2-curves.png",
        "stare-panel-stare_1_00.png",
    ]
    for name in names:
        with Image.open(out / "figures" / name) as image:
            assert image.width > 100 and image.height > 100


def test_page_renders_in_headless_chromium(report, tmp_path):
    _, _, page = report
    browser = shutil.which("chromium")
    if browser is None:
        if not os.environ.get("CI"):
            pytest.skip("chromium is not installed (.ci/run installs it; CI must run this test)")
        pytest.fail("chromium is not installed, and CI must run the browser test")
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)}
    )
    dom = done.stdout
    check = re.search(r'<p id="render-check"([^>]*)>', dom)
    assert check, f"no render check in the DOM; chromium said: {done.stderr[-2000:]}"
    values = dict(re.findall(r'data-([a-z-]+)="(\d+)"', check.group(1)))
    assert values, f"the page's script did not run: {check.group(0)}"
    assert int(values["images-total"]) == 8  # 2 box plots, 2 panels, 4 training curves
    assert values["images-loaded"] == values["images-total"]
    assert int(values["tables"]) == len(TABLE_TITLES) + 1
    for title in TABLE_TITLES:
        assert f"<strong>{title}.</strong>" in dom


def test_report_refuses_what_it_cannot_read(tmp_path, report):
    root, _, _ = report
    with pytest.raises(UserError, match="not a run directory"):
        build_report([tmp_path], tmp_path / "out")
    with pytest.raises(UserError, match="no test image named nope"):
        build_report([root / "drive-light"], tmp_path / "out", ["nope"])
    twin = make_run(tmp_path, "drive-light-again", "light", "drive", rows=("finetuned",))
    with pytest.raises(UserError, match="two drive runs of light"):
        build_report([root / "drive-light", twin], tmp_path / "out")


def test_command_line_arguments_and_folder_of_runs(tmp_path, capsys):
    make_run(tmp_path / "runs", "own-light", "light", "folder", rows=("finetuned",), second=False)
    make_run(tmp_path / "runs", "own-dense", "dense", "folder", rows=("patch", "finetuned"), second=False, seed=5)
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--images", "folder_0_01"]) == 0
    assert "report.html" in capsys.readouterr().out
    markdown = (tmp_path / "out" / "tables.md").read_text()
    assert "| Light | Patch | missing |" in markdown and "| Dense | Patch | ours |" in markdown
    assert "| paper |" not in markdown and "Human" not in markdown  # no paper figures, no second observer
    assert (tmp_path / "out" / "figures" / "folder-panel-folder_0_01.png").is_file()


def test_page_keeps_its_introduction_and_regenerates_the_tables(tmp_path, report):
    root, _, _ = report
    page = tmp_path / "docs" / "drive.md"
    page.parent.mkdir()
    page.write_text("# DRIVE\n\nHow these runs were made.\n")
    for _ in range(2):  # a second report replaces the tables, not appends
        build_report([root / "drive-light"], tmp_path / "docs" / "drive", markdown_page=page)
    text = page.read_text()
    intro, marker, generated = text.partition(PAGE_MARKER)
    assert intro == "# DRIVE\n\nHow these runs were made.\n" and marker
    assert generated.count("### DRIVE: whole image, mean over images") == 1
    tables = (tmp_path / "docs" / "drive" / "tables.md").read_text().split("\n", 2)[2]  # less its title
    links = (
        "Figures: [`drive/figures/`](drive/figures/); everything in one page: [`drive/report.html`](drive/report.html)."
    )
    assert generated == f"\n\n{tables}\n{links}\n"


def test_malformed_or_partial_evaluations(tmp_path):
    run = make_run(tmp_path, "own-light", "light", "folder", rows=("patch", "finetuned"), second=False)
    result = json.loads((run / "metrics" / "patch.json").read_text())
    del result["fov"]  # an evaluation from a tool that scored the whole image only
    (run / "metrics" / "patch.json").write_text(json.dumps(result))
    build_report([run], tmp_path / "out")
    tables = re.split(r"^### ", (tmp_path / "out" / "tables.md").read_text(), flags=re.M)
    assert "| Light | Patch | ours |" in tables[1] and "| Light | Patch | missing |" in tables[2]
    (run / "metrics" / "finetuned.json").write_text('{"whole": {"mean": {}}}')
    with pytest.raises(UserError, match="finetuned.json: not an evaluation result"):
        build_report([run], tmp_path / "out")


def _model_evaluation(path, model, trained_on, dataset, split, seed):
    rng = np.random.default_rng(seed)
    label = rng.random((20, 20)) < 0.3
    prob = np.clip(label * 0.6 + rng.random((20, 20)) * 0.5, 0, 1)
    result = evaluate_cases([("a", prob, label, None), ("b", prob[::-1], label[::-1], None)])
    result["source"] = {"model": model, "trained_on": trained_on, "dataset": dataset, "split": split, "threshold": 0.5}
    write_evaluation(result, path)
    return result


def test_evaluation_files_make_the_cross_dataset_matrix(tmp_path):
    paths, results = [], {}
    for i, (model, trained_on, dataset, split) in enumerate(
        [
            ("drive-model", "drive", "drive", "test"),
            ("drive-model", "drive", "stare", "all"),
            ("without-stare", "drive+chase_db1", "stare", "all"),
        ]
    ):
        paths.append(tmp_path / f"{i}.json")
        results[model, dataset] = _model_evaluation(paths[-1], model, trained_on, dataset, split, seed=i)
    page = tmp_path / "cross.md"
    page.write_text("# Across datasets\n\nHand-written.\n")
    build_report(paths, tmp_path / "out", markdown_page=page)
    text = page.read_text()
    assert text.startswith("# Across datasets\n\nHand-written.\n")
    fov = text[text.index("inside the field of view") :]
    rows = {
        line.split(" | ")[0].strip("| "): line
        for line in fov.splitlines()
        if line.startswith("| ") and "---" not in line
    }
    mean = results["drive-model", "stare"]["fov"]["mean"]
    assert f"{mean['auc']:.4f} / {mean['dice']:.4f}" in rows["drive-model"]
    assert rows["drive-model"].count(" * ") + rows["drive-model"].endswith("* |") >= 1  # in-domain cell marked
    assert rows["without-stare"].split(" | ")[1] == "DRIVE, CHASE_DB1"
    assert "—" in rows["without-stare"]  # not scored on DRIVE
    assert "STARE: all (2 images)" in text


def test_the_same_model_on_the_same_dataset_twice_is_refused(tmp_path):
    for name in ("a", "b"):
        _model_evaluation(tmp_path / f"{name}.json", "m", "drive", "stare", "all", seed=0)
    with pytest.raises(UserError, match="both score m on stare"):
        build_report([tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "out")
