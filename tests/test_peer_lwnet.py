"""benchmarks/peer_lwnet.py: lwnet's W-Net (a published peer, ../shared/peers/lwnet) is rebuilt and run right.

The network is defined in the benchmark, not in the package; these tests import it from there.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from patch2image.networks import count_parameters

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def peer_lwnet():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))  # the benchmark imports its neighbours (machine, segmentation_time)
        import peer_lwnet

        yield peer_lwnet
        for name in ("peer_lwnet", "machine", "segmentation_time"):
            sys.modules.pop(name, None)


def test_wnet_shapes_and_fov_box(peer_lwnet):
    torch.manual_seed(0)
    model = peer_lwnet.WNet().eval()
    assert count_parameters(model) == peer_lwnet.PARAMETERS
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 64, 48)).shape == (1, 1, 64, 48)
    fov = np.zeros((10, 12), bool)
    fov[2:7, 3:11] = True
    assert peer_lwnet.fov_box(fov) == (2, 3, 7, 11)


def test_peer_scores_a_drive_test_image(datasets, peer_lwnet):
    weights = peer_lwnet.PEER_DIR / peer_lwnet.WEIGHTS_FILE
    if not weights.is_file():
        pytest.skip(f"the lwnet peer is absent ({weights})")
    from patch2image.data import load_sample, open_dataset
    from patch2image.metrics import image_metrics

    model = peer_lwnet.load_wnet(weights)  # strict: every key of the file, none missing
    assert count_parameters(model) == 68_482
    sample = load_sample(open_dataset(datasets / "DRIVE", "drive").files("test")[0])
    prob = peer_lwnet.predict_peer(model, sample.image, sample.fov)
    assert prob.shape == sample.fov.shape and prob.dtype == np.float32
    assert prob.min() >= 0 and prob.max() <= 1 and not prob[~sample.fov].any()
    assert image_metrics(prob, sample.label, sample.fov)["auc"] > 0.97
