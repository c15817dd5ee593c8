"""Every model shipped with the package segments real DRIVE test images well."""

import numpy as np
import pytest

from patch2image.data import load_sample, open_dataset
from patch2image.inference import TRAINING_SIZE, Segmenter
from patch2image.metrics import image_metrics
from patch2image.weights import load_model, shipped_models

SHIPPED = [name for name, _ in shipped_models()]


def test_the_three_drive_models_ship():
    assert {"drive-light", "drive-mini-unet", "drive-dense"} <= set(SHIPPED)


DATASET_FOLDERS = {"drive": "DRIVE", "stare": "STARE", "chase_db1": "CHASE_DB1", "idrid": "IDRiD", "les_av": "LES-AV"}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_scores_well_on_two_of_its_test_images(name, datasets):
    """Each shipped model on two test images of its own dataset and fold, at its training size."""
    model, metadata = load_model(name)
    assert metadata.network and metadata.preprocessing and metadata.input_size
    # scores over named test images, or trained on every image and saying so
    assert metadata.metrics or (not metadata.test_images and "none held out" in metadata.extra["metrics_note"])
    trained_on = metadata.extra.get("datasets") or [{"kind": metadata.dataset, "fold": metadata.fold}]
    # One dataset: its training size exactly; several: each photograph by the field-of-view rule.
    segmenter = Segmenter(model, metadata, size=TRAINING_SIZE if len(trained_on) == 1 else None)
    test_images = []
    for source in trained_on:
        dataset = open_dataset(datasets / DATASET_FOLDERS[source["kind"]], source["kind"])
        test_images += dataset.files("test", fold=source["fold"])[: 2 if len(trained_on) == 1 else 1]
    for files in test_images:
        sample = load_sample(files)
        prob = segmenter(sample.image)
        assert prob.shape == sample.label.shape and np.isfinite(prob).all()
        scores = image_metrics(prob, sample.label)
        if metadata.task == "vessels":
            assert scores["auc"] > 0.97, files.name
        else:  # the optic disc: a region, judged by its overlap
            assert scores["jaccard"] > 0.8, files.name


def test_the_default_vessel_model_is_listed_first_and_used_without_model(tmp_path, datasets):
    from patch2image.cli import main
    from patch2image.weights import DEFAULT_MODELS, default_model

    assert default_model() in DEFAULT_MODELS and default_model() in SHIPPED
    if DEFAULT_MODELS[0] in SHIPPED:
        assert SHIPPED[0] == DEFAULT_MODELS[0]
    photo = datasets / "DRIVE" / "test" / "images" / "01_test.tif"
    assert main(["segment", str(photo), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert main(["segment", str(photo), "--out", str(tmp_path / "b"), "--model", default_model(), "--quiet"]) == 0
    assert (tmp_path / "a" / "01_test_prob.png").read_bytes() == (tmp_path / "b" / "01_test_prob.png").read_bytes()


def test_optic_disc_names_an_idrid_model():
    _, by_alias = load_model("optic-disc")
    assert by_alias.task == "optic_disc" and by_alias.dataset == "idrid"


def test_the_listing_says_which_images_and_protocol_each_score_is_on(capsys):
    from patch2image import cli

    assert cli.main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["model", "network", "task", "protocol", "tested"]
    assert "AUC FOV" in lines[0] and "Dice FOV" in lines[0]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "STARE fold 1 (4 images)" in rows["stare-mini-unet"]
    assert "0.8313" in rows["chase-db1-mini-unet"] and "0.8327" in rows["chase-db1-mini-unet"]  # whole, then FOV
    assert "none held out" in rows["vessels"]  # trained on every labelled photograph of four cameras
    assert any(line.startswith("none held out: ") and "cross-dataset.md" in line for line in lines)
    assert any("whole image" in line for line in lines) and any("docs/protocol.md" in line for line in lines)
