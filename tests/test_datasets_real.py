"""The real datasets in ../shared/datasets: layouts, splits, labels, field-of-view masks, ``data check``."""

import gzip
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from patch2image.cli import main
from patch2image.data import field_of_view_mask, load_sample, open_dataset, read_image, read_mask
from patch2image.errors import UserError

IDRID_GT = "A. Segmentation/2. All Segmentation Groundtruths"


def _counts(dataset, **kwargs):
    return [len(dataset.files(split, **kwargs)) for split in ("train", "val", "test")]


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_drive(datasets):
    dataset = open_dataset(datasets / "DRIVE")
    assert (dataset.kind, dataset.task, dataset.paper_size, dataset.folds()) == ("drive", "vessels", (584, 568), [])
    assert _counts(dataset) == [16, 4, 20]
    assert [c.name for c in dataset.files("all")] == [f"{i:02d}" for i in range(1, 41)]
    train_names = {c.name for c in dataset.files("train") + dataset.files("val")}
    assert train_names == {f"{i:02d}" for i in range(21, 41)}
    assert all(c.second_label is not None for c in dataset.files("test"))
    assert all(c.second_label is None and c.fov is not None for c in dataset.files("train"))
    assert dataset.files("val") != dataset.files("val", seed=1)

    sample = load_sample(dataset.files("test")[0])
    assert sample.name == "01" and sample.image.shape == (584, 565, 3) and sample.fov_source == "dataset"
    assert sample.label.dtype == bool and 0.05 < sample.label.mean() < 0.2
    # 2nd_manual GIFs are palette indices 0/1: the second observer must agree with the first, mostly.
    assert sample.second_label.dtype == bool and _iou(sample.label, sample.second_label) > 0.6


def test_drive_field_of_view_matches_the_official_masks(datasets):
    ious = []
    for case in open_dataset(datasets / "DRIVE").files("all"):
        ious.append(_iou(field_of_view_mask(read_image(case.image)), read_mask(case.fov)))
    assert len(ious) == 40
    assert np.mean(ious) >= 0.97 and min(ious) > 0.95


def test_stare(datasets):
    dataset = open_dataset(datasets / "STARE")
    assert (dataset.kind, dataset.paper_size, dataset.folds()) == ("stare", (508, 600), [1, 2, 3, 4, 5])
    for fold in dataset.folds():
        assert _counts(dataset, fold=fold) == [14, 2, 4]
    assert len(dataset.files("all")) == 20
    assert [c.name for c in dataset.files("test", fold=1)] == ["im0239", "im0255", "im0291", "im0324"]
    with pytest.raises(UserError, match=r"^fold 7 does not exist for stare \(folds 1-5\)$"):
        dataset.files("train", fold=7)
    with pytest.raises(UserError, match="choose a fold"):
        dataset.files("test")
    case = dataset.files("all")[0]
    assert case.name == "im0001" and case.second_label.name == "im0001.vk.ppm.gz" and case.fov is None
    sample = load_sample(case)
    assert sample.image.shape == (605, 700, 3) and sample.fov_source.startswith("computed: ")
    assert 0.05 < sample.label.mean() < 0.2 and sample.second_label.any()


def test_stare_field_of_view_matches_the_vgan_masks(datasets):
    ious = []
    for case in open_dataset(datasets / "STARE").files("all"):
        reference = read_mask(datasets / "STARE" / "vgan_fov_masks" / case.image.name)
        ious.append(_iou(field_of_view_mask(read_image(case.image)), reference))
    assert len(ious) == 20
    assert np.mean(ious) >= 0.95


def test_stare_unzipped_ppm_reads_like_the_gzipped(datasets, tmp_path):
    for folder, suffix in (("stare-images", ""), ("labels-ah", ".ah"), ("labels-vk", ".vk")):
        (tmp_path / folder).mkdir()
        for name in ("im0001", "im0002"):
            packed = datasets / "STARE" / folder / f"{name}{suffix}.ppm.gz"
            (tmp_path / folder / f"{name}{suffix}.ppm").write_bytes(gzip.decompress(packed.read_bytes()))
    plain = open_dataset(tmp_path)
    assert plain.kind == "stare" and [c.name for c in plain.files("all")] == ["im0001", "im0002"]
    original = {c.name: c for c in open_dataset(datasets / "STARE").files("all")}
    for case in plain.files("all"):
        np.testing.assert_array_equal(read_image(case.image), read_image(original[case.name].image))
        np.testing.assert_array_equal(read_mask(case.label), read_mask(original[case.name].label))
    with pytest.raises(UserError, match="missing from the dataset"):
        plain.files("train", fold=1)


def test_chase_db1(datasets):
    dataset = open_dataset(datasets / "CHASE_DB1")
    assert (dataset.kind, dataset.paper_size, dataset.folds()) == ("chase_db1", (460, 500), [1, 2, 3, 4])
    for fold in dataset.folds():
        assert _counts(dataset, fold=fold) == [19, 2, 7]
    assert len(dataset.files("all")) == 28
    case = dataset.files("all")[0]
    assert case.name == "Image_01L" and case.label.name == "Image_01L_1stHO.png"
    assert case.second_label.name == "Image_01L_2ndHO.png"
    sample = load_sample(case)
    assert sample.image.shape == (960, 999, 3)
    assert 0.03 < sample.label.mean() < 0.2 and 0.6 < sample.fov.mean() < 0.75


def test_idrid(datasets):
    dataset = open_dataset(datasets / "IDRiD")
    assert (dataset.kind, dataset.task, dataset.paper_size) == ("idrid", "optic_disc", (284, 428))
    assert _counts(dataset) == [43, 11, 27]
    assert [c.name for c in dataset.files("test")][:2] == ["IDRiD_55", "IDRiD_56"]
    case = dataset.files("all")[0]
    assert case.name == "IDRiD_01" and case.label.name == "IDRiD_01_OD.tif"
    assert open_dataset(datasets / "IDRiD" / "A. Segmentation").kind == "idrid"
    sample = load_sample(case)
    assert sample.image.shape == (2848, 4288, 3) and sample.label.shape == (2848, 4288)
    # The OD mask is palette index 1 = red: a grey threshold at 127 would lose it.
    assert 0.005 < sample.label.mean() < 0.05 and (sample.label <= sample.fov).all()


def test_les_av(datasets):
    dataset = open_dataset(datasets / "LES-AV")
    assert (dataset.kind, dataset.task, dataset.paper_size, dataset.folds()) == ("les_av", "vessels", None, [])
    assert _counts(dataset) == [9, 2, 11]
    assert len(dataset.files("all")) == 22 and all(c.fov is not None for c in dataset.files("all"))
    assert all(c.artery_vein is not None and c.second_label is None for c in dataset.files("all"))
    sample = load_sample(next(c for c in dataset.files("train") if c.name == "34"))
    assert sample.image.shape == (1958, 2196, 3) and sample.fov_source == "dataset"  # the one 45-degree photograph
    assert 0.03 < sample.label.mean() < 0.15 and 0.5 < sample.fov.mean() < 0.9
    # every labelled vessel pixel is an artery, a vein or uncertain in the artery/vein map, and nothing else is
    assert set(np.unique(sample.artery_vein)) <= {0, 1, 2, 3}
    assert ((sample.artery_vein > 0) == sample.label).mean() > 0.999


@pytest.mark.parametrize("name", ["DRIVE", "STARE", "CHASE_DB1", "IDRiD", "LES-AV"])
def test_data_check_passes_on_the_real_datasets(datasets, capsys, name):
    assert main(["data", "check", str(datasets / name)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "problems: 0" in out and f"dataset: {name.lower().replace('-', '_')}" in out


def test_data_check_command_in_a_subprocess(datasets):
    done = subprocess.run(
        [sys.executable, "-m", "patch2image", "data", "check", str(datasets / "CHASE_DB1")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "fold 4: train 19, val 2, test 7" in done.stdout and "values before binarising: {0, 1} (28)" in done.stdout


def _broken_drive(datasets, root):
    """A small DRIVE copy with a missing label, a truncated image, a resized label and an empty folder."""
    for split, numbers in (("training", (21, 22, 23)), ("test", (1, 2))):
        for folder, pattern in (
            ("images", "{:02d}_%s.tif"),
            ("1st_manual", "{:02d}_manual1.gif"),
            ("mask", "{:02d}_%s_mask.gif"),
        ):
            (root / split / folder).mkdir(parents=True)
            for n in numbers:
                name = pattern.replace("%s", split).format(n)
                shutil.copy(datasets / "DRIVE" / split / folder / name, root / split / folder / name)
    (root / "test" / "2nd_manual").mkdir()
    (root / "training" / "1st_manual" / "22_manual1.gif").unlink()
    truncated = root / "training" / "images" / "23_training.tif"
    truncated.write_bytes(truncated.read_bytes()[:20000])
    small = root / "test" / "1st_manual" / "01_manual1.gif"
    Image.open(small).resize((300, 280), Image.NEAREST).save(small)


def test_data_check_reports_each_problem_of_a_broken_copy(datasets, tmp_path, capfd):
    root = tmp_path / "DRIVE"
    _broken_drive(datasets, root)
    assert main(["data", "check", str(root)]) != 0
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert all(line.startswith("error: /") for line in lines)
    expected = [
        "test/2nd_manual: empty folder",
        "training/images/22_training.tif: missing label",
        "training/images/23_training.tif: truncated or corrupt TIFF",
        "test/1st_manual/01_manual1.gif: size 300x280 differs from its image",
    ]
    for text in expected:
        assert sum(text in line for line in lines) == 1, (text, lines)
    assert "Traceback" not in err and f"problems: {len(lines)}" in out

    done = subprocess.run(
        [sys.executable, "-m", "patch2image", "data", "check", str(root)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == lines

    dataset = open_dataset(root)
    with pytest.raises(UserError, match="22_training.tif: no label"):
        dataset.files("train")
    with pytest.raises(UserError, match="01_manual1.gif: size 300x280 differs"):
        load_sample(dataset.files("test")[0])


def test_data_check_on_something_else_exits_2(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path}: not a DRIVE, STARE, CHASE_DB1, IDRiD, LES-AV or images/labels folder layout\n"
