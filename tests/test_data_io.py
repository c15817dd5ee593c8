"""Reading images and labels, pairing folders: small files made in tmp_path."""

import gzip
import struct
import warnings
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from patch2image.data import (
    Dataset,
    check_dataset,
    field_of_view_mask,
    folder_dataset,
    fov_diameter,
    load_sample,
    open_dataset,
    read_image,
    read_mask,
)
from patch2image.data.pairing import sample_name
from patch2image.errors import UserError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)
LABEL = np.zeros((30, 40), bool)
LABEL[5:20, 10:30] = True


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# --- read_image ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["png", "tif", "tiff", "ppm", "bmp"])
def test_lossless_rgb_formats_round_trip(tmp_path, ext):
    path = tmp_path / f"x.{ext}"
    Image.fromarray(RGB).save(path)
    np.testing.assert_array_equal(read_image(path), RGB)


@pytest.mark.parametrize("ext", ["jpg", "jpeg"])
def test_jpeg_is_read_close_to_the_original(tmp_path, ext):
    smooth = cv2.GaussianBlur(RGB, (0, 0), 3)
    path = tmp_path / f"x.{ext}"
    Image.fromarray(smooth).save(path, quality=95)
    image = read_image(path)
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8
    assert np.abs(image.astype(int) - smooth).mean() < 3


@pytest.mark.parametrize("ext", ["ppm", "png", "pgm", "jpg"])
def test_gzipped_files_are_read(tmp_path, ext):
    plain = tmp_path / f"x.{ext}"
    Image.fromarray(RGB if ext != "pgm" else RGB[..., 0]).save(plain)
    packed = tmp_path / f"x.{ext}.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    np.testing.assert_array_equal(read_image(packed), read_image(plain))


def test_gif_palette_is_expanded_to_rgb(tmp_path):
    palette_image = Image.fromarray(RGB).quantize(16)
    palette_image.save(tmp_path / "x.gif")
    np.testing.assert_array_equal(read_image(tmp_path / "x.gif"), np.asarray(palette_image.convert("RGB")))


def test_grey_is_replicated_to_three_channels(tmp_path):
    Image.fromarray(RGB[..., 1]).save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    assert image.shape == (30, 40, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], RGB[..., 1])


def test_rgba_drops_alpha(tmp_path):
    rgba = np.dstack([RGB, np.full((30, 40), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), RGB)


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_sixteen_bit_is_scaled_to_eight(tmp_path, ext):
    grey16 = RGB[..., 0].astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / f"g.{ext}"), grey16)
    np.testing.assert_array_equal(read_image(tmp_path / f"g.{ext}")[..., 0], RGB[..., 0])
    rgb16 = RGB.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / f"c.{ext}"), rgb16[..., ::-1])
    np.testing.assert_array_equal(read_image(tmp_path / f"c.{ext}"), RGB)


def test_lying_extension_is_read_by_content(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "really_a.png", format="PNG")
    (tmp_path / "really_a.png").rename(tmp_path / "named.jpg")
    np.testing.assert_array_equal(read_image(tmp_path / "named.jpg"), RGB)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(UserError, match=r"nope\.png: no such file"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UserError, match=r"empty\.png: empty file"):
        read_image(tmp_path / "empty.png")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"hello, not an image\n", "content is text"),
        (b"%PDF-1.4\n...", "PDF"),
        (b"\x00\x01\x02\x03" * 8, "first bytes"),
    ],
)
def test_non_images_say_what_they_are(tmp_path, content, says):
    (tmp_path / "x.png").write_bytes(content)
    with pytest.raises(UserError, match=says) as info:
        read_image(tmp_path / "x.png")
    assert str(tmp_path / "x.png") in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("ext", ["png", "jpg", "ppm", "tif", "ppm.gz"])
def test_truncated_files_are_caught(tmp_path, ext):
    whole = tmp_path / f"whole.{ext.removesuffix('.gz')}"
    Image.fromarray(RGB).save(whole)
    data = whole.read_bytes()
    if ext.endswith(".gz"):
        data = gzip.compress(data)
    (tmp_path / f"cut.{ext}").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"cut\.\S+: (truncated|corrupt)") as info:
        read_image(tmp_path / f"cut.{ext}")
    assert "\n" not in str(info.value)


def test_enormous_png_header_is_refused_before_decoding(tmp_path):
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
    (tmp_path / "bomb.png").write_bytes(data + _png_chunk(b"IEND", b""))
    with pytest.raises(UserError, match=r"bomb\.png: header claims 100000x100000 = 10,000 megapixels, about 27\.9 GiB"):
        read_image(tmp_path / "bomb.png")


def test_enormous_bmp_header_gives_size_and_memory(tmp_path):
    header = struct.pack("<IiiHHIIiiII", 40, 15_000, -15_000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    (tmp_path / "bomb.bmp").write_bytes(b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + header)
    with pytest.raises(UserError, match=r"15000x15000 = 225 megapixels, about 0\.6 GiB") as info:
        read_image(tmp_path / "bomb.bmp")
    assert "200 megapixels" in str(info.value)


# --- read_mask -----------------------------------------------------------------------------------------------


def test_mask_from_0_255_grey(tmp_path):
    Image.fromarray(LABEL.astype(np.uint8) * 255).save(tmp_path / "m.gif")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.gif"), LABEL)


def test_mask_from_0_1_values_and_1_bit(tmp_path):
    Image.fromarray(LABEL.astype(np.uint8)).save(tmp_path / "m01.png")
    Image.fromarray(LABEL).save(tmp_path / "m1.png")
    assert Image.open(tmp_path / "m1.png").mode == "1"
    np.testing.assert_array_equal(read_mask(tmp_path / "m01.png"), LABEL)
    np.testing.assert_array_equal(read_mask(tmp_path / "m1.png"), LABEL)


@pytest.mark.parametrize("colour", [(255, 0, 0), (252, 254, 252)])
def test_mask_from_palette_indices_0_1(tmp_path, colour):
    # IDRiD's OD TIFFs: index 1 is red; DRIVE's 2nd_manual GIFs: index 1 is near white.
    image = Image.fromarray(LABEL.astype(np.uint8), "P")
    image.putpalette([4, 2, 4, *colour] + [0, 0, 0] * 254)
    for ext in ("tif", "gif", "png"):
        image.save(tmp_path / f"p.{ext}")
        np.testing.assert_array_equal(read_mask(tmp_path / f"p.{ext}"), LABEL)


def test_mask_16_bit(tmp_path):
    cv2.imwrite(str(tmp_path / "m.png"), LABEL.astype(np.uint16) * 65535)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), LABEL)


def test_noisy_label_warns_and_binarises_above_127(tmp_path):
    noisy = LABEL.astype(np.uint8) * 250
    noisy[0, :3] = [3, 100, 140]
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    with pytest.warns(UserWarning, match=r"noisy\.png: label has 5 distinct values"):
        mask = read_mask(tmp_path / "noisy.png")
    expected = LABEL.copy()
    expected[0, 2] = True
    np.testing.assert_array_equal(mask, expected)


def test_clean_label_does_not_warn(tmp_path):
    Image.fromarray(LABEL.astype(np.uint8) * 255).save(tmp_path / "m.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_mask(tmp_path / "m.png")


# --- field of view -------------------------------------------------------------------------------------------


def test_field_of_view_finds_a_bright_disc():
    yy, xx = np.mgrid[:200, :240]
    disc = (yy - 100) ** 2 + (xx - 120) ** 2 <= 90**2
    rgb = np.zeros((200, 240, 3), np.uint8)
    rgb[disc] = (170, 80, 30)
    rgb[(yy - 100) ** 2 + (xx - 120) ** 2 <= 10**2] = (20, 10, 5)  # a dark lesion inside: a hole to fill
    mask = field_of_view_mask(rgb)
    assert (mask & disc).sum() / (mask | disc).sum() > 0.97
    assert fov_diameter(mask) == pytest.approx(181, abs=2)


def test_field_of_view_without_surround_is_everything():
    assert field_of_view_mask(np.full((20, 30, 3), 120, np.uint8)).all()
    assert fov_diameter(np.zeros((5, 5), bool)) == 0.0


# --- folders -------------------------------------------------------------------------------------------------


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.mark.parametrize(
    ("file", "name"),
    [
        ("21_training.tif", "21"),
        ("21_manual1.gif", "21"),
        ("21_training_mask.gif", "21"),
        ("01_test_mask.gif", "01"),
        ("im0001.ah.ppm.gz", "im0001"),
        ("im0001.vk.ppm", "im0001"),
        ("Image_01L_1stHO.png", "Image_01L"),
        ("IDRiD_01_OD.tif", "IDRiD_01"),
        ("case-7_GT.PNG", "case-7"),
        ("scan_label.jpeg", "scan"),
        ("train01.png", "train01"),
    ],
)
def test_sample_names_drop_extensions_and_suffixes(file, name):
    from pathlib import Path

    assert sample_name(Path(file)) == name


def test_folder_pairs_by_name_across_formats_and_suffixes(tmp_path):
    _write(tmp_path / "images" / "A1.jpg", RGB)
    _write(tmp_path / "images" / "b2.tif", RGB)
    _write(tmp_path / "Ground_Truth" / "a1_manual1.gif", LABEL.astype(np.uint8) * 255)
    _write(tmp_path / "Ground_Truth" / "B2_GT.png", LABEL)
    _write(tmp_path / "FOV" / "a1_mask.png", np.full((30, 40), 255, np.uint8))
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    dataset = open_dataset(tmp_path)
    assert dataset.kind == "folder" and dataset.paper_size is None and dataset.folds() == []
    cases = dataset.files("test")
    assert [c.name for c in cases] == ["A1", "b2"]
    assert cases[0].label.name == "a1_manual1.gif" and cases[0].fov.name == "a1_mask.png"
    assert cases[1].fov is None
    assert dataset.files("all") == cases
    sample = load_sample(cases[1])
    assert sample.fov_source.startswith("computed: ") and sample.original_size == (30, 40)
    np.testing.assert_array_equal(sample.label, LABEL)
    assert load_sample(cases[0]).fov_source == "dataset"
    report, problems = check_dataset(dataset)
    assert problems == [f"{tmp_path / 'images' / 'b2.tif'}: missing field-of-view mask (one will be computed)"]
    assert "folder" in report


@pytest.mark.parametrize(("images", "labels", "masks"), [("img", "gt", "roi"), ("Originals", "1st_manual", "mask")])
def test_subfolder_names_are_recognised(tmp_path, images, labels, masks):
    for split in ("training", "Test"):
        for i in range(3):
            _write(tmp_path / split / images / f"{split}{i}.png", RGB)
            _write(tmp_path / split / labels / f"{split}{i}.png", LABEL)
            _write(tmp_path / split / masks / f"{split}{i}.png", LABEL)
    dataset = open_dataset(tmp_path, "folder")
    assert len(dataset.files("test")) == 3
    assert len(dataset.files("train")) == 2 and len(dataset.files("val")) == 1
    assert {c.name for c in dataset.files("train") + dataset.files("val")} == {"training0", "training1", "training2"}
    assert check_dataset(dataset)[1] == []


def test_val_folder_replaces_the_held_out_share(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 1)):
        for i in range(n):
            _write(tmp_path / split / "images" / f"{split}{i}.png", RGB)
            _write(tmp_path / split / "labels" / f"{split}{i}.png", LABEL)
    dataset = open_dataset(tmp_path)
    assert [len(dataset.files(s)) for s in ("train", "val", "test", "all")] == [4, 2, 1, 7]


def test_validation_share_is_seeded(tmp_path):
    for i in range(10):
        _write(tmp_path / "train" / "images" / f"{i:02d}.png", RGB[:4, :4])
        _write(tmp_path / "train" / "labels" / f"{i:02d}.png", LABEL[:4, :4])
    dataset = open_dataset(tmp_path)
    val = [c.name for c in dataset.files("val", seed=3)]
    assert len(val) == 2 and val == [c.name for c in dataset.files("val", seed=3)]
    assert len(dataset.files("train", val_fraction=0.3)) == 7
    assert {tuple(c.name for c in dataset.files("val", seed=s)) for s in range(6)} != {tuple(val)}
    with pytest.raises(UserError, match="no test split"):
        dataset.files("test")
    with pytest.raises(UserError, match="has no folds"):
        dataset.files("train", fold=1)


def test_missing_label_is_a_problem_and_an_error_when_loading(tmp_path):
    _write(tmp_path / "images" / "01.png", RGB)
    _write(tmp_path / "images" / "02.png", RGB)
    _write(tmp_path / "labels" / "01.png", LABEL)
    _write(tmp_path / "labels" / "03.png", LABEL)
    dataset = folder_dataset(tmp_path / "images", tmp_path / "labels")
    _, problems = check_dataset(dataset)
    assert problems == [
        f"{tmp_path / 'labels' / '03.png'}: label without an image (no image is named '03')",
        f"{tmp_path / 'images' / '02.png'}: missing label (nothing in {tmp_path / 'labels'} pairs with it)",
    ]
    with pytest.raises(UserError, match=r"02\.png: no label"):
        dataset.files("test")
    unlabelled = folder_dataset(tmp_path / "images")
    assert [c.label for c in unlabelled.files("test")] == [None, None]
    assert check_dataset(unlabelled)[1] == []


def test_size_mismatch_is_a_problem_and_an_error_when_loading(tmp_path):
    _write(tmp_path / "images" / "01.png", RGB)
    _write(tmp_path / "labels" / "01.png", LABEL[:20, :25])
    dataset = open_dataset(tmp_path)
    expected = (
        f"{tmp_path / 'labels' / '01.png'}: size 25x20 differs from its image {tmp_path / 'images' / '01.png'} 40x30"
    )
    assert check_dataset(dataset)[1] == [expected]
    with pytest.raises(UserError) as info:
        load_sample(dataset.files("test")[0])
    assert str(info.value) == expected


def test_empty_and_unrecognised_folders(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    _, problems = check_dataset(open_dataset(tmp_path))
    assert problems == [
        f"{tmp_path / 'images'}: empty folder (no image files)",
        f"{tmp_path / 'labels'}: empty folder (no image files)",
    ]
    with pytest.raises(UserError, match="split has no images"):
        open_dataset(tmp_path).files("test")
    (tmp_path / "other").mkdir()
    with pytest.raises(UserError, match=r"other: not a DRIVE, STARE, CHASE_DB1, IDRiD, LES-AV or images/labels folder"):
        open_dataset(tmp_path / "other")
    with pytest.raises(UserError, match="no such folder"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(UserError, match="not a drive layout"):
        open_dataset(tmp_path, "drive")


def test_ambiguous_names_are_reported(tmp_path):
    _write(tmp_path / "images" / "01.png", RGB)
    _write(tmp_path / "images" / "01_test.jpg", RGB)
    _write(tmp_path / "labels" / "01.png", LABEL)
    _, problems = check_dataset(open_dataset(tmp_path))
    assert len(problems) == 1 and "pairing is ambiguous" in problems[0]


def test_check_reports_unreadable_files(tmp_path):
    _write(tmp_path / "images" / "01.png", RGB)
    _write(tmp_path / "labels" / "01.png", LABEL)
    data = (tmp_path / "images" / "01.png").read_bytes()
    (tmp_path / "images" / "01.png").write_bytes(data[:100])
    report, problems = check_dataset(open_dataset(tmp_path))
    assert len(problems) == 1 and problems[0].startswith(f"{tmp_path / 'images' / '01.png'}: truncated")
    assert "problems: 1" in report


def test_dataset_is_a_plain_class():
    dataset = Dataset("folder", ".", "vessels", {"test": []}, labelled=False)
    assert dataset.cases() == [] and dataset.task == "vessels"


def test_cli_check_of_an_image_folder(tmp_path, capsys):
    from patch2image.cli import main

    _write(tmp_path / "images" / "01.png", RGB)
    assert main(["data", "check", "--images", str(tmp_path / "images")]) == 0
    assert "labels: none" in capsys.readouterr().out
    assert main(["data", "check", "--labels", str(tmp_path / "images")]) == 2
    assert capsys.readouterr().err == "error: --labels and --masks go with --images DIR\n"
    assert main(["data", "check", "--images", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nope'}: no such folder\n"
