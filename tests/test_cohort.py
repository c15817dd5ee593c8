"""``patch2image cohort``: a cohort on a 2-worker Dask cluster, killed workers, a killed command, resumes.

One local cluster of two worker processes serves the module; the command killed outright runs in a
process of its own, with a cluster of its own.
"""

import os
import signal
import subprocess
import sys
import time
import types
from io import StringIO
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest
import torch
from conftest import contrasted_light
from PIL import Image

from patch2image import cli
from patch2image.cohort import Settings, read_inputs, run_cohort
from patch2image.cohort.progress import Progress
from patch2image.cohort.store import Store
from patch2image.cohort.work import prepared
from patch2image.networks import create_network
from patch2image.weights import save_weights

SYNTHETIC = 200
BROKEN = ("broken.png", "notes.jpg", "empty.tif")
DRIVE_TEST = "DRIVE/test/images"
VARIABLE = ("seconds",)
"""Columns that differ between two runs of the same photographs: the time each took."""


def fundus(size: int, seed: int) -> np.ndarray:
    """A synthetic photograph: a textured reddish disc (the field of view) on black."""
    y, x = np.mgrid[:size, :size]
    inside = (y - size / 2) ** 2 + (x - size / 2) ** 2 <= (0.45 * size) ** 2
    rng = np.random.default_rng(seed)
    rgb = np.zeros((size, size, 3), np.uint8)
    rgb[inside] = np.array([170, 80, 30]) + rng.integers(0, 60, (int(inside.sum()), 1))
    return rgb


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    """Light with its logits spread over (0, 1), segmenting photographs at their own size."""
    metadata = {"network": "light", "preprocessing": {"order": "clahe-gamma", "gamma": 1.7, "clahe": "opencv"}}
    return contrasted_light(fundus(48, 1), metadata, tmp_path_factory.mktemp("model") / "light.safetensors")


@pytest.fixture(scope="module")
def photos(tmp_path_factory, request) -> Path:
    """200 small synthetic photographs in two subfolders, two real DRIVE ones where present, three broken files."""
    folder = tmp_path_factory.mktemp("cohort")
    for i in range(SYNTHETIC):
        sub = folder / f"site{i % 2}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(fundus(48, i)).save(sub / f"p{i:03d}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"cut short" * 4)
    (folder / "notes.jpg").write_text("not a photograph")
    (folder / "empty.tif").write_bytes(b"")
    try:
        drive = request.getfixturevalue("datasets") / DRIVE_TEST
    except pytest.skip.Exception:  # without the real datasets, the synthetic cohort alone
        return folder
    for name in ("01_test.tif", "02_test.tif"):
        (folder / name).symlink_to(drive / name)
    return folder


@pytest.fixture(scope="module")
def client():
    """Two worker processes of one thread; a chunk is retried once on another worker after its worker dies."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 1, "distributed.scheduler.worker-saturation": 1.0}):
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
            with Client(cluster) as client:
                yield client


def settings_for(model: str, out: Path, **options) -> Settings:
    return prepared(Settings(model=model, backend="torch", precision="fp32", out_dir=str(out), threads=1, **options))


def comparable(table) -> dict:
    return {name: table[name].to_pylist() for name in table.column_names if name not in VARIABLE}


def batch_files(out: Path) -> list[str]:
    return Store(out).read_batches(("file",))["file"].to_pylist()


@pytest.fixture(scope="module")
def uninterrupted(model, photos, client, tmp_path_factory):
    """One run of the whole cohort, masks saved, nothing stopped: the table every other run must equal."""
    out = tmp_path_factory.mktemp("uninterrupted")
    summary = run_cohort(read_inputs(photos), out, settings_for(model, out, save_masks=True), client)
    return out, summary, pq.read_table(out / "results.parquet")


def test_every_photograph_has_one_row_and_broken_files_their_reason(uninterrupted, photos):
    out, summary, table = uninterrupted
    rows = table.to_pylist()
    expected = len(list(photos.rglob("*.*")))
    assert summary.photographs == summary.done_now == len(rows) == expected
    assert len({row["path"] for row in rows}) == len(rows)
    failed = {Path(row["path"]).name: row["status"] for row in rows if row["status"] != "ok"}
    assert set(failed) == set(BROKEN) and summary.failed == 3
    assert all(name in reason and "\n" not in reason for name, reason in failed.items())
    good = [row for row in rows if row["status"] == "ok"]
    assert all(row["vessel_pixels"] > 0 and row["model"] and row["software_version"] for row in good)
    assert all((out / row["vessels_mask"]).is_file() and row["vessels_mask"].startswith("masks/") for row in good)
    assert sorted(batch_files(out)) == sorted(os.path.abspath(p) for p in photos.rglob("*.*"))


def test_results_equal_segments_outputs(uninterrupted, model, photos, tmp_path):
    out, _, table = uninterrupted
    chosen = [r for r in table.to_pylist() if r["status"] == "ok" and (r["width"] > 48 or r["path"].endswith("7.png"))]
    segmented = tmp_path / "segmented"
    argv = ["segment", *(r["path"] for r in chosen), "--model", model, "--backend", "torch", "--precision", "fp32"]
    assert cli.main([*argv, "--out", str(segmented), "--quiet"]) == 0
    for row in chosen:
        stem = Path(row["path"]).name.split(".")[0]
        for kind in ("prob", "mask"):  # the pixels: segment's PNGs also carry a text chunk on the working scale
            ours = np.asarray(Image.open(out / row[f"vessels_{kind}"]))
            np.testing.assert_array_equal(ours, np.asarray(Image.open(segmented / f"{stem}_{kind}.png")))
        mask = np.asarray(Image.open(segmented / f"{stem}_mask.png")) > 0
        assert row["vessel_pixels"] == mask.sum() > 0


def test_a_worker_killed_mid_run_loses_and_repeats_nothing(uninterrupted, model, photos, client, tmp_path):
    pids = list(client.run(os.getpid).values())
    killed = []

    def kill_a_worker(rows_done: int) -> None:
        if rows_done >= 40 and not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(rows_done)

    summary = run_cohort(
        read_inputs(photos), tmp_path, settings_for(model, tmp_path, save_masks=True), client, on_rows=kill_a_worker
    )
    assert killed and summary.done_now == summary.photographs
    table = pq.read_table(tmp_path / "results.parquet")
    assert comparable(table) == comparable(uninterrupted[2])
    files = batch_files(tmp_path)
    assert len(files) == len(set(files)) == summary.photographs  # every photograph exactly once
    _wait_for_workers(client, 2)


def _wait_for_workers(client, count: int) -> None:
    client.wait_for_workers(count, timeout=120)


def test_a_command_killed_outright_resumes_to_the_same_table(uninterrupted, model, photos, client, tmp_path):
    out = tmp_path / "out"
    argv = ["cohort", str(photos), "--out", str(out), "--model", model, "--backend", "torch", "--precision", "fp32",
            "--save-masks", "--batch-size", "10"]  # fmt: skip
    launch = [sys.executable, "-m", "patch2image", *argv, "--workers", "2"]
    command = subprocess.Popen(launch, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 150
        while len(Store(out).part_files()) < 2 and command.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert command.poll() is None, command.stderr.read().decode()
        workers = psutil.Process(command.pid).children(recursive=True)
        command.send_signal(signal.SIGKILL)
    finally:
        command.kill()
        command.wait()
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive  # the local cluster's workers go with the command
    before = batch_files(out)
    assert 10 <= len(before) < len(uninterrupted[2])

    # The rerun on the module's cluster: the same table whichever workers finish the job.
    assert cli.main([*argv, "--scheduler", client.scheduler.address, "--quiet"]) == 1  # the broken files
    after = batch_files(out)
    assert len(after) == len(set(after)) == len(uninterrupted[2])  # only the rest was done, none twice
    assert comparable(pq.read_table(out / "results.parquet")) == comparable(uninterrupted[2])


def test_optic_disc_rows_equal_segments_disc_table(model, photos, client, tmp_path):
    disc = tmp_path / "disc.safetensors"
    torch.manual_seed(1)
    metadata = {"network": "light", "task": "optic_disc", "threshold": 1e-9,
                "preprocessing": {"order": "clahe-gamma", "gamma": 1.7, "clahe": "opencv"}}  # fmt: skip
    save_weights(disc, create_network("light"), metadata)
    inputs = read_inputs(str(photos / "site1" / "p01*.png"))
    run_cohort(inputs, tmp_path / "out", settings_for(model, tmp_path / "out", disc_model=str(disc)), client)
    rows = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()
    argv = ["segment", *(r["path"] for r in rows), "--model", str(disc), "--backend", "torch", "--precision", "fp32"]
    assert cli.main([*argv, "--out", str(tmp_path / "segmented"), "--quiet"]) == 0
    table = (tmp_path / "segmented" / "optic_disc.csv").read_text().splitlines()[1:]
    expected = {line.split(",")[0]: [float(v) for v in line.split(",")[1:]] for line in table}
    assert len(rows) == len(expected) == 5
    for row in rows:
        found = [row[f"optic_disc_{name}"] for name in ("centre_x", "centre_y", "diameter")]
        assert found == expected[Path(row["path"]).name] and row["disc_model"] == str(disc)


def test_manifest_ids_are_carried_and_changed_settings_are_new_keys(model, photos, client, tmp_path):
    manifest = tmp_path / "manifest.csv"
    names = [*sorted((photos / "site0").iterdir())[:6], tmp_path / "missing.png"]
    lines = ["participant,eye,path"] + [f"{i:04d},{'LR'[i % 2]},{p}" for i, p in enumerate(names)]
    manifest.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"

    def run(**options):
        return run_cohort(read_inputs(manifest), out, settings_for(model, out, **options), client, csv=True)

    first = run()
    table = pq.read_table(out / "results.parquet")
    assert table.column_names[:4] == ["participant", "eye", "path", "status"]
    assert table["participant"].to_pylist() == [f"{i:04d}" for i in range(7)]
    assert table["status"].to_pylist()[-1] == f"{tmp_path / 'missing.png'}: no such file"
    assert (out / "results.csv").read_text().splitlines()[1].startswith('"0000","L"')
    again = run()
    assert (first.done_now, again.done_now, again.done_before) == (7, 0, 7)
    stricter = run(threshold=0.9)  # another threshold is another result: done again, kept apart
    assert stricter.done_now == 7
    fewer = pq.read_table(out / "results.parquet")["vessel_pixels"].to_pylist()[:6]
    assert all(a < b for a, b in zip(fewer, table["vessel_pixels"].to_pylist()[:6], strict=True))


def test_bad_inputs_are_one_line(model, tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text("participant,file\n1,a.png\n")
    Image.fromarray(fundus(48, 0)).save(tmp_path / "a.png")
    cases = [
        ([str(manifest)], "no 'path' column"),
        ([str(tmp_path / "nothing")], "no such file or folder"),
        ([str(tmp_path / "*.gif")], "pattern matches no image file"),
        ([str(tmp_path), "--workers", "0"], "--workers 0"),
        ([str(tmp_path), "--model", str(tmp_path / "none.safetensors")], "no such shipped model or file"),
    ]
    for argv, message in cases:
        assert cli.main(["cohort", *argv, "--out", str(tmp_path / "out"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_progress_lines_off_a_terminal():
    stream = StringIO()
    progress = Progress(10, stream=stream, log_seconds=0)
    progress.update(4, failed=1)
    line = stream.getvalue().strip()
    assert line.startswith("cohort: 4 of 10 photographs done (1 failed)") and "per second" in line


def test_measure_gives_the_masks_and_the_scale_to_the_measurements(monkeypatch):
    from patch2image.cohort.work import measurement_columns, measurements

    seen = {}

    def measure_masks(vessels, fov, disc=None, *, microns_per_pixel=None, fov_degrees=None):
        seen.update(vessels=vessels, fov=fov, disc=disc, microns_per_pixel=microns_per_pixel, fov_degrees=fov_degrees)
        return {"vessel_density": np.float32(0.5), "branch_points": np.int64(3), "tortuosity": float("nan")}

    fake = types.ModuleType("patch2image.measure")
    fake.COLUMNS, fake.measure_masks = ("vessel_density", "branch_points", "tortuosity"), measure_masks
    monkeypatch.setitem(sys.modules, "patch2image.measure", fake)
    vessels, fov = np.eye(8, dtype=bool), np.ones((8, 8), bool)
    assert measurement_columns() == fake.COLUMNS
    row = measurements(vessels, fov, None, 7.5, None)
    assert row == {"vessel_density": 0.5, "branch_points": 3.0, "tortuosity": None}  # one type per column
    assert seen["vessels"] is vessels and seen["fov"] is fov and seen["disc"] is None
    assert (seen["microns_per_pixel"], seen["fov_degrees"]) == (7.5, None)


def test_measured_rows_equal_the_measurements_of_segments_masks(model, photos, client, tmp_path):
    measure = pytest.importorskip("patch2image.measure")
    from patch2image.data import field_of_view_mask, read_image

    inputs = read_inputs(str(photos / "site0" / "p01*.png"))
    settings = settings_for(model, tmp_path, measure=True, save_masks=True, fov_degrees=45.0)
    run_cohort(inputs, tmp_path, settings, client)
    rows = pq.read_table(tmp_path / "results.parquet").to_pylist()
    assert rows and all(row["status"] == "ok" for row in rows)
    for row in rows:
        vessels = np.asarray(Image.open(tmp_path / row["vessels_mask"])) > 0
        expected = measure.measure_masks(vessels, field_of_view_mask(read_image(row["path"])), None, fov_degrees=45.0)
        for name in measure.COLUMNS:
            value = expected[name]
            if value is None or (isinstance(value, float) and np.isnan(value)):
                assert row[name] is None, name
            elif isinstance(value, str):  # a reason column
                assert row[name] == value, name
            else:
                assert row[name] == pytest.approx(float(value)), name


def test_a_photograph_that_kills_every_worker_fails_with_the_reason(model, photos, client, tmp_path):
    # Last of the module: the nannies restart the workers it kills, at their own pace.
    from patch2image.cohort.work import segment_chunk

    def crashes_on_p005(settings, files):  # pickled by value: it travels to the workers as it is
        if any(f.endswith("p005.png") for f in files):
            os._exit(1)
        return segment_chunk(settings, files)

    inputs = read_inputs(str(photos / "site1" / "p00*.png"))
    summary = run_cohort(inputs, tmp_path, settings_for(model, tmp_path), client, chunk=2, work=crashes_on_p005)
    statuses = {Path(p).name: s for p, s in zip(*(pq.read_table(tmp_path / "results.parquet")[c].to_pylist()
                                                  for c in ("path", "status")), strict=True)}  # fmt: skip
    assert summary.failed == 1 and "every worker that segmented it died" in statuses["p005.png"]
    assert all(status == "ok" for name, status in statuses.items() if name != "p005.png") and len(statuses) == 5
