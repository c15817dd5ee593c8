"""``patch2image segment``: inputs, outputs, per-file errors, real DRIVE and IDRiD photographs."""

import multiprocessing
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from conftest import contrasted_light
from PIL import Image

import patch2image.inference as inference
import patch2image.segment as segment
from patch2image.inference import Segmenter
from patch2image.networks import create_network
from patch2image.segment import Outputs, expand_inputs, output_stem, segment_files
from patch2image.weights import save_weights

IDRID_TEST = "IDRiD/A. Segmentation/1. Original Images/b. Testing Set"


def run_cli(argv: list[str]) -> int:
    """``patch2image segment ARGV`` as the command line runs it."""
    from patch2image import cli

    return cli.main(["segment", *argv])


def fundus(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A synthetic photograph: a textured reddish disc on black."""
    y, x = np.mgrid[:height, :width]
    inside = (y - height / 2) ** 2 + (x - width / 2) ** 2 <= (0.45 * min(height, width)) ** 2
    rng = np.random.default_rng(seed)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[inside] = np.array([170, 80, 30]) + rng.integers(0, 60, (int(inside.sum()), 1))
    return rgb


def weights(path, metadata: dict) -> str:
    torch.manual_seed(0)
    metadata = {
        "network": "light",
        "preprocessing": {"order": "clahe-gamma", "gamma": 1.7, "clahe": "opencv"},
    } | metadata
    save_weights(path, create_network("light"), metadata)
    return str(path)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    """Random-init Light with no scale information: photographs are segmented at their own size."""
    return weights(tmp_path_factory.mktemp("model") / "light.safetensors", {"input_size": None, "fov_diameter": None})


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(fundus(60, 80, 1)).save(images / "a.png")
    Image.fromarray(fundus(64, 64, 2)).save(images / "b.jpg")
    Image.fromarray(fundus(50, 70, 3)).save(images / "c.tif")
    (images / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    (images / "notes.txt").write_text("not an image")
    return images


def outputs(out, stem):
    return [out / f"{stem}_{kind}.png" for kind in ("prob", "mask", "overlay")]


def test_folder_with_a_corrupt_file(model, folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli([str(folder), "--model", model, "--out", str(out), "--quiet"]) == 1
    captured = capsys.readouterr()
    for stem, size in [("a", (60, 80)), ("b", (64, 64)), ("c", (50, 70))]:
        prob, mask, over = (np.asarray(Image.open(p)) for p in outputs(out, stem))
        assert prob.shape == mask.shape == size and prob.dtype == np.uint16
        assert over.shape == (*size, 3)
        assert set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, prob >= 32768)  # threshold 0.5 on the 16-bit map
    assert not any(p.exists() for p in outputs(out, "bad"))
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad.png" in errors[0]
    assert "notes.txt" not in captured.err and "Traceback" not in captured.err
    assert "segmented 3 of 4 images" in captured.out
    assert [p.name for p in out.glob(".*")] == [segment.MANIFEST]  # no temporary files left behind


def test_globs_and_missing_inputs(model, folder, tmp_path, capsys):
    out = tmp_path / "out"
    code = run_cli([str(folder / "[ab].*"), str(folder / "missing.png"), "--model", model, "--out", str(out)])
    assert code == 1
    written = sorted(p.name for p in out.iterdir() if p.name != segment.MANIFEST)
    assert written == sorted(p.name for s in "ab" for p in outputs(out, s))
    assert "missing.png" in capsys.readouterr().err


def test_all_good_inputs_exit_zero(model, folder, tmp_path, capsys):
    out = tmp_path / "out"
    code = run_cli([str(folder / "a.png"), str(folder / "c.tif"), "--model", model, "--out", str(out), "--tta"])
    assert code == 0
    assert all(p.exists() for s in "ac" for p in outputs(out, s))
    assert "error" not in capsys.readouterr().err


def test_patch_mode_and_threshold(model, folder, tmp_path):
    out = tmp_path / "out"
    argv = [str(folder / "a.png"), "--model", model, "--out", str(out), "--mode", "patch", "--stride", "8"]
    assert run_cli([*argv, "--threshold", "0"]) == 0
    assert (np.asarray(Image.open(out / "a_mask.png")) == 255).all()


def test_the_models_own_threshold_is_the_default(folder, tmp_path):
    metadata = {"input_size": None, "fov_diameter": None, "threshold": 153.5 / 255}
    model = weights(tmp_path / "chosen.safetensors", metadata)
    for argv, threshold in [([], 154), (["--threshold", "0.5"], 128)]:  # the thresholds on the 8-bit map
        out = tmp_path / f"out{threshold}"
        assert run_cli([str(folder / "a.png"), "--model", model, "--out", str(out), "--prob-bits", "8", *argv]) == 0
        prob, mask = (np.asarray(Image.open(p)) for p in outputs(out, "a")[:2])
        np.testing.assert_array_equal(mask == 255, prob >= threshold)


def test_bad_arguments_and_model(model, folder, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert run_cli([str(folder / "a.png"), "--model", model, "--out", out, "--threshold", "2"]) == 2
    assert run_cli([str(folder / "a.png"), "--model", str(tmp_path / "none.safetensors"), "--out", out]) == 2
    assert run_cli([str(folder / "a.png"), "--model", model, "--out", out, "--workers", "-1"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_same_stem_twice_is_refused(model, folder, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(fundus(40, 40)).save(other / "a.jpg")
    assert run_cli([str(folder / "a.png"), str(other / "a.jpg"), "--model", model, "--out", str(tmp_path / "o")]) == 2
    assert "a_*.png" in capsys.readouterr().err


def test_input_expansion(folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    Image.fromarray(fundus(20, 20)).save(out / "x_prob.png")
    Image.fromarray(fundus(20, 20)).save(out / "y.png")
    segment.write_manifest(out, {"x_prob.png"})  # an earlier run's output: skipped; y.png is an input
    files, problems = expand_inputs([str(folder), str(folder / "a.png"), str(out), str(tmp_path / "*.none")], out)
    assert [p.name for p in files] == ["a.png", "b.jpg", "bad.png", "c.tif", "y.png"]
    assert len(problems) == 1 and "*.none" in problems[0]
    assert output_stem(folder / "im0001.ppm.gz") == "im0001"
    assert output_stem(folder / "01_test.tif") == "01_test"


def test_real_drive_image(datasets, tmp_path):
    # DRIVE-trained metadata: the field of view of a DRIVE photograph brings it to the training scale.
    model = weights(tmp_path / "drive.safetensors", {"input_size": [584, 568], "fov_diameter": 540.0})
    image = datasets / "DRIVE" / "test" / "images" / "01_test.tif"
    out = tmp_path / "out"
    assert run_cli([str(image), "--model", model, "--out", str(out)]) == 0
    prob = np.asarray(Image.open(out / "01_test_prob.png"))
    assert prob.shape == (584, 565)
    assert np.asarray(Image.open(out / "01_test_overlay.png")).shape == (584, 565, 3)


def test_real_idrid_image_in_tiles(datasets, tmp_path, monkeypatch, model):
    # No scale in the metadata: the full 4288x2848 photograph is segmented as it is, in tiles.
    seen = []
    forward = inference._forward

    def recording(predictor, grey, tta):
        seen.append(grey.shape)
        return forward(predictor, grey, tta)

    monkeypatch.setattr(inference, "_forward", recording)
    image = datasets / IDRID_TEST / "IDRiD_55.jpg"
    out = tmp_path / "out"
    assert run_cli([str(image), "--model", model, "--out", str(out)]) == 0
    assert len(seen) > 1 and max(h * w for h, w in seen) <= inference.DEFAULT_MAX_PIXELS
    with Image.open(out / "IDRiD_55_mask.png") as mask:
        assert mask.size == (4288, 2848)


# --------------------------------------------------------------------------- --workers


@pytest.fixture(scope="module")
def contrasted_model(tmp_path_factory) -> str:
    """Light with a scale rule (photographs are resized) and logits spread by a large last layer.

    Random-init Light gives probabilities within 0.01 of 0.5, which 8-bit outputs would round alike even if
    the workers computed something else; these spread over (0, 1), and the resizing exercises both halves.
    """
    metadata = {
        "network": "light",
        "preprocessing": {"order": "clahe-gamma", "gamma": 1.7, "clahe": "opencv"},
        "fov_diameter": 44.0,
    }
    return contrasted_light(fundus(60, 80, 1), metadata, tmp_path_factory.mktemp("contrasted") / "light.safetensors")


def test_workers_give_the_same_outputs_and_errors(contrasted_model, folder, tmp_path, capsys):
    results = {}
    for workers in (0, 1, 2):
        out = tmp_path / f"out{workers}"
        code = run_cli([str(folder), "--model", contrasted_model, "--out", str(out), "--workers", str(workers)])
        captured = capsys.readouterr()
        errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
        files = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
        results[workers] = (code, errors, files)
        assert "segmented 3 of 4 images" in captured.out and "Traceback" not in captured.err
    code, errors, files = results[0]
    assert code == 1 and len(errors) == 1 and "bad.png" in errors[0]
    assert len(files) == 9 + 1  # the three outputs of three photographs, and the manifest
    assert np.asarray(Image.open(tmp_path / "out0" / "a_prob.png")).std() > 20  # the outputs say something
    assert results[1] == results[0] and results[2] == results[0]  # byte for byte


def test_workers_keep_few_images_in_flight(model, tmp_path, monkeypatch):
    # Threads instead of processes, so the counting below sees every image; the bound is the same code.
    # A slow writer would let reads pile up if the reading ahead were not bounded.
    images = tmp_path / "images"
    images.mkdir()
    for i in range(12):
        Image.fromarray(fundus(24, 24, i)).save(images / f"{i:02d}.png")
    lock, live, peak = threading.Lock(), [0], [0]
    prepare, finish = segment.prepare_file, segment.finish_file

    def counting_prepare(*args):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        return prepare(*args)

    def slow_finish(*args):
        time.sleep(0.02)
        finish(*args)
        with lock:
            live[0] -= 1

    monkeypatch.setattr(segment, "prepare_file", counting_prepare)
    monkeypatch.setattr(segment, "finish_file", slow_finish)
    monkeypatch.setattr(segment, "_new_executor", lambda workers: ThreadPoolExecutor(workers))
    out = tmp_path / "out"
    assert run_cli([str(images), "--model", model, "--out", str(out), "--workers", "2", "--quiet"]) == 0
    assert len(list(out.glob("*_mask.png"))) == 12
    assert live[0] == 0 and 2 <= peak[0] <= 2 * 2 + 1


CRASH_SIZE = (13, 17)


class CrashingSegmenter(Segmenter):
    """Kills the worker process that prepares a 13x17 photograph, as a decoder crash or the OOM killer would."""

    def prepare(self, rgb, fov=None):
        if rgb.shape[:2] == CRASH_SIZE and multiprocessing.parent_process() is not None:
            os._exit(3)
        return super().prepare(rgb, fov)


def test_a_dead_worker_fails_only_the_files_in_flight(model, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    names = ["00.png", "crash.png", *(f"{i:02d}.png" for i in range(2, 7))]
    for i, name in enumerate(names):
        Image.fromarray(fundus(*(CRASH_SIZE if name == "crash.png" else (24, 24)), i)).save(images / name)
    from patch2image.weights import load_model

    network, metadata = load_model(model)
    reports: list[tuple[str, Exception | None]] = []
    out = tmp_path / "out"
    out.mkdir()
    files = [images / name for name in names]
    crashing = CrashingSegmenter(network, metadata)
    segment_files(files, crashing, out, Outputs(), lambda p, e: reports.append((p.name, e)), 1)
    assert [name for name, _ in reports] == names  # every file once, in order
    failed = {name for name, exc in reports if exc is not None}
    # With one worker, in flight beside crash.png: the write of the file before it, the read of the one after.
    assert "crash.png" in failed and failed <= {"00.png", "crash.png", "02.png"}
    assert "BrokenProcessPool" in type(dict(reports)["crash.png"]).__name__
    assert all(exc is None for name, exc in reports[-3:])  # a fresh pool took over


def test_probability_maps_keep_the_ranking_of_faint_vessels(datasets, tmp_path):
    """AUC recomputed from the 16-bit maps `segment` writes agrees with `evaluate` (training size) per image."""
    from patch2image.data import load_sample, open_dataset
    from patch2image.inference import TRAINING_SIZE, Segmenter
    from patch2image.metrics import image_metrics
    from patch2image.weights import load_model

    dataset = open_dataset(datasets / "DRIVE")
    files = [f for f in dataset.files("test") if f.name in ("02", "04")]
    network, metadata = load_model("drive-light")
    segmenter = Segmenter(network, metadata, size=TRAINING_SIZE)
    out = tmp_path / "out"
    images = [str(f.image) for f in files]
    argv = [*images, "--model", "drive-light", "--out", str(out), "--quiet"]
    from patch2image import cli

    assert cli.main(["segment", *argv]) == 0
    for case in files:
        sample = load_sample(case)
        written = np.asarray(Image.open(out / f"{case.image.stem}_prob.png")).astype(np.float64) / 65535
        direct = segmenter(sample.image)
        assert abs(image_metrics(written, sample.label)["auc"] - image_metrics(direct, sample.label)["auc"]) < 0.002


def test_optic_disc_is_one_region_in_amber_with_its_centre_and_size(folder, tmp_path):
    from patch2image.postprocessing import OVERLAY_COLOURS, disc_measurement, largest_region

    mask = np.zeros((40, 60), bool)
    mask[10:20, 30:40] = True  # the disc: 100 pixels around (34.5, 14.5)
    mask[2:4, 2:4] = True  # a speck
    disc = largest_region(mask)
    assert disc.sum() == 100 and not disc[2, 2]
    found = disc_measurement(disc)
    assert (found["centre_x"], found["centre_y"]) == (34.5, 14.5) and found["diameter"] == pytest.approx(11.3, abs=0.05)
    assert disc_measurement(np.zeros((4, 4), bool))["diameter"] == ""

    model = weights(tmp_path / "disc.safetensors", {"input_size": None, "fov_diameter": None, "task": "optic_disc"})
    out = tmp_path / "out"
    photos = [str(folder / "a.png"), str(folder / "b.jpg")]
    assert run_cli([*photos, "--model", model, "--out", str(out), "--threshold", "0", "--quiet"]) == 0
    rows = (out / "optic_disc.csv").read_text().splitlines()
    assert rows[0] == "image,centre_x,centre_y,diameter" and [r.split(",")[0] for r in rows[1:]] == ["a.png", "b.jpg"]
    overlay = np.asarray(Image.open(out / "a_overlay.png")).astype(int)
    rgb = np.asarray(Image.open(folder / "a.png").convert("RGB")).astype(int)
    expected = np.round(0.4 * rgb + 0.6 * OVERLAY_COLOURS["optic_disc"]).astype(int)  # everything is disc at 0
    assert np.abs(overlay - expected).max() <= 1


def test_nothing_is_found_outside_the_field_of_view_unless_asked(model, folder, tmp_path):
    photo = folder / "a.png"
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    from patch2image.data import field_of_view_mask

    fov = field_of_view_mask(rgb)
    assert 0.3 < fov.mean() < 0.9  # the synthetic photograph's dark surround is found
    masks = {}
    for extra in ([], ["--outside-fov"]):
        out = tmp_path / f"out{len(extra)}"
        assert run_cli([str(photo), "--model", model, "--out", str(out), "--threshold", "1e-9", "--quiet", *extra]) == 0
        masks[len(extra)] = np.asarray(Image.open(out / "a_mask.png")) > 0
        prob = np.asarray(Image.open(out / "a_prob.png"))
        assert (prob[~fov] == 0).all() == (not extra)
    assert masks[0][fov].all() and not masks[0][~fov].any()  # a threshold above 0: everything inside, nothing out
    assert masks[1].all()


def test_scale_multiplies_the_working_size_which_each_output_records(folder, tmp_path, capsys):
    import json

    model = weights(tmp_path / "scaled.safetensors", {"fov_diameter": 20.0})  # the eye learnt 20 px wide
    sizes = {}
    for scale in ("1", "2"):
        out = tmp_path / f"out{scale}"
        assert run_cli([str(folder / "a.png"), "--model", model, "--out", str(out), "--backend", "torch",
                        "--scale", scale]) == 0  # fmt: skip
        printed = capsys.readouterr().out
        assert "a.png: segmented at" in printed and "field of view" in printed
        for path in outputs(out, "a"):
            with Image.open(path) as image:
                about = json.loads(image.text["patch2image"])
            assert about["photograph"] == [80, 60] and about["scale"] == float(scale)
            assert "field of view" in about["rule"]
        sizes[scale] = about["working_size"]
    assert abs(sizes["2"][0] - 2 * sizes["1"][0]) <= 4 and abs(sizes["2"][1] - 2 * sizes["1"][1]) <= 4
    assert "x2 as asked" in about["rule"]


@pytest.mark.parametrize("scale", ["0", "9", "nan"])
def test_a_scale_out_of_range_is_one_line_before_anything_is_written(model, folder, tmp_path, capsys, scale):
    out = tmp_path / "out"
    assert run_cli([str(folder / "a.png"), "--model", model, "--out", str(out), "--scale", scale]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --scale {scale}") and err.count("\n") == 1 and not out.exists()
