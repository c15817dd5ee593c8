"""Light: the paper's smallest FCN, 8,889 parameters, no skip connections."""

from torch import nn

from patch2image.networks.initialisation import keras_initialise


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU(inplace=True))


def _up(cin: int, cout: int) -> nn.Sequential:
    # output_padding=1 doubles the size exactly, as Keras' 'same' transposed convolution does.
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1), nn.ReLU(inplace=True))


class Light(nn.Module):
    """conv8 x2, conv8/2, conv8, conv8/2, conv8, up8, conv8, up32, conv8, conv1. Returns logits."""

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            _conv(in_channels, 8),
            _conv(8, 8),
            _conv(8, 8, stride=2),
            _conv(8, 8),
            _conv(8, 8, stride=2),
            _conv(8, 8),
            _up(8, 8),
            _conv(8, 8),
            _up(8, 32),
            _conv(32, 8),
            nn.Conv2d(8, 1, 3, padding=1),
        )
        keras_initialise(self)

    def forward(self, x):
        return self.body(x)
