"""The voxel grids the method works on: the 2 mm MNI grid and the 95x95x48 crop inside it.

Both are RAS+ (nibabel's canonical orientation): axis 0 runs left->right, axis 1 posterior->anterior,
axis 2 inferior->superior, so axial slice k is `volume[:, :, k]` and k grows from caudal to cranial.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """A RAS+ grid with isotropic voxels: shape and the world (mm) position of voxel (0, 0, 0)."""

    shape: tuple[int, int, int]
    voxel_mm: float
    origin_mm: tuple[float, float, float]

    @classmethod
    def from_config(cls, cfg: dict) -> Grid:
        return cls(
            tuple(int(s) for s in cfg["shape"]),
            float(cfg["voxel_mm"]),
            tuple(float(o) for o in cfg["origin_mm"]),
        )

    @property
    def affine(self) -> np.ndarray:
        aff = np.diag([self.voxel_mm] * 3 + [1.0])
        aff[:3, 3] = self.origin_mm
        return aff

    def matches(self, shape: Sequence[int], affine: np.ndarray, atol: float = 1e-3) -> bool:
        return tuple(shape[:3]) == self.shape and np.allclose(affine, self.affine, atol=atol)

    def offset_in(self, outer: Grid) -> tuple[int, int, int]:
        """Index of this grid's voxel (0,0,0) in `outer` (may be negative: the crop pads there)."""
        if not np.isclose(self.voxel_mm, outer.voxel_mm):
            raise ValueError("crop and MNI grid must share a voxel size")
        off = (np.asarray(self.origin_mm) - np.asarray(outer.origin_mm)) / outer.voxel_mm
        if not np.allclose(off, np.round(off), atol=1e-3):
            raise ValueError(f"crop origin {self.origin_mm} is not on the MNI grid's voxel centres")
        return tuple(int(v) for v in np.round(off))


def crop(volume: np.ndarray, outer: Grid, inner: Grid, fill: float = 0.0) -> np.ndarray:
    """Cut `inner` out of a volume on `outer`, padding with `fill` where `inner` reaches outside."""
    out = np.full(inner.shape, fill, dtype=volume.dtype)
    src, dst = _overlap(outer, inner)
    out[dst] = volume[src]
    return out


def uncrop(volume: np.ndarray, outer: Grid, inner: Grid, fill: float = 0.0) -> np.ndarray:
    """Put a volume on `inner` back onto `outer` (the inverse of `crop` inside the overlap)."""
    out = np.full(outer.shape, fill, dtype=volume.dtype)
    src, dst = _overlap(outer, inner)
    out[src] = volume[dst]
    return out


def _overlap(outer: Grid, inner: Grid) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    off = inner.offset_in(outer)
    src, dst = [], []
    for o, n_in, n_out in zip(off, inner.shape, outer.shape, strict=True):
        lo, hi = max(o, 0), min(o + n_in, n_out)
        if hi <= lo:
            raise ValueError("crop grid does not overlap the MNI grid")
        src.append(slice(lo, hi))
        dst.append(slice(lo - o, hi - o))
    return tuple(src), tuple(dst)
