"""Dense: a DenseNet-style FCN, 1,032,588 parameters.

The width F that sizes each dense layer is tracked apart from the number of channels the
concatenations accumulate, as in the reference code; this is what gives the exact count.

Like the reference, it sets no initialiser and no BatchNorm momentum, so Keras's defaults hold:
glorot-uniform kernels, zero biases, and running statistics that move by 1% a batch (Keras'
momentum 0.99 is PyTorch's 0.01; PyTorch's own default, 0.1, follows each batch ten times faster).
The BatchNorm epsilon, 1.1e-5, is the one DenseNet code sets explicitly.
"""

import torch
from torch import nn

from patch2image.networks.initialisation import keras_initialise

_EPS = 1.1e-5
_MOMENTUM = 0.01  # Keras' default momentum 0.99, in PyTorch's convention


def _bn_relu(c: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(c, eps=_EPS, momentum=_MOMENTUM), nn.ReLU(inplace=True)]


class DenseLayer(nn.Module):
    def __init__(self, channels: int, width: int):
        super().__init__()
        self.branch = nn.Sequential(
            *_bn_relu(channels),
            nn.Conv2d(channels, 4 * width, 1, bias=False),
            *_bn_relu(4 * width),
            nn.Conv2d(4 * width, width, 3, padding=1, bias=False),
        )

    def forward(self, x):
        return torch.cat([x, self.branch(x)], dim=1)


class Dense(nn.Module):
    """Dense blocks of 6 and 12 layers down, 6 and 12 up, with (up-)transitions. Returns logits."""

    def __init__(self, in_channels: int = 1, width: int = 8, growth: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 7, padding=3, bias=False), *_bn_relu(width)]
        channels = width
        for n_layers, resample in [(6, "down"), (12, "down"), (6, "up"), (12, "up")]:
            for _ in range(n_layers):
                layers.append(DenseLayer(channels, width))
                channels += width
                width += growth
            width //= 2
            layers += [*_bn_relu(channels), nn.Conv2d(channels, width, 1, bias=False)]
            layers.append(nn.AvgPool2d(2) if resample == "down" else nn.Upsample(scale_factor=2, mode="nearest"))
            channels = width
        layers += [*_bn_relu(channels), nn.Conv2d(channels, 1, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        keras_initialise(self)

    def forward(self, x):
        return self.body(x)
