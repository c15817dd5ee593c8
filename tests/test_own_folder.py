"""Training on one's own folder of photographs: few training images are warned about, not refused."""

import warnings

import pytest
import yaml

from patch2image.config import load_config
from patch2image.data.synthetic import write_synthetic_dataset
from patch2image.training.images import prepare_data


def _folder_config(tmp_path, n_train: int):
    folder = write_synthetic_dataset(tmp_path / "photos", n_train=n_train, n_test=2, size=64)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"name": "mine", "dataset": {"kind": "folder", "path": str(folder)}}))
    return load_config(path)


def test_fewer_than_five_training_images_train_with_a_warning(tmp_path):
    config = _folder_config(tmp_path, n_train=5)  # one of the five goes to validation
    with pytest.warns(UserWarning, match="mine: only 4 training images"):
        train, val, _, _ = prepare_data(config, tmp_path / "out")
    assert len(train.names) == 4 and len(val.names) == 1


def test_enough_training_images_train_without_a_warning(tmp_path):
    config = _folder_config(tmp_path, n_train=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, _, _, _ = prepare_data(config, tmp_path / "out")
    assert len(train.names) >= 5
