"""Mini-Unet: a two-level U-Net, 316,657 parameters."""

import torch
from torch import nn

from patch2image.networks.initialisation import keras_initialise


def _convs(cin: int, *couts: int) -> nn.Sequential:
    layers = []
    for cout in couts:
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
        cin = cout
    return nn.Sequential(*layers)


def _down(c: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c, c, 3, stride=2, padding=1), nn.ReLU(inplace=True))


def _up(c: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(c, c, 3, stride=2, padding=1, output_padding=1), nn.ReLU(inplace=True))


class MiniUnet(nn.Module):
    """Encoder 16-16-32 | 32-32-32-64 | 64x4, decoder with two skip concatenations. Returns logits."""

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self.level1 = _convs(in_channels, 16, 16, 32)
        self.level2 = nn.Sequential(_down(32), _convs(32, 32, 32, 64))
        self.bottom = nn.Sequential(_down(64), _convs(64, 64, 64, 64), _up(64))
        self.decode2 = nn.Sequential(_convs(128, 32, 32, 32), _up(32))
        self.decode1 = _convs(64, 16, 16, 16)
        self.head = nn.Conv2d(16, 1, 3, padding=1)
        keras_initialise(self)

    def forward(self, x):
        s1 = self.level1(x)
        s2 = self.level2(s1)
        y = self.decode2(torch.cat([self.bottom(s2), s2], dim=1))
        return self.head(self.decode1(torch.cat([y, s1], dim=1)))
