"""The paper's three networks and the registry."""

import json
import sys

import pytest
import torch

from patch2image.cli import main
from patch2image.errors import UserError
from patch2image.networks import NETWORKS, count_parameters, create_network

EXPECTED = {"light": 8889, "mini-unet": 316657, "dense": 1032588}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_parameter_counts_match_the_paper_exactly(name):
    assert count_parameters(create_network(name)) == EXPECTED[name]


@pytest.mark.parametrize("name", list(EXPECTED))
@pytest.mark.parametrize("size", [(32, 32), (36, 44), (64, 100)])
def test_output_has_the_input_size(name, size):
    with torch.inference_mode():
        out = create_network(name).eval()(torch.rand(2, 1, *size))
    assert out.shape == (2, 1, *size)


def test_nets_json(capsys):
    assert main(["nets", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"name": "light", "parameters": 8889},
        {"name": "mini-unet", "parameters": 316657},
        {"name": "dense", "parameters": 1032588},
    ]


def test_a_users_network_plugs_in_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(
        "from torch import nn\n"
        "class Tiny(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(1, 1, 3, padding=1)\n"
        "    def forward(self, x):\n"
        "        return self.conv(x)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    network = create_network("my_nets:Tiny")
    assert count_parameters(network) == 10
    sys.modules.pop("my_nets", None)


@pytest.mark.parametrize("name", ["resnet", "no_such_module:Net", "torch:no_such_class", "json:JSONDecoder"])
def test_unknown_networks_are_refused_with_their_name(name):
    with pytest.raises(UserError, match=name.split(":")[0]):
        create_network(name)


def test_the_registry_holds_the_three_networks():
    assert list(NETWORKS) == ["light", "mini-unet", "dense"]
