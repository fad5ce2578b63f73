"""Regional mean intensities in AAL3 regions: the features of the linear baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from adtransfer.grid import Grid, crop
from adtransfer.templates import load_templates


def atlas_in(grid: Grid) -> tuple[np.ndarray, pd.DataFrame]:
    """AAL3 labels on `grid` (a crop of the MNI grid) and the regions that keep at least 10 voxels there."""
    t = load_templates()
    labels = crop(t.atlas, t.grid, grid)
    idx, counts = np.unique(labels[labels > 0], return_counts=True)
    keep = set(idx[counts >= 10].tolist())
    table = pd.DataFrame([(i, name) for i, name in t.labels.items() if i in keep], columns=["index", "name"])
    return labels, table


def regional_means(volumes: np.ndarray, grid: Grid) -> tuple[np.ndarray, list[str]]:
    """Mean of each region for a stack of volumes on `grid`: (N, R) and the region names."""
    labels, table = atlas_in(grid)
    flat = labels.reshape(-1)
    index = table["index"].to_numpy()
    counts = np.bincount(flat, minlength=index.max() + 1)[index]
    vols = np.asarray(volumes, dtype=np.float64).reshape(len(volumes), -1)
    means = np.stack([np.bincount(flat, weights=v, minlength=index.max() + 1)[index] for v in vols]) / counts
    return means.astype(np.float32), table["name"].tolist()
