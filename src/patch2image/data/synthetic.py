"""A small synthetic fundus-like dataset: branching vessel trees on a bright disc.

It is the embedded default (no download) and the data of the smoke configuration. The same seed
always gives the same files. Vessels are drawn as darker, tapering polylines that branch from an
optic disc, over a vignetted orange background with noise, inside a circular field of view.
"""

from pathlib import Path

import cv2
import numpy as np

from patch2image.data.io import write_png


def make_case(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One (rgb uint8, vessel label bool, fov bool) case of side ``size``."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    centre = size / 2
    radius = 0.46 * size
    fov = (yy - centre) ** 2 + (xx - centre) ** 2 <= radius**2

    label = np.zeros((size, size), np.uint8)
    disc = np.array([centre + rng.uniform(-0.2, 0.2) * size, centre + rng.uniform(-0.1, 0.1) * size])
    for _ in range(rng.integers(3, 5)):
        _draw_branch(label, rng, disc, rng.uniform(0, 2 * np.pi), 0.28 * size, max(2.5, size / 40), depth=0)
    label = (label > 0) & fov

    shade = 1 - 0.35 * ((yy - centre) ** 2 + (xx - centre) ** 2) / radius**2
    glow = np.exp(-((yy - disc[1]) ** 2 + (xx - disc[0]) ** 2) / (2 * (0.06 * size) ** 2))
    base = np.stack([0.85 * shade + 0.15 * glow, 0.42 * shade + 0.5 * glow, 0.18 * shade + 0.4 * glow], -1)
    vessels = cv2.GaussianBlur(label.astype(np.float32), (0, 0), 0.7)[..., None]
    rgb = base * (1 - vessels * np.array([0.35, 0.55, 0.5])) + rng.normal(0, 0.025, base.shape)
    rgb = np.clip(rgb, 0, 1) * fov[..., None]
    return (rgb * 255).round().astype(np.uint8), label, fov


def _draw_branch(canvas, rng, start, angle, length, width, depth):
    point = start.copy()
    steps = 6
    for step in range(steps):
        angle += rng.normal(0, 0.25)
        end = point + length / steps * np.array([np.cos(angle), np.sin(angle)])
        thickness = max(1, int(round(width * (1 - 0.5 * step / steps))))
        cv2.line(canvas, tuple(int(v) for v in point), tuple(int(v) for v in end), 1, thickness, cv2.LINE_AA)
        point = end
        if depth < 3 and rng.random() < 0.35:
            side = rng.choice([-1, 1]) * rng.uniform(0.4, 0.9)
            _draw_branch(canvas, rng, point, angle + side, length * 0.6, width * 0.7, depth + 1)


def write_synthetic_dataset(
    root: str | Path, n_train: int = 16, n_test: int = 4, size: int = 128, seed: int = 0
) -> Path:
    """Write ``root/{train,test}/{images,labels,masks}/{train,test}NN.png``, a layout the folder reader understands.

    Nothing is rewritten when the files for this seed are already there.
    """
    root = Path(root)
    stamp = root / f".synthetic-{n_train}-{n_test}-{size}-{seed}"
    if stamp.exists():
        return root
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("test", n_test)):
        for folder in ("images", "labels", "masks"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            rgb, label, fov = make_case(rng, size)
            name = f"{split}{i + 1:02d}.png"
            write_png(root / split / "images" / name, rgb)
            write_png(root / split / "labels" / name, label.astype(np.uint8) * 255)
            write_png(root / split / "masks" / name, fov.astype(np.uint8) * 255)
    stamp.touch()
    return root
