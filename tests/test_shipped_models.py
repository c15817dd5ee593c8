"""Every model shipped with the package segments real DRIVE test images well."""

import numpy as np
import pytest

from patch2image.data import load_sample, open_dataset
from patch2image.inference import Segmenter
from patch2image.metrics import image_metrics
from patch2image.weights import load_model, shipped_models

SHIPPED = [name for name, _ in shipped_models()]


def test_the_three_drive_models_ship():
    assert {"drive-light", "drive-mini-unet", "drive-dense"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_scores_auc_above_097_on_two_drive_test_images(name, datasets):
    model, metadata = load_model(name)
    assert {"network", "dataset", "protocol", "preprocessing", "input_size", "metrics"} <= set(metadata)
    metadata = {k: v for k, v in metadata.items() if k != "fov_diameter"}  # DRIVE itself: the training scale
    segmenter = Segmenter(model, metadata)
    for files in open_dataset(datasets / "DRIVE").files("test")[:2]:
        sample = load_sample(files)
        prob = segmenter(sample.image)
        assert prob.shape == sample.label.shape and np.isfinite(prob).all()
        assert image_metrics(prob, sample.label)["auc"] > 0.97, files.name
