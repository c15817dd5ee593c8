"""What a file may do to the program: weights, checkpoints, run folders, the cache, photographs and arrays.

Each test is a hostile or damaged input a user could give (or a disk could hold): it is refused with one
line naming the file and what is wrong, or, for the per-user cache, used only when it is whole and
otherwise rebuilt with one warning. Refusals keep the project's contract (tests/test_bad_input.py):
exit status 2 and exactly one line ``error: <file or key>: <what is wrong>`` on stderr, no traceback.

- Photographs and labels are turned as their EXIF orientation says, as every viewer shows them.
- A weights file is checked whole when it is read: finite floating-point tensors whose names and shapes
  fit the network its metadata describes (built first on PyTorch's meta device, so nothing is allocated
  for a network that does not fit), and metadata values within their ranges.
- A configuration's ``network: module:Class`` is checked to be a network class before it is called.
"""

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_bad_input import _fast_config, _tiny_fit
from test_bad_input import _one_error as one_error
from test_trust import _run

import patch2image
from patch2image.cli import main
from patch2image.data import read_image, read_mask
from patch2image.data.io import header_size, inspect_image
from patch2image.errors import UserError
from patch2image.inference import Segmenter
from patch2image.networks import create_network
from patch2image.runtime.auto import CHOICES_FILE, AutoModel, size_class
from patch2image.runtime.backends import BACKENDS
from patch2image.runtime.cache import cached_bytes
from patch2image.serve import create_app
from patch2image.weights import (
    METADATA_KEY,
    WeightsMetadata,
    load_model,
    read_safetensors,
    save_weights,
    write_safetensors,
)


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error(code: int, err: str, *fragments: str) -> str:
    assert code == 2, err
    return one_error(code, err, *fragments)


def _fundus(height: int, width: int, seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[:height, :width]
    inside = (y - height / 2) ** 2 + (x - width / 2) ** 2 <= (0.45 * min(height, width)) ** 2
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[inside] = np.array([170, 80, 30]) + np.random.default_rng(seed).integers(0, 60, (int(inside.sum()), 1))
    return rgb


LIGHT_METADATA = {"network": "light", "input_size": None, "fov_diameter": None}


@pytest.fixture(scope="module")
def light() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.clone() for k, v in create_network("light").state_dict().items()}


@pytest.fixture(scope="module")
def model(tmp_path_factory, light) -> Path:
    """Random-init Light without scale information (photographs are segmented at their own size)."""
    path = tmp_path_factory.mktemp("model") / "light.safetensors"
    _weights(path, light, LIGHT_METADATA)
    return path


def _weights(path: Path, tensors: dict, metadata) -> Path:
    """A weights file as anyone could write it: any tensors, any metadata (a dictionary, or raw JSON text)."""
    text = metadata if isinstance(metadata, str) else json.dumps(metadata)
    write_safetensors(path, tensors, {METADATA_KEY: text})
    return path


@pytest.fixture
def eye(tmp_path) -> Path:
    path = tmp_path / "eye.png"
    Image.fromarray(_fundus(40, 48)).save(path)
    return path


# --- EXIF orientation ---------------------------------------------------------------------------------------


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _sideways(upright: np.ndarray, path: Path, orientation: int = 6, **options) -> Path:
    """``upright`` stored as a camera held sideways stores it: turned, with the orientation that undoes that.

    Orientation 6 says "turn 90 degrees clockwise to show": the stored pixels are the upright ones turned
    90 degrees anticlockwise.
    """
    assert orientation == 6
    stored = np.ascontiguousarray(np.rot90(upright, 1))
    Image.fromarray(stored).save(path, exif=_exif(orientation), **options)
    return path


def test_a_photograph_is_read_upright(tmp_path):
    upright = np.zeros((60, 40, 3), np.uint8)
    upright[:10] = 255  # a white band at the top of the photograph as shown
    path = _sideways(upright, tmp_path / "portrait.jpg", quality=95)
    rgb = read_image(path)
    assert rgb.shape == (60, 40, 3) and inspect_image(path) == (40, 60)
    assert rgb[:8].mean() > 240 and rgb[12:].mean() < 15


def test_a_label_is_read_upright(tmp_path):
    upright = np.zeros((60, 40), np.uint8)
    upright[:10, :5] = 255
    mask = read_mask(_sideways(upright, tmp_path / "label.png"))
    assert np.array_equal(mask, upright > 0)


def test_segment_writes_masks_the_size_of_the_photograph_as_shown(model, tmp_path, capsys):
    photo = _sideways(_fundus(48, 40), tmp_path / "eye.jpg", quality=95)
    code, _, err = _cli(capsys, "segment", photo, "--model", model, "--out", tmp_path / "out", "--backend", "torch")
    assert code == 0, err
    assert np.asarray(Image.open(tmp_path / "out" / "eye_mask.png")).shape == (48, 40)
    assert patch2image.load(str(model))(photo).shape == (48, 40)


# --- weights: tensors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_weights_are_refused_when_read(model, light, tmp_path, eye, capsys, value):
    damaged = {k: v.clone() for k, v in light.items()}
    damaged["body.0.0.weight"].fill_(value)
    path = _weights(tmp_path / "damaged.safetensors", damaged, LIGHT_METADATA)
    code, _, err = _cli(capsys, "segment", eye, "--model", path, "--out", tmp_path / "out")
    _one_error(code, err, str(path), "body.0.0.weight", "NaN or infinite")
    assert not (tmp_path / "out").exists()


def test_non_finite_probabilities_are_an_error_naming_the_model():
    network = create_network("light")
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.mul_(1e30)  # finite, but every sum overflows
    segmenter = Segmenter(network, WeightsMetadata(network="light", name="overflowing"))
    with pytest.raises(UserError, match="model 'overflowing' gave NaN or infinite probabilities"):
        segmenter(_fundus(40, 48))


def test_integer_weight_tensors_are_refused(light, tmp_path):
    as_integers = {k: (v * 100).to(torch.int64) for k, v in light.items()}
    path = _weights(tmp_path / "integers.safetensors", as_integers, LIGHT_METADATA)
    with pytest.raises(UserError, match=r"integers\.safetensors: weights do not fit .* holds torch\.int64 values"):
        load_model(path)


def test_network_arguments_are_checked_before_anything_is_allocated(light, tmp_path, capsys, eye, monkeypatch):
    """A 39 KB file asking for Dense of width 10,000 (21.8 GB) is refused from its metadata alone."""

    def allocate(*args, **kwargs):
        raise AssertionError("the network was built for real")

    monkeypatch.setattr("patch2image.weights.create_network", allocate)
    path = _weights(tmp_path / "wide.safetensors", light, {"network": "dense", "network_args": {"width": 10000}})
    code, _, err = _cli(capsys, "segment", eye, "--model", path, "--out", tmp_path / "out")
    _one_error(code, err, str(path), "network_args", "width must be a whole number from 1 to 64, got 10000")


def test_a_network_over_the_parameter_limit_is_refused_unbuilt(light, tmp_path, monkeypatch):
    monkeypatch.setattr("patch2image.weights.create_network", lambda *a, **k: pytest.fail("built for real"))
    path = _weights(
        tmp_path / "big.safetensors", light, {"network": "dense", "network_args": {"width": 64, "growth": 32}}
    )
    with pytest.raises(UserError, match=r"big\.safetensors: network 'dense'.* parameters, over the limit"):
        load_model(path)


def test_tensor_shapes_are_compared_with_the_network_before_it_is_built(light, tmp_path, monkeypatch):
    monkeypatch.setattr("patch2image.weights.create_network", lambda *a, **k: pytest.fail("built for real"))
    path = _weights(tmp_path / "three.safetensors", light, LIGHT_METADATA | {"preprocessing": {"channel": "rgb"}})
    with pytest.raises(UserError, match=r"three\.safetensors: weights do not fit the network Light \(body\.0\.0"):
        load_model(path)


# --- weights: metadata values ---------------------------------------------------------------------------------

BAD_METADATA = [
    pytest.param(
        {"threshold": float("nan")}, "metadata threshold: must be a number between 0 and 1", id="threshold-nan"
    ),
    pytest.param({"threshold": 5}, "metadata threshold: must be a number between 0 and 1, got 5", id="threshold-5"),
    pytest.param({"size_divisor": 0}, "metadata size_divisor: must be a whole number from 1 to 256", id="divisor-0"),
    pytest.param({"size_divisor": 10**9}, "metadata size_divisor", id="divisor-huge"),
    pytest.param({"fov_diameter": 1e12}, "metadata fov_diameter: must be a number of pixels", id="fov-huge"),
    pytest.param({"fov_diameter": float("inf")}, "metadata fov_diameter", id="fov-inf"),
    pytest.param({"input_size": ["a", 3]}, "metadata input_size: must be [height, width]", id="input-size-text"),
    pytest.param({"task": "../../evil"}, "metadata task: must be one of vessels, optic_disc", id="task-path"),
    pytest.param({"network_args": {"in_channels": -3}}, "metadata network_args", id="in-channels-negative"),
    pytest.param({"network_args": {"in_channels": "3"}}, "in_channels must be a whole number", id="in-channels-text"),
    pytest.param({"patch_size": 7}, "metadata patch_size: must be a multiple of 4", id="patch-size"),
    pytest.param({"preprocessing": {"channel": "ir"}}, "metadata preprocessing.channel", id="preprocessing"),
    pytest.param({"preprocessing": {"gamma": "x"}}, "metadata preprocessing.gamma", id="gamma-text"),
    pytest.param({"metrics": {"whole": {"dice": "good"}}}, "metadata metrics.whole", id="metrics-text"),
    pytest.param({"extra": {"a": json.loads("[" * 40 + "]" * 40)}}, "metadata extra: nested more than", id="deep"),
]


@pytest.mark.parametrize(("change", "says"), BAD_METADATA)
def test_metadata_values_are_checked_when_the_file_is_read(light, tmp_path, eye, capsys, change, says):
    path = _weights(tmp_path / "odd.safetensors", light, LIGHT_METADATA | change)
    code, _, err = _cli(capsys, "segment", eye, "--model", path, "--out", tmp_path / "out")
    _one_error(code, err, f"error: {path}: ", says)
    with pytest.raises(UserError, match="odd.safetensors: metadata"):
        patch2image.load(str(path))


def test_metadata_nested_100000_deep_is_one_line(light, tmp_path, eye, capsys):
    deep = json.dumps(LIGHT_METADATA)[:-1] + ', "extra": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    path = _weights(tmp_path / "deep.safetensors", light, deep)
    code, _, err = _cli(capsys, "segment", eye, "--model", path, "--out", tmp_path / "out")
    _one_error(code, err, str(path), "nested too deeply")


def test_the_shipped_models_pass_the_checks():
    for name, metadata in patch2image.weights.shipped_models():
        assert load_model(name)[1] == metadata


# --- a configuration's network --------------------------------------------------------------------------------


@pytest.mark.parametrize("network", ["os:system", "subprocess:getoutput", "collections:OrderedDict"])
def test_a_configuration_network_that_is_not_a_module_class_is_not_called(tmp_path, capsys, network):
    marker = tmp_path / "ran"
    config = _fast_config(tmp_path, network=network, network_args={"cmd": f"touch {marker}"})
    code, _, err = _cli(capsys, "train", config, "--out", tmp_path / "run", "--quiet")
    _one_error(code, err, f"network {network!r}", "not a torch.nn.Module subclass")
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


def _limited(memory_bytes: int):
    """For a subprocess: an address-space limit, so that a test of an allocation that must not happen cannot take
    the machine's memory when it does happen."""
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def test_a_configuration_network_too_big_is_refused_before_anything_is_written(tmp_path):
    config = _fast_config(tmp_path, network="dense", network_args={"width": 10000})  # 21.8 GB when built
    done = subprocess.run(
        [sys.executable, "-m", "patch2image", "train", str(config), "--out", str(tmp_path / "run"), "--quiet"],
        capture_output=True, text=True, timeout=600, preexec_fn=_limited(8 * 2**30),
    )  # fmt: skip
    _one_error(done.returncode, done.stderr, "width must be a whole number from 1 to 64")
    assert not (tmp_path / "run").exists()


# --- Python API arrays ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(model) -> Segmenter:
    return patch2image.load(str(model))


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 40, 3), (40, 0, 3)])
def test_an_empty_array_is_one_line(loaded, shape):
    with pytest.raises(UserError, match=r"^image array: array holds an empty image"):
        loaded(np.zeros(shape, np.uint8))


def test_an_array_over_the_pixel_limit_is_refused_as_a_file_is(loaded):
    huge = np.zeros((20000, 20000, 3), np.uint8)  # not touched: the operating system gives zero pages lazily
    with pytest.raises(UserError, match=r"image array: array holds 20000x20000 = 400 megapixels, about 1\.1 GiB"):
        loaded(huge)


def test_a_working_size_over_the_pixel_limit_is_refused(model):
    segmenter = patch2image.load(str(model), size=(20000, 20000))
    with pytest.raises(UserError, match=r"would segment it at 20000x20000 = 400 megapixels \(given size"):
        segmenter(_fundus(40, 48))


# --- the per-user cache ---------------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("PATCH2IMAGE_CACHE_DIR", str(folder))
    return folder


class _Runner:
    """A probability runner that takes a few milliseconds, so that a race times it in few calls."""

    def probabilities(self, x):
        time.sleep(0.005)
        return np.zeros((x.shape[0], 1, *x.shape[2:]), np.float32)


def _auto() -> AutoModel:
    factories = {"torch": _Runner, "onnxruntime": _Runner}
    return AutoModel(factories, WeightsMetadata(network="light"), announce=lambda line: None)


DAMAGED_CHOICES = [
    pytest.param(lambda key: {key: {"choice": "torch", "seconds_per_pass": "fast"}}, id="timings-text"),
    pytest.param(lambda key: {key: "torch"}, id="entry-text"),
    pytest.param(lambda key: {key: {"seconds_per_pass": {"torch": 1}}}, id="no-choice"),
    pytest.param(lambda key: [key], id="file-a-list"),
    pytest.param(lambda key: b"\xff\x00garbage", id="file-garbage"),
]


@pytest.mark.parametrize("damage", DAMAGED_CHOICES)
def test_a_damaged_backend_choice_is_measured_again_with_one_warning(cache, damage):
    auto, x = _auto(), np.zeros((1, 1, 64, 64), np.float32)
    content = damage(auto._key(size_class(x.shape)))
    cache.mkdir()
    path = cache / CHOICES_FILE
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    with pytest.warns(UserWarning, match=f"^{path}: .*; ignored, and made again") as caught:
        assert auto.probabilities(x).shape == (1, 1, 64, 64)
    assert len(caught) == 1
    remembered = json.loads(path.read_text())[auto._key(size_class(x.shape))]
    assert remembered["choice"] in ("torch", "onnxruntime")  # measured, and kept in place of the damage


def _export_name(cache: Path) -> Path:
    (path,) = (cache / "onnx").glob("*.onnx")
    return path


EXPORT_DAMAGE = [
    pytest.param(lambda data, other: b"", id="empty"),
    pytest.param(lambda data, other: b"garbage", id="garbage"),
    pytest.param(lambda data, other: data[: len(data) // 2], id="cut-short"),
    pytest.param(lambda data, other: other, id="another-models-export"),
]


@pytest.mark.parametrize("damage", EXPORT_DAMAGE)
def test_a_damaged_cached_file_is_made_again_with_one_warning(cache, damage):
    made = []

    def make() -> bytes:
        made.append(1)
        return b"the export " * 10

    assert cached_bytes("onnx/key.onnx", make) == b"the export " * 10
    path = _export_name(cache)
    assert path.name.startswith("key.") and path.name != "key.onnx"  # the content's hash is in its name
    assert cached_bytes("onnx/key.onnx", make) == b"the export " * 10 and len(made) == 1  # read back, not made
    path.write_bytes(damage(path.read_bytes(), b"another model's export"))
    with pytest.warns(UserWarning, match=f"^{path}: its content does not match the hash in its name") as caught:
        assert cached_bytes("onnx/key.onnx", make) == b"the export " * 10
    assert len(caught) == 1 and len(made) == 2
    assert _export_name(cache).read_bytes() == b"the export " * 10


def test_segment_with_onnxruntime_rebuilds_a_damaged_export(model, eye, cache, tmp_path, capsys):
    argv = ["segment", eye, "--model", model, "--backend", "onnxruntime", "--precision", "fp32"]
    code, _, err = _cli(capsys, *argv, "--out", tmp_path / "first")
    assert code == 0, err
    export = _export_name(cache)
    export.write_bytes(b"")
    code, _, err = _cli(capsys, *argv, "--out", tmp_path / "second")
    assert code == 0, err
    assert err.splitlines() == [
        f"warning: {export}: its content does not match the hash in its name (damaged or replaced); ignored, and "
        "made again (the cache folder can be deleted)"
    ]
    assert (tmp_path / "first" / "eye_mask.png").read_bytes() == (tmp_path / "second" / "eye_mask.png").read_bytes()


def test_segment_does_not_claim_to_remember_a_choice_it_could_not_keep(model, eye, tmp_path, monkeypatch, capsys):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("PATCH2IMAGE_CACHE_DIR", str(tmp_path / "a-file" / "cache"))  # cannot be created
    code, out, err = _cli(
        capsys, "segment", eye, "--model", model, "--backend", "torch", "--precision", "auto", "--out", tmp_path / "o"
    )
    assert code == 0, err
    assert "not kept: the cache folder is not writable" in out
    assert "once on this machine" not in out and "again next run: the cache is not writable" in out


# --- ONNX files no backend can run ------------------------------------------------------------------------------


def _custom_op_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    shape = ["n", 1, "h", "w"]
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)
    probability = helper.make_tensor_value_info("probability", TensorProto.FLOAT, shape)
    node = helper.make_node("Mystery", ["image"], ["probability"], domain="example.custom")
    graph = helper.make_graph([node], "custom", [image], [probability])
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("example.custom", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), path)
    return path


@pytest.mark.parametrize("backend", ["auto", "onnxruntime"])
def test_an_empty_onnx_file_is_named(tmp_path, eye, capsys, backend):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    code, _, err = _cli(capsys, "segment", eye, "--model", path, "--backend", backend, "--out", tmp_path / "out")
    _one_error(code, err, f"error: {path}: empty file (0 bytes), not an ONNX model")


def test_an_onnx_file_no_backend_runs_names_each_backends_reason(tmp_path):
    path = _custom_op_model(tmp_path / "custom.onnx")
    segmenter = patch2image.load(str(path), backend="auto")
    with pytest.raises(UserError) as info:
        segmenter(_fundus(40, 48))
    message = str(info.value)
    assert message.startswith(f"{path}: backend auto: no backend can run this model (onnxruntime: ")
    assert "Mystery" in message.split("onnxruntime: ")[1]
    if BACKENDS["openvino"].available():
        assert "openvino: " in message and "No conversion rule found for operations: example.custom.Mystery" in message
    assert "\n" not in message


# --- train --resume with a damaged checkpoint ---------------------------------------------------------------------


def _rewrite_state(checkpoint: Path, change) -> None:
    tensors, metadata = read_safetensors(checkpoint)
    state = json.loads(metadata["state"])
    write_safetensors(checkpoint, tensors, {"state": json.dumps(change(state))})


DAMAGED_STATES = [
    pytest.param(lambda s: [1, 2], "training state is a list, not an object", id="state-a-list"),
    pytest.param(lambda s: s | {"rows": "x"}, "rows: 'x' is not a list of epochs", id="rows-text"),
    pytest.param(lambda s: s | {"epoch": -5}, "epoch: -5 is not a whole number of epochs", id="epoch-negative"),
    pytest.param(lambda s: s | {"epoch": 1.5}, "epoch: 1.5 is not a whole number", id="epoch-fraction"),
    pytest.param(lambda s: s | {"best_val": "low"}, "best_val: 'low' is not a loss", id="best-val-text"),
    pytest.param(lambda s: s | {"lr": 0}, "lr: 0 is not a positive learning rate", id="lr-zero"),
    pytest.param(lambda s: s | {"finished": "no"}, "finished: 'no' is not true or false", id="finished-text"),
    pytest.param(lambda s: s | {"settings": {"precision": "fp8"}}, "settings: ", id="settings"),
    pytest.param(lambda s: s | {"rows": [{"phase": "patch"}]}, "is not an epoch's row", id="row-partial"),
]


@pytest.mark.parametrize(("change", "says"), DAMAGED_STATES)
def test_resuming_a_damaged_checkpoint_names_it_and_how_to_start_over(tmp_path, change, says):
    checkpoint = tmp_path / "checkpoints" / "patch.safetensors"
    _tiny_fit(checkpoint, epochs=1)
    _rewrite_state(checkpoint, change)
    with pytest.raises(UserError) as info:
        _tiny_fit(checkpoint, epochs=3)
    message = str(info.value)
    assert message.startswith(f"{checkpoint}: damaged checkpoint (") and says in message, message
    assert message.endswith("; delete it to restart this phase (earlier phases are kept)")


def test_a_checkpoint_of_another_network_says_so(tmp_path):
    checkpoint = tmp_path / "patch.safetensors"
    _tiny_fit(checkpoint, epochs=1)  # Light
    tensors, metadata = read_safetensors(checkpoint)
    other = create_network("mini-unet").state_dict()
    tensors = {f"{part}.{k}": v.clone() for part in ("model", "best") for k, v in other.items()}
    write_safetensors(checkpoint, tensors, metadata)
    with pytest.raises(UserError) as info:
        _tiny_fit(checkpoint, epochs=2)
    message = str(info.value)
    assert message.startswith(f"{checkpoint}: not a checkpoint of this phase's network (model weights: weights do not")
    assert "'state'" not in message and message.endswith("delete it to restart this phase (earlier phases are kept)")


def test_a_weights_file_in_place_of_a_checkpoint_says_so(tmp_path):
    checkpoint = tmp_path / "patch.safetensors"
    save_weights(checkpoint, create_network("light"), WeightsMetadata(network="light"))
    with pytest.raises(UserError, match=r"not a training checkpoint \(its metadata holds no training state\)"):
        _tiny_fit(checkpoint)


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        pytest.param("optimizer.0.square_avg", torch.zeros(3), "optimizer.0.square_avg: shape (3,)", id="opt-shape"),
        pytest.param("optimizer.999.step", torch.tensor(1.0), "the network has", id="opt-index"),
        pytest.param("model.body.0.0.bias", torch.full((8,), float("nan")), "NaN or infinite", id="nan"),
    ],
)
def test_damaged_checkpoint_tensors_are_refused(tmp_path, key, value, says):
    checkpoint = tmp_path / "patch.safetensors"
    _tiny_fit(checkpoint, epochs=1)
    tensors, metadata = read_safetensors(checkpoint)
    write_safetensors(checkpoint, tensors | {key: value}, metadata)
    with pytest.raises(UserError, match="delete it to restart this phase") as info:
        _tiny_fit(checkpoint, epochs=2)
    assert str(info.value).startswith(f"{checkpoint}: ") and says in str(info.value)


# --- report on a damaged run folder -------------------------------------------------------------------------------


def _string_metrics(run: Path) -> Path:
    path = run / "metrics" / "finetuned.json"
    result = json.loads(path.read_text())
    result["fov"]["mean"]["dice"] = "0.8"
    path.write_text(json.dumps(result))
    return path


def _garbage_history(run: Path) -> Path:
    (run / "history.csv").write_text("this is not,a history\n1,2\n")
    return run / "history.csv"


def _binary_history(run: Path) -> Path:
    (run / "history.csv").write_bytes(b"\xff\xfe\x00garbage")
    return run / "history.csv"


def _short_history_row(run: Path) -> Path:
    (run / "history.csv").write_text("phase,epoch,loss,val_loss\nfinetune,1,0.5,0.6,extra,columns\n")
    return run / "history.csv"


def _list_run_record(run: Path) -> Path:
    (run / "run.json").write_text("[1, 2]")
    return run / "run.json"


def _text_pooled_data(run: Path) -> Path:
    path = run / "metrics" / "finetuned.json"
    result = json.loads(path.read_text())
    result["whole"]["pooled_data"]["counts"] = "many"
    path.write_text(json.dumps(result))
    return path


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        pytest.param(_string_metrics, "fov.mean.dice: expected a number or null, got '0.8'", id="metrics-text"),
        pytest.param(_text_pooled_data, "whole.pooled_data: not pooled scores", id="pooled-data"),
        pytest.param(_garbage_history, "not a training history (no column 'phase'", id="history-garbage"),
        pytest.param(_binary_history, "not a training history", id="history-binary"),
        pytest.param(_short_history_row, "line 2 does not have the header's columns", id="history-row"),
        pytest.param(_list_run_record, "not a run's record", id="run-json-list"),
    ],
)
def test_report_on_a_damaged_run_folder_names_the_file(tmp_path, capsys, damage, says):
    runs = tmp_path / "runs"
    _run(runs, "a", fold=1)
    damaged = damage(_run(runs, "b", fold=2, seed=1))
    code, _, err = _cli(capsys, "report", runs, "--out", tmp_path / "out")
    _one_error(code, err, f"error: {damaged}: ", says)


# --- minor ----------------------------------------------------------------------------------------------------


def test_the_decompression_bomb_message_gives_the_size():
    from starlette.testclient import TestClient
    from test_serve import MODEL, png_header, post

    assert header_size(png_header(30000, 30000)) == (30000, 30000)
    with TestClient(create_app(models=[MODEL])) as client:
        response = post(client, "bomb.png", png_header(30000, 30000))
    assert response.status_code == 413
    assert response.json()["error"].startswith("bomb.png: 30000x30000 = 900 megapixels; this server accepts at most")
