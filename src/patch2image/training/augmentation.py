"""On-the-fly augmentation: random horizontal and vertical flips and translations.

Translations shift by up to ``translate`` of the width and height and fill the uncovered border
by replicating the edge, as Keras' ImageDataGenerator does by default ('nearest'). The reference
code augments whole images and then cuts the patches (``level: image``); augmenting each patch on
its own (``level: patch``) is the scheme of the project's first DRIVE runs, kept to reproduce them.
"""

import torch
import torch.nn.functional as F

from patch2image.config import AugmentationConfig


def augment(
    x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, config: AugmentationConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch (N, C, H, W) of inputs and the matching targets identically."""
    n, _, height, width = x.shape
    both = torch.cat([x, y], dim=1)
    for enabled, dim in ((config.flip, -1), (config.vertical_flip, -2)):
        if enabled:
            flipped = torch.rand(n, generator=generator) < 0.5
            both = torch.where(flipped[:, None, None, None], both.flip(dim), both)
    max_dy, max_dx = int(config.translate * height), int(config.translate * width)
    if max_dy or max_dx:
        padded = F.pad(both, (max_dx, max_dx, max_dy, max_dy), mode="replicate")
        dys = torch.randint(0, 2 * max_dy + 1, (n,), generator=generator).tolist()
        dxs = torch.randint(0, 2 * max_dx + 1, (n,), generator=generator).tolist()
        both = torch.stack(
            [padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(zip(dys, dxs, strict=True))]
        )
    return both[:, : x.shape[1]].contiguous(memory_format=torch.channels_last), both[:, x.shape[1] :]
