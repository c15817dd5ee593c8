"""OpenVINO agrees with PyTorch on real DRIVE images; ``--backend auto`` measures, chooses and remembers."""

import time
import types

import numpy as np
import pytest

from patch2image import cli
from patch2image.data import read_image
from patch2image.errors import UserError
from patch2image.inference import Segmenter, predict_image
from patch2image.runtime import race as race_module
from patch2image.runtime.auto import AutoModel, size_class
from patch2image.runtime.backends import load_backend
from patch2image.runtime.cache import read_cached_json
from patch2image.runtime.openvino_model import OpenVinoModel
from patch2image.weights import WeightsMetadata


@pytest.fixture(scope="module")
def drive(datasets):
    """The shipped drive-mini-unet (weights and OpenVINO runner) and two pre-processed DRIVE test images."""
    torch_model, metadata, _ = load_backend("drive-mini-unet", "torch")
    openvino_model, _, _ = load_backend("drive-mini-unet", "openvino")
    segmenter = Segmenter(torch_model, metadata)
    photos = sorted((datasets / "DRIVE" / "test" / "images").glob("*.tif"))[:2]
    return torch_model, openvino_model, [segmenter.prepare(read_image(p)) for p in photos], photos


def test_openvino_matches_pytorch_in_float32_on_drive(drive):
    torch_model, openvino_model, greys, _ = drive
    assert isinstance(openvino_model, OpenVinoModel) and openvino_model.precision == "fp32"
    for grey in greys:
        expected = predict_image(torch_model, grey)
        got = predict_image(openvino_model, grey)
        assert expected.std() > 0.1  # real vessels and background: the comparison means something
        assert float(np.abs(got - expected).max()) <= 1e-4


def test_segment_and_evaluate_run_openvino(drive, tmp_path, capsys):
    _, _, _, photos = drive
    out = tmp_path / "seg"
    argv = [str(photos[0]), "--model", "drive-mini-unet", "--out", str(out), "--backend", "openvino"]
    assert cli.main(["segment", *argv, "--precision", "fp32"]) == 0
    assert "(openvino, image mode" in capsys.readouterr().out
    assert (out / f"{photos[0].stem}_prob.png").is_file()

    from patch2image.data import folder_dataset
    from patch2image.evaluation import evaluate_model

    drive_root = photos[0].parents[1]
    folders = {kind: tmp_path / kind for kind in ("images", "labels", "masks")}
    for kind, source in (("images", photos[0]), ("labels", drive_root / "1st_manual" / "01_manual1.gif"),
                         ("masks", drive_root / "mask" / "01_test_mask.gif")):  # fmt: skip
        folders[kind].mkdir()
        (folders[kind] / f"{photos[0].stem}{source.suffix}").symlink_to(source)  # paired by name
    dataset = folder_dataset(folders["images"], folders["labels"], folders["masks"])
    scores = {b: evaluate_model("drive-mini-unet", dataset, backend=b)["whole"]["mean"] for b in ("torch", "openvino")}
    assert scores["openvino"]["auc"] == pytest.approx(scores["torch"]["auc"], abs=1e-5)
    assert scores["openvino"]["dice"] == pytest.approx(scores["torch"]["dice"], abs=1e-3)


# --------------------------------------------------------------------------- auto, with stand-in runners


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache folder: no choice remembered from another test."""
    monkeypatch.setenv("PATCH2IMAGE_CACHE_DIR", str(tmp_path / "cache"))


class _Runner:
    def __init__(self, seconds: float, value: float, built: list, name: str):
        self.seconds, self.value = seconds, value
        built.append(name)

    def probabilities(self, x):
        time.sleep(self.seconds)
        return np.full(x.shape, self.value, np.float32)


def _auto(built: list, lines: list, slow=frozenset(), **seconds) -> AutoModel:
    factories = {
        n: (lambda n=n, s=s, v=0.1 * (i + 1): _Runner(s, v, built, n)) for i, (n, s) in enumerate(seconds.items())
    }  # the i-th backend's probabilities are 0.1 * (i + 1): which one answered shows in the output
    return AutoModel(factories, WeightsMetadata(network="light"), announce=lines.append, slow_to_build=slow)


def test_auto_measures_keeps_the_fastest_and_remembers_it(fresh_cache):
    built, lines = [], []
    model = _auto(built, lines, torch=0.02, openvino=0.002)
    x = np.zeros((1, 1, 584, 568), np.float32)
    assert float(model.probabilities(x).max()) == pytest.approx(0.2)  # the chosen backend's output
    assert len(lines) == 1 and "openvino, the fastest for light at about 576x576" in lines[0]
    assert model.description == "auto: openvino"
    measuring = model.measuring_seconds  # what segment leaves out of its seconds per image
    assert measuring >= 0.02 * 5  # at least the slower candidate's five timed rounds
    model.probabilities(np.zeros((1, 1, 588, 572), np.float32))  # the same size class: no new measurement
    assert len(lines) == 1 and model.measuring_seconds == measuring
    (entry,) = read_cached_json("backend-choice.json").values()
    assert entry["choice"] == "openvino" and set(entry["seconds_per_pass"]) == {"torch", "openvino"}

    built, lines = [], []
    again = _auto(built, lines, torch=0.02, openvino=0.002)
    again.probabilities(x)
    assert built == ["openvino"]  # read from the cache: the others are not even built
    assert "measured earlier" in lines[0] and again.measuring_seconds == 0


def test_one_slow_round_does_not_rule_out_the_fastest(fresh_cache, monkeypatch):
    """A busy machine slows one round of the fastest backend: the lowest median still wins."""
    clock = [0.0]
    monkeypatch.setattr(race_module, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))

    class Scripted:
        def __init__(self, seconds_of_call, value):
            self.seconds_of_call, self.value, self.calls = seconds_of_call, value, 0

        def probabilities(self, x):
            clock[0] += self.seconds_of_call(self.calls)
            self.calls += 1
            return np.full(x.shape, self.value, np.float32)

    # openvino: 0.01 s a pass (so 25 passes a round), except in the whole second round (calls 26-50)
    openvino = Scripted(lambda call: 0.05 if 26 <= call <= 50 else 0.01, 0.2)
    steady = Scripted(lambda call: 0.014, 0.1)  # within 1.5x of openvino: not out of the race after round 1
    lines = []
    model = AutoModel({"torch": lambda: steady, "openvino": lambda: openvino}, WeightsMetadata(), announce=lines.append)
    assert float(model.probabilities(np.zeros((1, 1, 584, 568), np.float32)).max()) == pytest.approx(0.2)
    assert "openvino, the fastest" in lines[0]
    assert openvino.calls == 1 + 3 * 25  # untimed, then three rounds of 0.25 s at the untimed pass's speed
    assert steady.calls == 1 + 3 * 18


def test_auto_skips_a_backend_that_cannot_run_the_model(fresh_cache):
    def broken():
        raise UserError("cannot")

    lines = []
    model = AutoModel({"torch": lambda: _Runner(0, 0.5, [], "torch"), "openvino": broken},
                      WeightsMetadata(), announce=lines.append)  # fmt: skip
    assert float(model.probabilities(np.zeros((1, 1, 8, 8), np.float32)).max()) == 0.5
    assert "torch" in lines[0]


def test_auto_exports_only_when_it_can_pay_back(fresh_cache):
    built, lines = [], []
    model = _auto(built, lines, slow={"openvino"}, torch=0.0, openvino=0.0)
    model.probabilities(np.zeros((1, 1, 32, 32), np.float32))  # a pass takes microseconds: no export, no measurement
    assert built == ["torch"] and lines == [] and model.description == "auto: torch"
    assert read_cached_json("backend-choice.json") == {}  # a choice made without trying all is not kept


def test_auto_tries_both_layouts_in_pytorch_and_they_agree(fresh_cache):
    model, _, _ = load_backend("drive-light", "torch", precision="auto")
    assert set(model.factories) == {"torch", "torch contiguous", "torch bf16", "torch bf16 contiguous"}
    x = np.random.default_rng(0).random((1, 1, 64, 96), np.float32)
    last, contiguous = model.factories["torch"](), model.factories["torch contiguous"]()
    np.testing.assert_allclose(last.probabilities(x), contiguous.probabilities(x), atol=1e-5)
    assert last.probabilities(x).shape == (1, 1, 64, 96)
    lines = []
    model.announce = lines.append
    model.probabilities(x)
    # the user chose the backend: its lines and segment's last line say what was left to choose
    for line in (lines[0], model.description):
        assert line.startswith("torch, precision auto: torch")


def test_size_classes_round_sides_to_64():
    assert size_class((1, 1, 588, 572)) == size_class((1, 1, 592, 568)) == (1, 576, 576)
    assert size_class((2, 1, 20, 700)) == (2, 64, 704)


def test_without_openvino_auto_leaves_it_out_and_openvino_says_why(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with pytest.raises(UserError, match="openvino is not installed"):
        OpenVinoModel(b"")
    model, _, backend = load_backend("drive-light", "auto")
    assert backend == "auto" and set(model.factories) == {"torch", "torch contiguous", "onnxruntime"}


def test_the_torch_backend_takes_the_threads_asked():
    import torch

    before = torch.get_num_threads()
    try:
        load_backend("drive-light", "torch", threads=1, precision="fp32")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
