"""Field-of-view masks for datasets that ship none (STARE, CHASE_DB1, IDRiD, your own folders).

Method (``FOV_METHOD``): fundus cameras image the retina as a bright disc on a dark surround, and
the red channel separates the two best (the retina is red even where it is dim). On a copy at most
1024 pixels on its longer side:

1. red channel, Gaussian blur (sigma 1) against JPEG and sensor noise;
2. background level ``b``: the darkest median of the four corner patches (5% of each side), which
   lie outside a circular field of view; threshold ``b + 0.15 * (p99 - b)`` where ``p99`` is the
   99th percentile of the image (a fraction of the range, not of the maximum, because STARE's
   surround is not black);
3. a 5x5 opening cuts thin bright spurs off the disc, the largest connected component is kept,
   and its holes (dark lesions, vessels at the rim) are filled: the *core*;
4. dim rim: where the periphery is very dark (a crescent on some CHASE_DB1 images, down to about
   10% of the range) the threshold stops up to 30 pixels short of the rim. A circle is fitted
   (RANSAC, then least squares on its inliers) to the core's outline off the image border; step 4
   is skipped when under 30% of that outline lies within 0.4% of the longer side of the circle.
   Along rays from its centre (one every 2 pixels of rim, from 0.7 of its radius outwards) the
   core grows out to the rim's step where that step is the rim: past the core the profile falls
   to ``b + 0.04 * (p99 - b)`` within 15% of the radius; the step, at its steepest point, drops at
   least 4% of the range over 7 pixels, is steeper than the profile where the core ends, and lies
   within 5% of the radius of the circle. The growth is median-filtered over +-0.15 rad of rays;
5. the mask is resized back to the image (nearest neighbour).

Measured on the reference copies, every image, with the mask computed (DRIVE's official masks
set aside); steps 1-3 alone gave the same figures, except on CHASE_DB1 (in brackets):

=========  ======  =================================  =================  =================================
dataset    images  labelled pixels inside the mask,   99.9% of them lie  IoU with the reference masks,
                   worst image                        within, of mask    mean (min)
=========  ======  =================================  =================  =================================
DRIVE      40      99.89% (08)                        1 px               official: 0.996 (0.988)
STARE      20      99.99% (im0004)                    0 px               V-GAN (third party): 0.996 (0.991)
CHASE_DB1  28      99.36% (Image_06L) [97.05%]        5.4 px [25.3 px]   -
IDRiD      81      99.84% (IDRiD_10, optic disc)      1 px               -
=========  ======  =================================  =================  =================================

Step 4 changes 7 of the 28 CHASE_DB1 masks and 1 STARE mask (im0004, by 283 pixels); the DRIVE and
IDRiD masks are those of steps 1-3. The labelled pixels left out are annotation past the retina: the first
observer's vessels on CHASE_DB1 images 01-09 end up to 12 pixels out, in the black surround or on
the outer foot of the rim's step; DRIVE's and IDRiD's labels by 1-5 pixels (DRIVE's own masks hold
99.72% of its labels on its worst image). No margin is added for them: holding 99.9% on every image
would take one of 1.2% of the radius, which brings the IoU with DRIVE's official masks to a mean of
0.977 (min 0.966); 0.4% already costs 0.992 (0.982) and still leaves 13 CHASE_DB1 images short.
Time per image (on 2 shared cores): DRIVE 8 ms, STARE 10, CHASE_DB1 24, IDRiD 47; before step 4,
9, 10, 26 and 48 (its cost is paid by a faster hole filling).
"""

import cv2
import numpy as np

FOV_METHOD = "red-channel threshold, dim rim traced"
"""Short name of the method, recorded as ``Sample.fov_source = "computed: " + FOV_METHOD``."""

_WORK_SIDE = 1024
_FRACTION = 0.15
_CORNER = 0.05

_CIRCLE_BAND = 0.004  # RANSAC inlier band, as a share of the longer side
_CIRCLE_SHARE = 0.3  # least share of the core's outline on the circle for step 4 to run
_REACH = 0.15  # how far past the core a rim is looked for, as a share of the radius
_DARK = 0.04  # the surround, as a share of the range above the background
_STEP = 0.04  # least drop of the rim's step over 2 * _HALF + 1 pixels, as a share of the range
_HALF = 3
_ON_CIRCLE = 0.05  # how far past the circle a rim may lie, as a share of the radius
_SMOOTH = 0.15  # half-width of the median filter along the rim, radians


def field_of_view_mask(rgb: np.ndarray) -> np.ndarray:
    """Compute the field-of-view mask of a fundus image (method in the module docstring).

    Parameters
    ----------
    rgb : ndarray of shape (H, W, 3), dtype uint8
        The image, RGB channel order.

    Returns
    -------
    mask : ndarray of shape (H, W), dtype bool
        True inside the field of view. An image without a dark surround gives an all-True mask.
    """
    height, width = rgb.shape[:2]
    red = rgb[..., 0] if rgb.ndim == 3 else rgb
    scale = min(1.0, _WORK_SIDE / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        red = cv2.resize(red, size, interpolation=cv2.INTER_AREA)
    red = cv2.GaussianBlur(red.astype(np.float32), (0, 0), 1.0)

    background = _background_level(red)
    top = float(np.percentile(red, 99))
    mask = red > background + _FRACTION * (top - background)
    if top - background < 1.0 or not mask.any():
        return np.ones((height, width), bool)  # no contrast: no surround to cut away

    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disc).astype(bool)
    mask = opened if opened.any() else mask
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    if count > 2:  # the background and more than one region: keep the largest region
        mask = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    mask = _fill_holes(mask)
    if _add_dim_rim(red, mask, background, top - background):
        mask = _fill_holes(mask)

    if mask.shape != (height, width):
        mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    return mask


def _background_level(red: np.ndarray) -> float:
    height, width = red.shape
    ch, cw = max(1, int(height * _CORNER)), max(1, int(width * _CORNER))
    corners = (red[:ch, :cw], red[:ch, -cw:], red[-ch:, :cw], red[-ch:, -cw:])
    return float(min(np.median(corner) for corner in corners))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    # as scipy's binary_fill_holes (4-connected background), at a tenth of its time
    height, width = mask.shape
    padded = np.zeros((height + 2, width + 2), np.uint8)
    padded[1:-1, 1:-1] = mask
    cv2.floodFill(padded, np.zeros((height + 4, width + 4), np.uint8), (0, 0), 1, flags=4)
    return mask | (padded[1:-1, 1:-1] == 0)


def _add_dim_rim(red: np.ndarray, core: np.ndarray, background: float, contrast: float) -> bool:
    """Extend ``core`` in place out to a dim rim (step 4 of the module docstring); whether it grew."""
    height, width = core.shape
    circle = _rim_circle(core)
    if circle is None:
        return False
    cx, cy, radius = circle
    reach = int(np.ceil(_REACH * radius))
    first_radius = int(0.7 * radius)  # inside STARE's clipped chords and IDRiD's clipped top and bottom
    radii = np.arange(first_radius, int(np.ceil(radius)) + 2 * reach + _HALF + 2)
    n_radii = len(radii)
    n_angles = int(np.ceil(np.pi * radius))  # a ray every 2 pixels of rim: finer than the median filter, half the time
    theta = 2 * np.pi * np.arange(n_angles) / n_angles
    map_x = (cx + np.cos(theta)[:, None] * radii).astype(np.float32)
    map_y = (cy + np.sin(theta)[:, None] * radii).astype(np.float32)
    # past the image border the profile stays flat: the border is no step
    profile = cv2.remap(red, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.remap(core.view(np.uint8), map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT) > 0

    last = n_radii - 1 - np.argmax(inside[:, ::-1], axis=1)  # the core's outermost radius on each ray
    on_core = inside[:, 0] & (last < n_radii - 1)
    rays = np.arange(n_angles)[:, None]

    def fall(index):  # how much the profile falls across each index, per ray
        return profile[rays, np.clip(index - 1, 0, n_radii - 1)] - profile[rays, np.clip(index + 1, 0, n_radii - 1)]

    core_fall = fall(last[:, None] + np.arange(-_HALF, _HALF + 1)).max(axis=1)
    dark = profile <= background + _DARK * contrast
    dark[np.arange(n_radii) <= last[:, None]] = False
    reaches_dark = dark.any(axis=1)
    foot = np.argmax(dark, axis=1)  # first dark radius past the core
    candidates = np.clip(foot[:, None] - np.arange(2 * _HALF + 1), 0, n_radii - 1)
    falls = fall(candidates)
    steepest = np.argmax(falls, axis=1)
    ray = rays[:, 0]
    edge, edge_fall = candidates[ray, steepest], falls[ray, steepest]
    drop = profile[ray, np.clip(edge - _HALF, 0, None)] - profile[ray, np.clip(edge + _HALF, None, n_radii - 1)]
    rim = (
        on_core
        & reaches_dark
        & (edge > last)
        & (foot - last <= reach)
        & (drop >= _STEP * contrast)
        & (edge_fall > core_fall)  # where the core ends on a step of its own, that step is the rim
        & (radii[edge] <= radius * (1 + _ON_CIRCLE) + 1)  # not a glow or a camera's frame outside the disc
    )
    if not rim.any():
        return False
    # a vessel crossing the rim does not notch it; a camera's tab or a frame corner a few degrees wide is left out
    window = 2 * int(round(_SMOOTH * n_angles / (2 * np.pi))) + 1
    grow = _circular_median(np.where(rim, edge - last, 0), window)
    if not grow.any():
        return False

    # back to the image: each growing ray's stretch (last, last + grow], within the box they span
    index = np.arange(n_radii)
    stretch = (index > last[:, None]) & (index <= (last + grow)[:, None])
    growing = grow > 0
    ends = np.concatenate([radii[last[growing]], radii[last[growing]] + grow[growing]])
    xs = cx + np.tile(np.cos(theta[growing]), 2) * ends
    ys = cy + np.tile(np.sin(theta[growing]), 2) * ends
    x0, x1 = max(0, int(xs.min()) - 2), min(width, int(np.ceil(xs.max())) + 3)
    y0, y1 = max(0, int(ys.min()) - 2), min(height, int(np.ceil(ys.max())) + 3)
    if x1 <= x0 or y1 <= y0:
        return False
    # warpPolar's inverse is garbage past its largest radius: cover the box's far corner
    far = int(np.ceil(np.hypot(max(cx - x0, x1 - cx), max(cy - y0, y1 - cy)))) + 2
    stretch = np.pad(stretch, ((0, 0), (first_radius, max(0, far - first_radius - n_radii)))).astype(np.float32)
    flags = cv2.WARP_POLAR_LINEAR | cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR
    box = cv2.warpPolar(stretch, (x1 - x0, y1 - y0), (cx - x0, cy - y0), float(stretch.shape[1]), flags)
    core[y0:y1, x0:x1] |= box >= 0.5
    return True


def _circular_median(values: np.ndarray, window: int) -> np.ndarray:
    """The running median of a ring of values over an odd ``window`` (scipy's median filter, mode wrap).

    Here rather than scipy's because importing scipy.ndimage costs a fifth of a second of every start.
    """
    half = window // 2
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(values, half, mode="wrap"), window)
    return np.partition(windows, half, axis=1)[:, half]


def _rim_circle(core: np.ndarray) -> tuple[float, float, float] | None:
    """The circle through most of the core's outline off the image border (centre x, y, radius), or None."""
    height, width = core.shape
    contours, _ = cv2.findContours(core.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    points = max(contours, key=len)[:, 0, :].astype(np.float64)
    off_border = (points[:, 0] > 0) & (points[:, 0] < width - 1) & (points[:, 1] > 0) & (points[:, 1] < height - 1)
    points = points[off_border]
    if len(points) < 30:
        return None
    points = points[:: max(1, len(points) // 360)]
    band = max(1.5, _CIRCLE_BAND * max(height, width))

    triples = points[np.random.default_rng(0).integers(0, len(points), (200, 3))]
    cx, cy, r = _circles_through(triples)
    with np.errstate(invalid="ignore"):
        squared = (points[:, 0] - cx[:, None]) ** 2 + (points[:, 1] - cy[:, None]) ** 2
        near = (squared > ((r - band) ** 2)[:, None]) & (squared < ((r + band) ** 2)[:, None]) & (r > band)[:, None]
    inliers = near[int(np.argmax(near.sum(axis=1)))]
    for _ in range(3):
        if inliers.sum() < 3:
            return None
        cx, cy, r = _least_squares_circle(points[inliers])
        inliers = np.abs(np.hypot(points[:, 0] - cx, points[:, 1] - cy) - r) < band
    inside_image = 0 <= cx < width and 0 <= cy < height
    if inliers.mean() < _CIRCLE_SHARE or not inside_image or not 0 < r <= np.hypot(height, width):
        return None
    return cx, cy, r


def _circles_through(triples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres and radii of the circles through point triples, shape (n, 3, 2); not finite where collinear."""
    (x1, y1), (x2, y2), (x3, y3) = (triples[:, i, :].T for i in range(3))
    s1, s2, s3 = x1**2 + y1**2, x2**2 + y2**2, x3**2 + y3**2
    d = 2 * (x1 * (y2 - y3) + x2 * (y3 - y1) + x3 * (y1 - y2))
    with np.errstate(divide="ignore", invalid="ignore"):
        cx = (s1 * (y2 - y3) + s2 * (y3 - y1) + s3 * (y1 - y2)) / d
        cy = (s1 * (x3 - x2) + s2 * (x1 - x3) + s3 * (x2 - x1)) / d
        return cx, cy, np.hypot(x1 - cx, y1 - cy)


def _least_squares_circle(points: np.ndarray) -> tuple[float, float, float]:
    x, y = points[:, 0], points[:, 1]
    solution, *_ = np.linalg.lstsq(np.column_stack([x, y, np.ones_like(x)]), x * x + y * y, rcond=None)
    cx, cy = solution[0] / 2, solution[1] / 2
    return float(cx), float(cy), float(np.sqrt(max(solution[2] + cx * cx + cy * cy, 0.0)))


def fov_diameter(mask: np.ndarray) -> float:
    """Width of the field of view: the width in pixels of the mask's bounding box (0 for an empty mask).

    The width, not the height, because cameras often clip the disc at the top and bottom.
    """
    columns = np.flatnonzero(np.asarray(mask).any(axis=0))
    if columns.size == 0:
        return 0.0
    return float(columns[-1] - columns[0] + 1)
