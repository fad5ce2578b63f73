"""Regional mean intensities in AAL3 regions: the features of the linear baseline."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from adtransfer.imaging.grid import Grid, crop
from adtransfer.imaging.templates import load_templates

if TYPE_CHECKING:  # pandas is imported where a table is built: each preprocessing job computes means without it
    import pandas as pd


def _regions_in(grid: Grid) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """AAL3 labels on `grid` (a crop of the MNI grid) and the (index, name) of regions keeping >= 10 voxels there."""
    t = load_templates()
    labels = crop(t.atlas, t.grid, grid)
    counts = np.bincount(labels.reshape(-1))  # voxels per label (labels are >= 0); no sort, unlike np.unique
    keep = set(np.flatnonzero(counts >= 10).tolist()) - {0}
    return labels, [(i, name) for i, name in t.labels.items() if i in keep]


def atlas_in(grid: Grid) -> tuple[np.ndarray, pd.DataFrame]:
    """AAL3 labels on `grid` (a crop of the MNI grid) and the regions that keep at least 10 voxels there."""
    import pandas as pd

    labels, regions = _regions_in(grid)
    return labels, pd.DataFrame(regions, columns=["index", "name"])


def regional_means(volumes: np.ndarray, grid: Grid) -> tuple[np.ndarray, list[str]]:
    """Mean of each region for a stack of volumes on `grid`: (N, R) and the region names."""
    labels, regions = _regions_in(grid)
    flat = labels.reshape(-1)
    index = np.array([i for i, _ in regions])
    counts = np.bincount(flat, minlength=index.max() + 1)[index]
    vols = np.asarray(volumes, dtype=np.float64).reshape(len(volumes), -1)
    means = np.stack([np.bincount(flat, weights=v, minlength=index.max() + 1)[index] for v in vols]) / counts
    return means.astype(np.float32), [name for _, name in regions]
