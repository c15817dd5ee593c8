"""Phase 1: cut the patch database from pre-processed training images.

The validation images are held out before this step (the caller passes train and validation
images separately), so no validation patch overlaps a training image.
"""

import numpy as np
import torch

from patch2image.config import PatchConfig


def patch_database(
    images: np.ndarray, labels: np.ndarray, config: PatchConfig, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patches (N, C, s, s) float32 and their labels (N, 1, s, s) float32 from images and labels.

    ``images``: (n, H, W) grey, or (n, C, H, W) with C channels; ``labels``: (n, H, W).
    sampling="grid": every ``stride`` pixels over the reflect-padded image (vessels).
    sampling="balanced": ``per_class`` patches centred on random foreground pixels and as many on
    background pixels, per image (optic disc). sampling="random": ``count`` random centres per image.
    """
    size = config.size
    half = size // 2
    images = np.asarray(images, dtype=np.float32)
    images = images.reshape(len(images), -1, *images.shape[-2:])
    labels = np.asarray(labels, dtype=np.float32)
    channels = images.shape[1]
    if config.sampling == "grid":
        # Pad so that the grid covers every pixel: the last window ends at or beyond the border.
        height, width = images.shape[-2:]
        pads = ((0, _grid_padding(height, size, config.stride)), (0, _grid_padding(width, size, config.stride)))
        xs, ys = (
            _reflect(a, pads).unfold(2, size, config.stride).unfold(3, size, config.stride)
            for a in (images, labels[:, None])
        )
        # (n, C, rows, cols, s, s): patches in the order image, row, column, each with its C channels.
        return (
            xs.permute(0, 2, 3, 1, 4, 5).reshape(-1, channels, size, size).contiguous(),
            ys.reshape(-1, 1, size, size).contiguous(),
        )

    rng = np.random.default_rng(seed)
    pads = ((half, half), (half, half))
    xp, yp = _reflect(images, pads), _reflect(labels[:, None], pads)
    patches, targets = [], []
    for i in range(len(images)):
        for rows, cols in _centres(labels[i] > 0.5, config, rng):
            for r, c in zip(rows, cols, strict=True):
                patches.append(xp[i, :, r : r + size, c : c + size])
                targets.append(yp[i, :, r : r + size, c : c + size])
    return torch.stack(patches), torch.stack(targets)


def _reflect(array: np.ndarray, pads) -> torch.Tensor:
    """(n, C, H, W) padded on its last two axes by ``pads``."""
    # numpy reflects again and again where the padding exceeds the image (an image under half a patch).
    return torch.from_numpy(np.pad(array, ((0, 0), (0, 0), *pads), mode="reflect"))


def _grid_padding(side: int, size: int, stride: int) -> int:
    if side <= size:
        return size - side
    return (-(side - size)) % stride


def _centres(label: np.ndarray, config: PatchConfig, rng: np.random.Generator):
    if config.sampling == "random":
        yield rng.integers(0, label.shape[0], config.count), rng.integers(0, label.shape[1], config.count)
        return
    for cls in (True, False):
        rows, cols = np.nonzero(label == cls)
        if len(rows):
            pick = rng.integers(0, len(rows), config.per_class)
            yield rows[pick], cols[pick]
