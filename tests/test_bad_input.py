"""Bad input and faults, through the command line a user types: one table per kind of input.

Every refusal must be exit status != 0 and exactly one line ``error: ...`` on stderr that names the
file or key and what is wrong, with no traceback. To cover a new case, add a row to the table of its
kind (``DATA_FILES``, ``ACCEPTED_FILES``, ``CONFIGS``, ``WEIGHTS``, ``DISK_FAULTS``, ``BAD_LOSSES``).

Decisions the tests pin down: a label with more than two values is binarised (> 127, or > 0 when its
largest value is 1) with a warning, not refused; RGBA, grey and 16-bit images are accepted; an image
smaller than a patch is reflect-padded (but see ``test_image_under_half_a_patch``); Ctrl-C exits 130
with the checkpoint of the last finished epoch, from which ``--resume`` goes on.

SIGKILL during training then ``--resume`` is tested in tests/test_training.py
(test_sigkill_then_resume_gives_the_same_weights_as_an_uninterrupted_run): it needs a subprocess and
is not repeated here.
"""

import errno
import gzip
import json
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import yaml
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

import patch2image.training.fit as fit_module
import patch2image.weights as weights_module
from patch2image.cli import main
from patch2image.config import PatchConfig, PhaseConfig
from patch2image.data import folder_dataset, load_sample
from patch2image.data.synthetic import make_case
from patch2image.errors import UserError
from patch2image.networks import create_network
from patch2image.patch_database import patch_database
from patch2image.training.fit import TrainingData, fit
from patch2image.weights import load_model, save_weights

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)
LABEL = np.zeros((24, 32), bool)
LABEL[6:18, 8:24] = True


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error(code: int, err: str, *fragments: str) -> str:
    """The contract for a refusal: non-zero, one ``error:`` line holding every fragment, no traceback."""
    assert code != 0
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def _no_temporary_files(folder: Path) -> None:
    """``atomic_files.atomic_write`` names its temporary files ``.NAME.PID.tmp``: none may be left behind."""
    assert not [p for p in folder.rglob("*.tmp")], list(folder.rglob("*.tmp"))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _enormous_png(path: Path) -> None:
    """A valid PNG header claiming 100000x100000 pixels, with almost no data behind it."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
    path.write_bytes(data + _png_chunk(b"IEND", b""))


def _folders(root: Path) -> tuple[Path, Path]:
    """Empty ``images/`` and ``labels/`` folders, as `data check --images --labels` takes them."""
    (root / "images").mkdir()
    (root / "labels").mkdir()
    return root / "images", root / "labels"


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# --- data files: `data check --images DIR --labels DIR` -----------------------------------------------------
# Each builder writes one case, images/01.* and labels/01.*, with one defect, and returns the bad file.


def _pair(images: Path, labels: Path, image_ext: str = "png", label_ext: str = "png") -> tuple[Path, Path]:
    image, label = images / f"01.{image_ext}", labels / f"01.{label_ext}"
    Image.fromarray(RGB).save(image)
    Image.fromarray(LABEL.astype(np.uint8) * 255).save(label)
    return image, label


def _truncated_png(images, labels):
    image, _ = _pair(images, labels)
    _cut(image)
    return image


def _truncated_jpeg(images, labels):
    image, _ = _pair(images, labels, image_ext="jpg")
    _cut(image)
    return image


def _truncated_tiff(images, labels):
    image, _ = _pair(images, labels, image_ext="tif")
    _cut(image)
    return image


def _truncated_gzipped_ppm(images, labels):
    image, _ = _pair(images, labels, image_ext="ppm")
    data = image.read_bytes()
    image.unlink()
    gzipped = images / "01.ppm.gz"
    gzipped.write_bytes(gzip.compress(data)[: len(data) // 4])
    return gzipped


def _corrupt_png_data(images, labels):
    image, _ = _pair(images, labels)
    data = bytearray(image.read_bytes())
    start = data.index(b"IDAT") + 8
    data[start : start + 64] = bytes(range(64))  # the compressed pixels no longer inflate
    image.write_bytes(bytes(data))
    return image


def _zero_byte_image(images, labels):
    image, _ = _pair(images, labels)
    image.write_bytes(b"")
    return image


def _zero_byte_label(images, labels):
    _, label = _pair(images, labels)
    label.write_bytes(b"")
    return label


def _text_named_png(images, labels):
    image, _ = _pair(images, labels)
    image.write_text("these are my notes, not an image\n")
    return image


def _zip_named_tif(images, labels):
    _pair(images, labels)
    (images / "01.png").unlink()
    image = images / "01.tif"
    image.write_bytes(b"PK\x03\x04" + bytes(60))
    return image


def _label_of_another_size(images, labels):
    _, label = _pair(images, labels)
    Image.fromarray(np.zeros((12, 16), np.uint8)).save(label)
    return label


def _enormous_image(images, labels):
    image, _ = _pair(images, labels)
    _enormous_png(image)
    return image


def _enormous_label(images, labels):
    _, label = _pair(images, labels)
    _enormous_png(label)
    return label


DATA_FILES = [
    pytest.param(_truncated_png, "truncated or corrupt PNG", id="truncated-png"),
    pytest.param(_truncated_jpeg, "truncated or corrupt JPEG", id="truncated-jpeg"),
    pytest.param(_truncated_tiff, "truncated or corrupt TIFF", id="truncated-tiff"),
    pytest.param(_truncated_gzipped_ppm, "truncated or corrupt PPM", id="truncated-ppm-gz"),
    pytest.param(_corrupt_png_data, "truncated or corrupt PNG", id="corrupt-png-data"),
    pytest.param(_zero_byte_image, "empty file (0 bytes)", id="zero-byte-image"),
    pytest.param(_zero_byte_label, "empty file (0 bytes)", id="zero-byte-label"),
    pytest.param(_text_named_png, "not an image that can be read (content is text", id="text-named-png"),
    pytest.param(_zip_named_tif, "content looks like a ZIP archive", id="zip-named-tif"),
    pytest.param(_label_of_another_size, "size 16x12 differs from its image", id="label-size-differs"),
    pytest.param(_enormous_image, "100000x100000 = 10,000 megapixels, about 27.9 GiB", id="enormous-image-header"),
    pytest.param(_enormous_label, "100000x100000 = 10,000 megapixels, about 27.9 GiB", id="enormous-label-header"),
]


@pytest.mark.parametrize(("make", "says"), DATA_FILES)
def test_bad_data_file_is_one_line_naming_it(tmp_path, capsys, make, says):
    images, labels = _folders(tmp_path)
    bad = make(images, labels)
    code, out, err = _cli(capsys, "data", "check", "--images", images, "--labels", labels)
    _one_error(code, err, f"error: {bad}: ", says)
    assert "problems: 1" in out
    # Loading the case for training or scoring refuses it with the same message.
    with pytest.raises(UserError, match=r"\S") as info:
        load_sample(folder_dataset(images, labels).files("test")[0])
    assert str(info.value).startswith(f"{bad}: ") and "\n" not in str(info.value)


def _rgba(images, labels):
    Image.fromarray(np.dstack([RGB, np.full(LABEL.shape, 128, np.uint8)]), "RGBA").save(images / "01.png")


def _grey(images, labels):
    Image.fromarray(RGB[..., 1]).save(images / "01.png")


def _sixteen_bit_png(images, labels):
    Image.fromarray(RGB[..., 1].astype(np.uint16) * 257).save(images / "01.png")


def _sixteen_bit_tiff(images, labels):
    Image.fromarray(RGB[..., 1].astype(np.uint16) * 257).save(images / "01.tif")


def _png_named_jpg(images, labels):
    Image.fromarray(RGB).save(images / "01.jpg", format="PNG")


def _jpeg_named_png(images, labels):
    Image.fromarray(RGB).save(images / "01.png", format="JPEG", quality=95)


def _one_bit_label(images, labels):
    Image.fromarray(LABEL).convert("1").save(labels / "01.png")


def _sixteen_bit_label(images, labels):
    Image.fromarray(LABEL.astype(np.uint16) * 65535).save(labels / "01.png")


def _palette_label(images, labels):
    # Indices 0/1 with a black and a white colour, as DRIVE's test/2nd_manual GIFs.
    label = Image.fromarray(LABEL.astype(np.uint8), "P")
    label.putpalette([0, 0, 0, 255, 255, 255])
    label.save(labels / "01.gif")


def _palette_label_without_colours(images, labels):
    # Indices 0/1 whose colours are both black (saved without a palette): the indices carry the label.
    Image.fromarray(LABEL.astype(np.uint8), "P").save(labels / "01.png")


ACCEPTED_FILES = [
    pytest.param(_rgba, id="rgba-image"),
    pytest.param(_grey, id="grey-image"),
    pytest.param(_sixteen_bit_png, id="16-bit-png-image"),
    pytest.param(_sixteen_bit_tiff, id="16-bit-tiff-image"),
    pytest.param(_png_named_jpg, id="png-named-jpg"),  # the content decides the format, not the extension
    pytest.param(_jpeg_named_png, id="jpeg-named-png"),
    pytest.param(_one_bit_label, id="1-bit-label"),
    pytest.param(_sixteen_bit_label, id="16-bit-label"),
    pytest.param(_palette_label, id="palette-0-1-label"),
    pytest.param(_palette_label_without_colours, id="palette-0-1-label-all-black"),
]


@pytest.mark.parametrize("make", ACCEPTED_FILES)
def test_accepted_formats_check_clean_and_load(tmp_path, capsys, make):
    images, labels = _folders(tmp_path)
    make(images, labels)
    if not list(images.iterdir()):
        Image.fromarray(RGB).save(images / "01.png")
    if not list(labels.iterdir()):
        Image.fromarray(LABEL.astype(np.uint8) * 255).save(labels / "01.png")
    code, out, err = _cli(capsys, "data", "check", "--images", images, "--labels", labels)
    assert (code, err) == (0, ""), err
    assert "problems: 0" in out
    sample = load_sample(folder_dataset(images, labels).files("test")[0])
    assert sample.image.shape == (*LABEL.shape, 3) and sample.image.dtype == np.uint8
    np.testing.assert_array_equal(sample.label, LABEL)


def test_noisy_label_is_binarised_above_127_with_a_warning(tmp_path, capsys):
    """Rule (data/io.py binarise_label): > 127, or > 0 when the largest value is 1; noise only warns."""
    images, labels = _folders(tmp_path)
    Image.fromarray(RGB).save(images / "01.png")
    noise = np.random.default_rng(1).integers(0, 256, LABEL.shape).astype(np.uint8)
    Image.fromarray(noise).save(labels / "01.png")
    code, out, err = _cli(capsys, "data", "check", "--images", images, "--labels", labels)
    assert (code, err) == (0, "")
    assert "labels with more than 2 values" in out and str(labels / "01.png") in out
    with pytest.warns(UserWarning, match=r"01\.png: label has \d+ distinct values, not 2; binarised"):
        sample = load_sample(folder_dataset(images, labels).files("test")[0])
    np.testing.assert_array_equal(sample.label, noise > 127)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        pytest.param(["--images", "{empty}"], "{empty}: empty folder (no image files)", id="empty-image-folder"),
        pytest.param(["--images", "{missing}"], "{missing}: no such folder", id="missing-image-folder"),
        pytest.param(["{empty}"], "{empty}: not a DRIVE, STARE, CHASE_DB1, IDRiD", id="empty-dataset-root"),
    ],
)
def test_empty_or_missing_folder(tmp_path, capsys, argv, says):
    (tmp_path / "empty").mkdir()
    where = {"empty": tmp_path / "empty", "missing": tmp_path / "missing"}
    code, _, err = _cli(capsys, "data", "check", *(a.format(**where) for a in argv))
    _one_error(code, err, says.format(**where))


def test_evaluating_on_an_empty_folder(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    save_weights(tmp_path / "light.safetensors", create_network("light"), {"network": "light"})
    code, _, err = _cli(capsys, "evaluate", "--model", tmp_path / "light.safetensors", "--images", empty)
    _one_error(code, err, str(empty))


# --- configurations: `train CONFIG --out DIR` ---------------------------------------------------------------

DELETE = object()


def _smoke(**changes) -> dict:
    """configs/smoke.yaml with dotted keys changed (``DELETE`` removes one)."""
    config = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return config


CONFIGS = [
    pytest.param(_smoke(epochs=3), "epochs: unknown key; expected one of", id="unknown-key"),
    pytest.param(_smoke(**{"phases.patch.epoch": 3}), "phases.patch.epoch: unknown key", id="unknown-nested-key"),
    pytest.param(_smoke(**{"phases.warmup": {}}), "phases.warmup: unknown phase", id="unknown-phase"),
    pytest.param(_smoke(**{"phases.patch.epochs": "many"}), "phases.patch.epochs: expected int", id="str-for-int"),
    pytest.param(_smoke(**{"phases.patch.epochs": 2.5}), "phases.patch.epochs: expected int", id="float-for-int"),
    pytest.param(_smoke(**{"phases.patch.lr": "fast"}), "phases.patch.lr: expected float", id="str-for-float"),
    pytest.param(_smoke(**{"augmentation.flip": "yes"}), "augmentation.flip: expected bool", id="str-for-bool"),
    pytest.param(_smoke(patches=32), "patches: expected a mapping, got 32", id="int-for-mapping"),
    pytest.param(_smoke(**{"dataset.size": ["a", 2]}), "dataset.size[0]: expected int, got 'a'", id="bad-list"),
    pytest.param(_smoke(**{"dataset.kind": "drvie"}), "dataset.kind: 'drvie' is not one of", id="unknown-kind"),
    pytest.param(_smoke(name=DELETE), "name: required key missing (str)", id="missing-name"),
    pytest.param(_smoke(**{"patches.stride": 0}), "patches.stride: 0 is out of range", id="zero-stride"),
    pytest.param(_smoke(**{"patches.size": 30}), "patches.size: 30 is out of range", id="patch-not-multiple-of-4"),
    pytest.param(_smoke(**{"phases.patch.batch_size": 0}), "phases.patch.batch_size: 0 is out of", id="zero-batch"),
    pytest.param(_smoke(**{"phases.patch.lr": -1}), "phases.patch.lr: -1.0 is out of range", id="negative-lr"),
    pytest.param(_smoke(**{"dataset.val_fraction": 1}), "dataset.val_fraction: 1.0 is out of range", id="val-1"),
    pytest.param(_smoke(**{"dataset.fold": 1}), "dataset.fold: synthetic has no folds", id="fold-without-folds"),
    pytest.param(_smoke(**{"evaluation.threshold": 2}), "evaluation.threshold: 2.0 is out of range", id="threshold-2"),
    pytest.param(_smoke(**{"evaluation.threshold": "best"}), "threshold: 'best' is out of range", id="threshold-word"),
    pytest.param(_smoke(**{"evaluation.threshold": [1]}), "threshold: expected float or str", id="threshold-list"),
    pytest.param(
        _smoke(dataset={"kind": "drive", "path": "/nonexistent/DRIVE"}),
        "dataset.path '/nonexistent/DRIVE' does not exist",
        id="missing-dataset-path",
    ),
    pytest.param(_smoke(dataset={"kind": "drive"}), "dataset.path: required for dataset kind drive", id="no-path"),
    pytest.param(
        _smoke(**{"preprocessing.channel": "blue"}), "preprocessing.channel: 'blue' is not one of", id="bad-channel"
    ),
    pytest.param(
        _smoke(network_args={"in_channels": 3}),
        "network_args.in_channels: 3, but the pre-processing gives 1 channel(s)",
        id="in-channels-against-the-preprocessing",
    ),
    pytest.param(
        _smoke(dataset={"kind": "stare", "path": "{datasets}/STARE", "fold": 9}),
        "dataset.fold: fold 9 does not exist for stare (folds 1-5)",
        id="stare-fold-9",
    ),
    pytest.param(
        _smoke(dataset={"kind": "chase_db1", "path": "{datasets}/CHASE_DB1", "fold": 0}),
        "dataset.fold: fold 0 does not exist for chase_db1 (folds 1-4)",
        id="chase-fold-0",
    ),
    pytest.param(
        _smoke(dataset={"kind": "stare", "path": "{datasets}/STARE"}),
        "dataset.fold: required for stare",
        id="stare-without-fold",
    ),
    pytest.param("name: x\nphases: {patch: {epochs: 3}\n", "not valid YAML (expected ',' or '}'", id="invalid-yaml"),
    pytest.param("name: x\n  seed: 1\n", "YAML (mapping values are not allowed here at line 2", id="bad-indent"),
    pytest.param("", "empty; expected a mapping of keys", id="empty-file"),
    pytest.param("- name: x\n", "expected a mapping of keys, got list", id="list-not-mapping"),
    pytest.param(b"\x89PNG\r\n\x1a\n\xff\xfe", "not a text file", id="binary-file"),
    pytest.param(
        _smoke(phases={"finetune": {"epochs": 1}}), "phases.finetune needs phases.patch", id="finetune-without-patch"
    ),
]


@pytest.mark.parametrize(("config", "says"), CONFIGS)
def test_bad_configuration_names_the_key(tmp_path, capsys, request, config, says):
    path = tmp_path / "bad.yaml"
    if isinstance(config, dict):
        config = yaml.safe_dump(config)
        if "{datasets}" in config:
            config = config.replace("{datasets}", str(request.getfixturevalue("datasets")))
    path.write_bytes(config if isinstance(config, bytes) else config.encode())
    code, _, err = _cli(capsys, "train", path, "--out", tmp_path / "run")
    _one_error(code, err, f"error: {path}: ", says)
    # Refused before the run directory is claimed: the fixed configuration runs with the same --out.
    assert not (tmp_path / "run").exists()


def test_missing_configuration_file(tmp_path, capsys):
    code, _, err = _cli(capsys, "train", tmp_path / "nope.yaml", "--out", tmp_path / "run")
    _one_error(code, err, f"{tmp_path / 'nope.yaml'}: no such configuration file")


def test_dataset_of_another_kind(tmp_path, capsys, datasets):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_smoke(dataset={"kind": "drive", "path": str(datasets / "STARE")})))
    code, _, err = _cli(capsys, "train", path, "--out", tmp_path / "run")
    _one_error(code, err, f"{datasets / 'STARE'}: not a drive layout")


# --- weights: `evaluate --model FILE` and load_model ---------------------------------------------------------


def _light_as_mini_unet(path: Path) -> None:
    save_weights(path, create_network("light"), {"network": "mini-unet"})


def _mini_unet_as_light(path: Path) -> None:
    save_weights(path, create_network("mini-unet"), {"network": "light"})


def _no_network_named(path: Path) -> None:
    save_weights(path, create_network("light"), {"dataset": "drive"})


def _unknown_network(path: Path) -> None:
    save_weights(path, create_network("light"), {"network": "resnet"})


def _random_bytes(path: Path) -> None:
    # A first byte that is neither pickle's 0x80 nor zip's "P": the safetensors reader itself must refuse it.
    path.write_bytes(bytes([0x17]) + np.random.default_rng(2).bytes(4095))


def _truncated_weights(path: Path) -> None:
    save_weights(path, create_network("light"), {"network": "light"})
    _cut(path)


def _zero_byte_weights(path: Path) -> None:
    path.write_bytes(b"")


def _torch_save_zip(path: Path) -> None:
    torch.save(create_network("light").state_dict(), path)


def _torch_save_legacy(path: Path) -> None:
    torch.save(create_network("light").state_dict(), path, _use_new_zipfile_serialization=False)


def _a_folder(path: Path) -> None:
    path.mkdir()


WEIGHTS = [
    pytest.param(_light_as_mini_unet, "x.safetensors", "weights do not fit the network MiniUnet", id="light-as-unet"),
    pytest.param(_mini_unet_as_light, "x.safetensors", "weights do not fit the network Light", id="unet-as-light"),
    pytest.param(_no_network_named, "x.safetensors", "the metadata names no network", id="no-network"),
    pytest.param(_unknown_network, "x.safetensors", "network 'resnet': unknown", id="unknown-network"),
    pytest.param(_random_bytes, "x.safetensors", "not a readable safetensors file", id="random-bytes"),
    pytest.param(_truncated_weights, "x.safetensors", "not a readable safetensors file", id="truncated"),
    pytest.param(_zero_byte_weights, "x.safetensors", "not a readable safetensors file", id="zero-byte"),
    pytest.param(_torch_save_zip, "x.safetensors", "a pickle checkpoint", id="pickle-named-safetensors"),
    pytest.param(_torch_save_zip, "x.pt", "a pickle checkpoint", id="pickle-pt"),
    pytest.param(_torch_save_legacy, "x.pt", "a pickle checkpoint", id="legacy-pickle-pt"),
    pytest.param(None, "x.safetensors", "no such weights file", id="missing"),
    pytest.param(_a_folder, "x.safetensors", "a folder, not a weights file", id="a-folder"),
]


@pytest.fixture(scope="module")
def one_image(tmp_path_factory) -> Path:
    """A folder with one labelled image: what `evaluate --model` scores."""
    root = tmp_path_factory.mktemp("one-image")
    _folders(root)
    Image.fromarray(RGB).save(root / "images" / "01.png")
    Image.fromarray(LABEL.astype(np.uint8) * 255).save(root / "labels" / "01.png")
    return root


@pytest.mark.parametrize(("make", "name", "says"), WEIGHTS)
def test_bad_weights_file(tmp_path, capsys, one_image, make, name, says):
    path = tmp_path / name
    if make:
        make(path)
    data = ("--images", one_image / "images", "--labels", one_image / "labels")
    code, _, err = _cli(capsys, "evaluate", "--model", path, *data)
    _one_error(code, err, f"error: {path}", says)
    with pytest.raises(UserError, match=says.replace("(", r"\(")):
        load_model(path)


def test_good_weights_load(tmp_path):
    save_weights(tmp_path / "x.safetensors", create_network("mini-unet"), {"network": "mini-unet"})
    model, metadata = load_model(tmp_path / "x.safetensors")
    assert type(model).__name__ == "MiniUnet" and metadata.network == "mini-unet" and not model.training


def test_weights_naming_user_code_import_it_only_when_asked(tmp_path, capsys, monkeypatch, one_image):
    # A weights file must not make us import a module: the user names it with --network.
    (tmp_path / "my_net.py").write_text(
        "import pathlib\n"
        "from torch import nn\n"
        "pathlib.Path(__file__).with_name('imported').touch()\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(1, 1, 3, padding=1)\n"
        "    def forward(self, x):\n"
        "        return self.conv(x)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path, weights = tmp_path / "user.safetensors", torch.nn.Module()
    weights.conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    save_weights(path, weights, {"network": "my_net:Net"})
    data = ("--images", one_image / "images", "--labels", one_image / "labels")
    code, _, err = _cli(capsys, "evaluate", "--model", path, *data)
    _one_error(code, err, f"error: {path}", "pass --network my_net:Net")
    assert not (tmp_path / "imported").exists()

    model, _ = load_model(path, network="my_net:Net")
    assert type(model).__name__ == "Net" and (tmp_path / "imported").exists()
    sys.modules.pop("my_net", None)


# --- an image smaller than a patch ---------------------------------------------------------------------------
# The grid reflect-pads each side up to a whole window; balanced and random sampling pad by half a patch.
# That works while the padding is smaller than the image side (torch's "reflect" rule).


@pytest.mark.parametrize("sampling", ["grid", "balanced", "random"])
def test_image_smaller_than_a_patch_gives_padded_patches(sampling):
    label = np.zeros((2, 20, 20), bool)
    label[:, 8:12] = True
    config = PatchConfig(size=32, stride=16, sampling=sampling, per_class=3, count=5)
    x, y = patch_database(label.astype(np.float32), label, config)
    assert x.shape[1:] == y.shape[1:] == (1, 32, 32) and len(x) == {"grid": 2, "balanced": 12, "random": 10}[sampling]
    assert torch.equal(x > 0.5, y > 0.5)


@pytest.mark.parametrize("sampling", ["grid", "balanced"])
def test_image_under_half_a_patch(sampling):
    label = np.zeros((1, 12, 12), bool)
    label[:, 4:8] = True
    x, _ = patch_database(label.astype(np.float32), label, PatchConfig(size=32, stride=16, sampling=sampling))
    assert x.shape[1:] == (1, 32, 32)


def test_training_on_images_smaller_than_a_patch(tmp_path, capsys):
    rng = np.random.default_rng(3)
    for split, count in (("train", 3), ("test", 1)):
        for folder in ("images", "labels"):
            (tmp_path / "data" / split / folder).mkdir(parents=True)
        for i in range(count):
            rgb, label, _ = make_case(rng, 20)
            Image.fromarray(rgb).save(tmp_path / "data" / split / "images" / f"{i:02d}.png")
            Image.fromarray(label.astype(np.uint8) * 255).save(tmp_path / "data" / split / "labels" / f"{i:02d}.png")
    config = _fast_config(tmp_path, epochs=1, dataset={"kind": "folder", "path": str(tmp_path / "data")})
    code, out, err = _cli(capsys, "train", config, "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    assert "Patch" in out and (tmp_path / "run" / "patch.safetensors").is_file()


# --- faults during training ----------------------------------------------------------------------------------


def _fast_config(tmp_path: Path, epochs: int = 2, **changes) -> Path:
    """The smoke configuration cut to one short patch phase on 32x32 images: seconds, not minutes."""
    config = _smoke(
        precision="fp32",
        dataset={"kind": "synthetic", "synthetic_images": 4, "synthetic_size": 32},
        phases={"patch": {"epochs": epochs, "batch_size": 8}},
        evaluation={"patch_stride": 16},
    )
    config.update(changes)
    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _tiny_fit(checkpoint: Path, epochs: int = 2) -> list[dict]:
    """`fit` alone on a few 16x16 images: the training loop without a dataset."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 16, 16, generator=generator)
    data = TrainingData(x, (x > 0.5).float())
    torch.manual_seed(0)
    return fit(
        create_network("light"), data, data, "patch", PhaseConfig(epochs=epochs, batch_size=4), checkpoint,
        precision="fp32", quiet=True,
    )  # fmt: skip


def _checkpoint_state(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()["state"])


def _assert_checkpoint_of_epoch(path: Path, epoch: int) -> None:
    """The checkpoint is whole (it loads), holds ``epoch``, and its weights are finite."""
    assert _checkpoint_state(path)["epoch"] == epoch
    assert all(torch.isfinite(t).all() for t in load_file(str(path)).values())


def _fail_second_write(monkeypatch, checkpoint: Path, how: str) -> None:
    """Make the checkpoint write of epoch 2 (the file exists from epoch 1) fail the way ``how`` says."""
    real_save, real_fsync, real_replace = safetensors.torch.save_file, os.fsync, os.replace

    def second(path) -> bool:
        return checkpoint.exists() and Path(path).name.startswith(f".{checkpoint.name}.")

    def save_file(tensors, path, metadata=None):
        if not second(path):
            return real_save(tensors, path, metadata=metadata)
        real_save(tensors, path, metadata=metadata)
        _cut(Path(path))  # the disk filled up half-way through the file
        if how == "safetensors-io-error":  # what safetensors raises on a real full disk
            raise SafetensorError('Error while serializing: I/O error: No space left on device (os error 28) at "x"')
        if how == "ctrl-c-while-writing":
            raise KeyboardInterrupt
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fsync(fd):
        if second(os.readlink(f"/proc/self/fd/{fd}")):  # Linux: the file behind the descriptor
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    def replace(src, dst):
        if second(src):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_replace(src, dst)

    if how == "fsync-enospc":
        monkeypatch.setattr(os, "fsync", fsync)
    elif how == "rename-eio":
        monkeypatch.setattr(os, "replace", replace)
    else:
        monkeypatch.setattr(safetensors.torch, "save_file", save_file)  # imported by the write, when it writes


DISK_FAULTS = [
    pytest.param("safetensors-io-error", "No space left on device", id="full-disk-in-safetensors"),
    pytest.param("oserror-enospc", "No space left on device", id="full-disk-oserror"),
    pytest.param("fsync-enospc", "No space left on device", id="full-disk-at-fsync"),
    pytest.param("rename-eio", "Input/output error", id="rename-fails"),
    pytest.param("ctrl-c-while-writing", None, id="ctrl-c-while-writing"),
]


@pytest.mark.parametrize(("how", "says"), DISK_FAULTS)
def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch, how, says):
    checkpoint = tmp_path / "checkpoints" / "patch.safetensors"
    _fail_second_write(monkeypatch, checkpoint, how)
    expected = KeyboardInterrupt if says is None else UserError
    with pytest.raises(expected) as info:
        _tiny_fit(checkpoint)
    if says:
        assert str(info.value) == f"{checkpoint}: could not be written ({says}); the previous version is unchanged"
    _assert_checkpoint_of_epoch(checkpoint, 1)
    _no_temporary_files(tmp_path)
    monkeypatch.undo()  # the disk has room again: the phase resumes after epoch 1 and finishes
    assert [row["epoch"] for row in _tiny_fit(checkpoint)] == [1, 2]
    _assert_checkpoint_of_epoch(checkpoint, 2)


def test_full_disk_during_training_is_one_line(tmp_path, capsys, monkeypatch):
    checkpoint = tmp_path / "run" / "checkpoints" / "patch.safetensors"
    _fail_second_write(monkeypatch, checkpoint, "fsync-enospc")
    code, _, err = _cli(capsys, "train", _fast_config(tmp_path), "--out", tmp_path / "run", "--quiet")
    _one_error(code, err, f"error: {checkpoint}: could not be written (No space left on device)")
    _assert_checkpoint_of_epoch(checkpoint, 1)
    _no_temporary_files(tmp_path / "run")


def test_unwritable_output_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    code, _, err = _cli(capsys, "train", _fast_config(tmp_path), "--out", tmp_path / "file" / "run")
    # The first write under --out is the synthetic data; with a real dataset it is config.yaml.
    _one_error(code, err, f"{tmp_path / 'file' / 'run'}")
    assert "Not a directory" in err


def _fail_loss(monkeypatch, epoch: int, where: str, value: float) -> None:
    """Make the loss of ``epoch`` (its training batches, or its validation) ``value`` (NaN or inf)."""
    real_epoch, real_loss = fit_module._train_epoch, fit_module.bce_dice_loss
    current = {}

    def train_epoch(*args):
        current["epoch"] = int(args[8].split()[-1])  # the label, "patch 2"
        return real_epoch(*args)

    def loss(logits, target):
        training = torch.is_grad_enabled()  # validation runs under inference_mode
        hit = current.get("epoch") == epoch and training == (where == "training")
        return real_loss(logits, target) * (value if hit else 1.0)

    monkeypatch.setattr(fit_module, "_train_epoch", train_epoch)
    monkeypatch.setattr(fit_module, "bce_dice_loss", loss)


BAD_LOSSES = [
    pytest.param("training", float("nan"), 2, id="nan-training-loss"),
    pytest.param("training", float("inf"), 2, id="inf-training-loss"),
    pytest.param("validation", float("nan"), 2, id="nan-validation-loss"),
    pytest.param("training", float("nan"), 1, id="nan-in-the-first-epoch"),
]


@pytest.mark.parametrize(("where", "value", "epoch"), BAD_LOSSES)
def test_bad_loss_stops_and_keeps_the_last_good_epoch(tmp_path, monkeypatch, where, value, epoch):
    checkpoint = tmp_path / "patch.safetensors"
    _fail_loss(monkeypatch, epoch, where, value)
    with pytest.raises(UserError) as info:
        _tiny_fit(checkpoint, epochs=3)
    kept = f"{checkpoint} keeps epoch 1" if epoch == 2 else "no epoch was saved"
    assert str(info.value) == (
        f"phase patch, epoch {epoch}: the {where} loss is {value}; stopped, {kept} (try a lower phases.patch.lr)"
    )
    if epoch == 2:
        _assert_checkpoint_of_epoch(checkpoint, 1)
    else:
        assert not checkpoint.exists()


def test_nan_loss_during_training_is_one_line(tmp_path, capsys, monkeypatch):
    _fail_loss(monkeypatch, 2, "training", float("nan"))
    code, _, err = _cli(capsys, "train", _fast_config(tmp_path, epochs=3), "--out", tmp_path / "run", "--quiet")
    checkpoint = tmp_path / "run" / "checkpoints" / "patch.safetensors"
    _one_error(code, err, "phase patch, epoch 2: the training loss is nan", f"{checkpoint} keeps epoch 1")
    _assert_checkpoint_of_epoch(checkpoint, 1)
    assert not (tmp_path / "run" / "patch.safetensors").exists()


def _interrupt_at(monkeypatch, epoch: int) -> None:
    """Ctrl-C at the start of ``epoch``: a KeyboardInterrupt from inside the training loop."""
    real = fit_module._train_epoch

    def train_epoch(*args):
        if args[8] == f"patch {epoch}":
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(fit_module, "_train_epoch", train_epoch)


def test_ctrl_c_keeps_the_last_epoch_and_resume_finishes(tmp_path, capsys, monkeypatch):
    config, out = _fast_config(tmp_path), tmp_path / "run"
    _interrupt_at(monkeypatch, 2)
    code, _, err = _cli(capsys, "train", config, "--out", out, "--quiet")
    assert code == 130 and "Traceback" not in err and len(err.splitlines()) == 1
    _assert_checkpoint_of_epoch(out / "checkpoints" / "patch.safetensors", 1)
    assert not (out / "patch.safetensors").exists()
    _no_temporary_files(out)
    monkeypatch.undo()
    code, _, err = _cli(capsys, "train", config, "--out", out, "--resume", "--quiet")
    assert code == 0, err
    assert (out / "patch.safetensors").is_file() and (out / "metrics" / "patch.json").is_file()
    assert [line.split(",")[:2] for line in (out / "history.csv").read_text().splitlines()[1:]] == [
        ["patch", "1"],
        ["patch", "2"],
    ]


def test_damaged_checkpoint_on_resume_is_one_line(tmp_path, capsys, monkeypatch):
    config, out = _fast_config(tmp_path), tmp_path / "run"
    _interrupt_at(monkeypatch, 1)
    assert _cli(capsys, "train", config, "--out", out, "--quiet")[0] == 130
    checkpoint = out / "checkpoints" / "patch.safetensors"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    monkeypatch.undo()
    code, _, err = _cli(capsys, "train", config, "--out", out, "--resume", "--quiet")
    _one_error(code, err, f"error: {checkpoint}: unreadable checkpoint", "delete it to restart this phase")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("--threshold", "1.7"), "--threshold 1.7: must be between 0 and 1"),
        (("--mode", "patch", "--stride", "0"), "--stride 0: must be between 1 and the patch size (32)"),
        (("--mode", "patch", "--stride", "33"), "--stride 33: must be between 1 and the patch size (32)"),
    ],
)
def test_evaluate_options_out_of_range(tmp_path, capsys, one_image, argv, says):
    weights = tmp_path / "x.safetensors"
    save_weights(weights, create_network("light"), {"network": "light"})
    data = ("--images", one_image / "images", "--labels", one_image / "labels")
    _one_error(*_cli(capsys, "evaluate", "--model", weights, *data, *argv)[::2], says)


@pytest.mark.parametrize("device", ["foo", "cuda:9"])
def test_unknown_training_device(tmp_path, capsys, device):
    code, _, err = _cli(capsys, "train", _fast_config(tmp_path), "--out", tmp_path / "run", "--device", device)
    _one_error(code, err, f"--device {device}: ")


@pytest.mark.parametrize("damaged", ["run.json", "config.yaml"])
def test_damaged_run_files_on_resume_and_report(tmp_path, capsys, monkeypatch, damaged):
    config, out = _fast_config(tmp_path), tmp_path / "run"
    _interrupt_at(monkeypatch, 2)
    assert _cli(capsys, "train", config, "--out", out, "--quiet")[0] == 130
    monkeypatch.undo()
    (out / damaged).write_text("{not: [valid")
    code, _, err = _cli(capsys, "train", config, "--out", out, "--resume", "--quiet")
    _one_error(code, err, f"error: {out / damaged}: not valid")
    code, _, err = _cli(capsys, "report", out, "--out", tmp_path / "report")
    _one_error(code, err, f"error: {out / damaged}: not valid")


@pytest.mark.parametrize("content", ["[1, 2]", '{"whole": {}}', "{not json"])
def test_report_of_a_json_that_is_not_an_evaluation(tmp_path, capsys, content):
    path = tmp_path / "x.json"
    path.write_text(content)
    code, _, err = _cli(capsys, "report", path, "--out", tmp_path / "report")
    _one_error(code, err, f"error: {path}: not an evaluation")


def test_weights_metadata_with_an_empty_schema_loads(tmp_path):
    path = tmp_path / "x.safetensors"
    save_weights(path, create_network("light"), {"network": "light", "schema": None})
    assert load_model(path)[1].schema == weights_module.SCHEMA


def test_file_system_error_without_a_file_name(capsys, monkeypatch):
    def refuse(args):
        raise OSError("PNG encoding failed")

    monkeypatch.setattr("patch2image.cli.cmd_data_check", refuse)
    code, _, err = _cli(capsys, "data", "check", "somewhere")
    assert code == 2 and err == "error: PNG encoding failed\n"
