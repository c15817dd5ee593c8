"""The vessel skeleton cut into segments between branch and end points, each an ordered path of pixels.

The skeleton is scikit-image's; a skeleton pixel with one 8-neighbour is an end point, one with three or
more a branch pixel (touching branch pixels make one branch point). Removing the branch pixels leaves
simple paths, the segments; each is ordered by a depth-first walk (SciPy's csgraph) from one of its ends.
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph
from skimage.morphology import skeletonize

EIGHT = np.ones((3, 3), bool)
_NEIGHBOURS = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]])


@dataclass
class Skeleton:
    """A vessel mask's skeleton: its pixels, branch and end points, and its segments as ordered paths."""

    pixels: np.ndarray  # (H, W) bool
    branch_points: np.ndarray  # (N, 2) row, col: one per cluster of touching branch pixels (its centroid)
    end_points: np.ndarray  # (M, 2) row, col
    segments: list[np.ndarray]  # each (L, 2) row, col, in path order

    @property
    def segment_pixels(self) -> np.ndarray:
        """The skeleton without its branch pixels: where calibre is read (a junction widens the vessel)."""
        mask = np.zeros_like(self.pixels)
        for path in self.segments:
            mask[path[:, 0], path[:, 1]] = True
        return mask


def neighbour_count(pixels: np.ndarray) -> np.ndarray:
    return ndimage.convolve(pixels.astype(np.uint8), _NEIGHBOURS.astype(np.uint8), mode="constant") * pixels


def skeleton_of(vessels: np.ndarray) -> Skeleton:
    pixels = skeletonize(np.asarray(vessels, bool))
    count = neighbour_count(pixels)
    branch = pixels & (count >= 3)
    ends = np.argwhere(pixels & (count == 1))
    labels, clusters = ndimage.label(branch, structure=EIGHT)
    rows, cols = np.nonzero(branch)
    which = labels[rows, cols]
    sizes = np.bincount(which, minlength=clusters + 1)[1:]
    centres = np.stack([np.bincount(which, rows, clusters + 1)[1:], np.bincount(which, cols, clusters + 1)[1:]], 1)
    centres = centres / np.maximum(sizes, 1)[:, None]
    return Skeleton(pixels, centres, ends, ordered_paths(pixels & ~branch))


def ordered_paths(paths: np.ndarray) -> list[np.ndarray]:
    """Each 8-connected component of ``paths`` as its pixels in walking order, starting at an end.

    One depth-first search from a virtual root joined to one end of every component visits the
    components one after the other, each from its end to its other end.
    """
    coords = np.argwhere(paths)
    if coords.size == 0:
        return []
    index = np.full(paths.shape, -1, np.int64)
    index[coords[:, 0], coords[:, 1]] = np.arange(len(coords))
    padded = np.pad(index, 1, constant_values=-1)
    sources, targets = [], []
    for dr, dc in ((0, 1), (1, -1), (1, 0), (1, 1)):  # each undirected edge once
        here = padded[1:-1, 1:-1]
        there = padded[1 + dr : padded.shape[0] - 1 + dr, 1 + dc : padded.shape[1] - 1 + dc]
        both = (here >= 0) & (there >= 0)
        sources.append(here[both])
        targets.append(there[both])
    sources, targets = np.concatenate(sources), np.concatenate(targets)
    n = len(coords)
    degree = np.bincount(np.concatenate([sources, targets]), minlength=n)
    labels, components = ndimage.label(paths, structure=EIGHT)
    component = labels[coords[:, 0], coords[:, 1]] - 1
    # The start of each component: a pixel of degree < 2 where there is one (a loop has none).
    rank = np.lexsort((degree >= 2, component))
    starts = rank[np.r_[0, np.flatnonzero(np.diff(component[rank])) + 1]]
    root = n
    graph = sparse.coo_matrix(
        (np.ones(len(sources) + len(starts)), (np.r_[sources, np.full(len(starts), root)], np.r_[targets, starts])),
        shape=(n + 1, n + 1),
    ).tocsr()
    order = csgraph.depth_first_order(graph, root, directed=False, return_predecessors=False)[1:]
    breaks = np.flatnonzero(np.diff(component[order])) + 1
    return [coords[part] for part in np.split(order, breaks)]
