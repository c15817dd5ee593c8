"""On-the-fly augmentation: random horizontal and vertical flips and translations (the paper's), and
for robustness across cameras, random rescaling, rotations and contrast changes (off by default).

Translations shift by up to ``translate`` of the width and height and fill the uncovered border
by replicating the edge, as Keras' ImageDataGenerator does by default ('nearest'). The reference
code augments whole images and then cuts the patches (``level: image``); augmenting each patch on
its own (``level: patch``) is the scheme of the project's first DRIVE runs, kept to reproduce them.
Rescaling zooms about the centre by a factor drawn log-uniformly from ``scale`` (vessels wider or
thinner, as another camera's resolution or another eye size makes them); rotation turns about the
centre by an angle uniform in [-rotate, rotate] degrees (vessels in other directions, as another
eye's layout or another camera's orientation shows them); the contrast change raises
the pre-processed input to a power 2**u, u uniform in [-contrast, contrast]. Each draws random
numbers only when enabled, so the paper's configurations keep their random streams.
"""

import math

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
    if config.scale or config.rotate:
        both = _zoom_and_turn(both, x.shape[1], config.scale, config.rotate, generator)
    x, y = both[:, : x.shape[1]], both[:, x.shape[1] :]
    if config.contrast:
        powers = 2 ** ((torch.rand(n, generator=generator) * 2 - 1) * config.contrast)
        x = x.clamp(min=0) ** powers[:, None, None, None]
    return x, y


def _zoom_and_turn(
    both: torch.Tensor, channels: int, scale: list[float] | None, rotate: float, generator: torch.Generator
) -> torch.Tensor:
    """Zoom and turn each sample about its centre by its own factor and angle; borders replicate; targets stay 0/1."""
    n = len(both)
    factors = torch.ones(n)
    if scale:
        low, high = math.log(scale[0]), math.log(scale[1])
        factors = torch.exp(low + torch.rand(n, generator=generator) * (high - low))
    angles = torch.zeros(n)
    if rotate:
        angles = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(rotate)
    height, width = both.shape[-2:]
    # the sampling grid shrinks as the content grows
    cos, sin = torch.cos(angles) / factors, torch.sin(angles) / factors
    theta = torch.zeros(n, 2, 3)
    # affine_grid works in coordinates normalised to [-1, 1] on each axis: a turn of a non-square
    # image needs the aspect ratio, or it would shear
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * height / width
    theta[:, 1, 0], theta[:, 1, 1] = sin * width / height, cos
    grid = F.affine_grid(theta, list(both.shape), align_corners=False)
    zoomed = F.grid_sample(both.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    targets = (zoomed[:, channels:] >= 0.5).to(both.dtype)
    return torch.cat([zoomed[:, :channels].to(both.dtype), targets], dim=1)
