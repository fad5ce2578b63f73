"""The MNI grid and the 95x95x48 crop inside it: offsets, crop/uncrop, padding, alignment checks."""

from __future__ import annotations

import numpy as np
import pytest

from adtransfer.imaging.grid import Grid, crop, uncrop
from adtransfer.imaging.templates import MNI_2MM


def _world_of_index(grid: Grid, idx) -> np.ndarray:
    return (grid.affine @ np.append(np.asarray(idx, float), 1.0))[:3]


def test_default_crop_offset_in_mni(crop_grid):
    # (-94 - -90)/2, (-112 - -126)/2, (-36 - -72)/2
    assert crop_grid.offset_in(MNI_2MM) == (-2, 7, 18)
    # the offset is consistent with the affines: voxel (0,0,0) of the crop is voxel `off` of the MNI grid
    off = crop_grid.offset_in(MNI_2MM)
    np.testing.assert_allclose(_world_of_index(crop_grid, (0, 0, 0)), _world_of_index(MNI_2MM, off))
    np.testing.assert_allclose(
        _world_of_index(crop_grid, (94, 94, 47)), _world_of_index(MNI_2MM, np.add(off, (94, 94, 47)))
    )


def test_affines_are_ras_with_origin(crop_grid):
    np.testing.assert_array_equal(
        crop_grid.affine,
        [[2, 0, 0, -94], [0, 2, 0, -112], [0, 0, 2, -36], [0, 0, 0, 1]],
    )
    # MNI (0,0,0) mm lies on voxel (45, 63, 36) of the SPM 2 mm grid
    np.testing.assert_allclose(_world_of_index(MNI_2MM, (45, 63, 36)), (0, 0, 0))


def test_crop_values_come_from_the_right_voxels(crop_grid):
    rng = np.random.default_rng(0)
    vol = rng.normal(size=MNI_2MM.shape).astype(np.float32)
    out = crop(vol, MNI_2MM, crop_grid, fill=-7.0)
    assert out.shape == (95, 95, 48)
    assert out.dtype == np.float32
    # crop voxel (i, j, k) is MNI voxel (i-2, j+7, k+18) wherever that exists
    for i, j, k in [(2, 0, 0), (50, 40, 20), (92, 94, 47), (10, 3, 30)]:
        assert out[i, j, k] == vol[i - 2, j + 7, k + 18]
    np.testing.assert_array_equal(out[2:93], vol[:, 7:102, 18:66])


def test_crop_pads_outside_mni_grid(crop_grid):
    # x: the crop spans MNI indices -2..92 but the MNI grid has only 0..90 -> 2 padded columns each side
    vol = np.ones(MNI_2MM.shape, np.float32)
    out = crop(vol, MNI_2MM, crop_grid, fill=-1.0)
    assert np.all(out[:2] == -1.0)
    assert np.all(out[93:] == -1.0)
    assert np.all(out[2:93] == 1.0)
    # y and z lie fully inside the MNI grid: no padding there
    assert np.count_nonzero(out == -1.0) == 4 * 95 * 48


def test_crop_then_uncrop_is_identity_inside_overlap(crop_grid):
    rng = np.random.default_rng(1)
    vol = rng.normal(size=MNI_2MM.shape).astype(np.float32)
    back = uncrop(crop(vol, MNI_2MM, crop_grid), MNI_2MM, crop_grid, fill=np.float32(99.0))
    assert back.shape == MNI_2MM.shape
    inside = np.zeros(MNI_2MM.shape, bool)
    inside[:, 7:102, 18:66] = True
    np.testing.assert_array_equal(back[inside], vol[inside])
    assert np.all(back[~inside] == 99.0)


def test_uncrop_then_crop_is_identity_inside_overlap(crop_grid):
    rng = np.random.default_rng(2)
    small = rng.normal(size=crop_grid.shape).astype(np.float32)
    again = crop(uncrop(small, MNI_2MM, crop_grid), MNI_2MM, crop_grid, fill=np.float32(5.0))
    np.testing.assert_array_equal(again[2:93], small[2:93])
    assert np.all(again[:2] == 5.0) and np.all(again[93:] == 5.0)


def test_misaligned_origin_raises(crop_grid):
    shifted = Grid(crop_grid.shape, 2.0, (-93.0, -112.0, -36.0))  # half a voxel off in x
    with pytest.raises(ValueError, match="voxel centres"):
        shifted.offset_in(MNI_2MM)
    with pytest.raises(ValueError):
        crop(np.zeros(MNI_2MM.shape, np.float32), MNI_2MM, shifted)


def test_other_voxel_size_raises(crop_grid):
    with pytest.raises(ValueError, match="voxel size"):
        Grid(crop_grid.shape, 3.0, crop_grid.origin_mm).offset_in(MNI_2MM)


def test_non_overlapping_crop_raises():
    far = Grid((10, 10, 10), 2.0, (500.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="overlap"):
        crop(np.zeros(MNI_2MM.shape, np.float32), MNI_2MM, far)


def test_grid_matches_and_from_config(crop_grid):
    g = Grid.from_config({"shape": [95, 95, 48], "voxel_mm": 2, "origin_mm": [-94, -112, -36]})
    assert g == crop_grid
    assert MNI_2MM.matches((91, 109, 91), MNI_2MM.affine)
    assert MNI_2MM.matches((91, 109, 91, 1), MNI_2MM.affine)
    assert not MNI_2MM.matches((91, 109, 90), MNI_2MM.affine)
    moved = MNI_2MM.affine.copy()
    moved[0, 3] += 1.0
    assert not MNI_2MM.matches((91, 109, 91), moved)
    flipped = MNI_2MM.affine.copy()
    flipped[0, 0] = -2.0
    assert not MNI_2MM.matches((91, 109, 91), flipped)
