"""``evaluate --model`` on the dataset the weights were trained on scores them at the training size.

Training resizes every image to the paper's size (STARE 508x600 from 605x700, CHASE_DB1 460x500 from
960x999), which changes the aspect ratio by more than the 2% of the scale rule in ``working_size``:
without the explicit ``size="training"`` override the photographs would be segmented at their
original size, and ``evaluate --model`` would disagree with the run's own metrics.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from patch2image.cli import main
from patch2image.config import config_from_dict
from patch2image.errors import UserError
from patch2image.evaluation import PROTOCOLS, read_evaluation
from patch2image.experiment import run_experiment
from patch2image.inference import TRAINING_SIZE, Segmenter, working_size
from patch2image.preprocessing import Preprocessing, resize


def photo(height: int, width: int) -> np.ndarray:
    """A fundus-like photograph: a bright disc on a dark surround, so the field of view rule applies."""
    y, x = np.mgrid[:height, :width]
    inside = (y - height / 2) ** 2 + (x - width / 2) ** 2 <= (0.45 * min(height, width)) ** 2
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[inside] = (180, 90, 40)
    return rgb


# --------------------------------------------------------------------------- the option, no data


def test_training_size_is_used_exactly_whatever_the_aspect_ratio():
    # CHASE_DB1: 960x999 photographs, trained at 460x500 (4.3% off in aspect ratio).
    metadata = {"input_size": [460, 500], "fov_diameter": 300.0}
    rgb = photo(96, 100)
    assert working_size(rgb, {"input_size": [460, 500]})[0] == (96, 100)  # the rule: original size
    assert working_size(rgb, metadata)[0] != (460, 500)  # the rule: field of view
    size, rule = working_size(rgb, metadata, size=TRAINING_SIZE)
    assert size == (460, 500)
    assert "training size 460x500" in rule
    assert working_size(rgb, metadata, size="training")[0] == (460, 500)
    # An explicit (height, width), rounded to multiples of 4 like every working size.
    assert working_size(rgb, metadata, size=(61, 90))[0] == (60, 88)


def test_training_size_needs_input_size_and_a_known_name():
    with pytest.raises(UserError, match="input_size"):
        working_size(photo(40, 40), {"fov_diameter": 30.0}, size=TRAINING_SIZE)
    with pytest.raises(ValueError, match="size must be"):
        working_size(photo(40, 40), {"input_size": [40, 40]}, size="original")
    with pytest.raises(ValueError, match="size must be"):
        Segmenter(None, {}, size="paper")


def test_segmenter_at_training_size_is_trainings_scoring():
    """prepare/predict/finish with size="training" = resize to input_size, pre-process, segment, resize back."""
    metadata = {"input_size": [44, 52], "fov_diameter": 20.0, "preprocessing": {}}
    rgb = photo(53, 60)  # 4.3% off in aspect ratio, like CHASE_DB1

    class Mean:  # a probability runner whose output depends on every pixel's value
        def probabilities(self, x):
            return x * 0.5 + 0.25

    segmenter = Segmenter(Mean(), metadata, size=TRAINING_SIZE, inside_fov=False)  # scored as training scores
    grey = segmenter.prepare(rgb)
    expected_grey = Preprocessing()(resize(rgb, (44, 52)))
    assert grey.shape == (44, 52)
    np.testing.assert_array_equal(grey, expected_grey)
    prob = segmenter(rgb)
    np.testing.assert_allclose(prob, resize(expected_grey * 0.5 + 0.25, (53, 60)), atol=1e-6)


# --------------------------------------------------------------------------- real data: STARE fold 1


@pytest.fixture(scope="module")
def stare_run(tmp_path_factory, datasets) -> Path:
    """A tiny real training run on STARE fold 1 (patch + fine-tuning, one epoch each, about a minute)."""
    out = tmp_path_factory.mktemp("stare-run")
    train_tiny_stare(out, datasets / "STARE")
    return out


def train_tiny_stare(out: Path, stare: Path) -> None:
    config = config_from_dict(
        {
            "name": "stare-evaluate-size",
            "network": "light",
            "seed": 0,
            "protocol": "smoke",
            "dataset": {"kind": "stare", "path": str(stare), "fold": 1},
            # Few patches: one epoch of patch training only has to give the network some vessel sense.
            "patches": {"size": 32, "sampling": "grid", "stride": 64},
            "phases": {"patch": {"epochs": 1, "batch_size": 32}, "finetune": {"epochs": 1, "batch_size": 1}},
            # The validation threshold: a one-epoch network's probabilities stay under 0.5, where every
            # thresholded metric would be 0 (or 1) whatever the size of the segmentation.
            "evaluation": {"patch_stride": 16, "threshold": "validation"},
        }
    )
    run_experiment(config, out, quiet=True, device="cpu")


def test_evaluate_model_on_its_training_dataset_matches_the_run(stare_run, datasets, tmp_path):
    weights = stare_run / "finetuned.safetensors"
    out = tmp_path / "evaluate.json"
    want = read_evaluation(stare_run / "metrics" / "finetuned.json")
    threshold = str(want["whole"]["threshold"])  # chosen on the validation images by training
    arguments = ["--dataset", str(datasets / "STARE"), "--fold", "1", "--threshold", threshold, "--json", str(out)]
    assert main(["evaluate", "--model", str(weights), *arguments]) == 0
    got = read_evaluation(out)
    assert [i["name"] for i in got["whole"]["images"]] == [i["name"] for i in want["whole"]["images"]]
    for protocol in PROTOCOLS:
        for metric, value in want[protocol]["mean"].items():
            if not isinstance(value, float):
                continue
            mine = got[protocol]["mean"][metric]
            assert (math.isnan(value) and math.isnan(mine)) or abs(mine - value) <= 1e-4, (
                f"{protocol} {metric}: evaluate {mine:.6f}, training {value:.6f}; "
                f"all: {json.dumps(got[protocol]['mean'])} vs {json.dumps(want[protocol]['mean'])}"
            )
