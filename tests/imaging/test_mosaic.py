"""Mosaic geometry: which slice lands in which tile, orientation of a slice, exact inverse at full size."""

from __future__ import annotations

import numpy as np
import pytest

from adtransfer.imaging import mosaic
from adtransfer.imaging.mosaic import make_mosaics, mosaics_to_volume, resize_tile, slice_image

SHAPE = (95, 95, 48)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return np.random.default_rng(42).normal(size=SHAPE).astype(np.float32)


def _tile(mosaics: np.ndarray, k: int, r: int, c: int) -> np.ndarray:
    t = mosaics.shape[-1] // 4
    return mosaics[k, r * t : (r + 1) * t, c * t : (c + 1) * t]


def test_geometry_full_size(volume):
    mos = make_mosaics(volume, 380)
    assert mos.shape == (3, 380, 380)
    assert mos.dtype == np.float32
    seen = []
    for k in range(3):
        for r in range(4):
            for c in range(4):
                s = 3 * (4 * r + c) + k
                seen.append(s)
                np.testing.assert_array_equal(_tile(mos, k, r, c), slice_image(volume, s))
    assert sorted(seen) == list(range(48))  # every slice exactly once


def test_geometry_interleaving_by_slice_label():
    # a volume whose slice s is constant s: tile (r, c) of mosaic k must read 3*(4r+c)+k everywhere
    vol = np.broadcast_to(np.arange(48, dtype=np.float32), SHAPE).copy()
    mos = make_mosaics(vol, 380)
    expected_first_rows = {0: [0, 3, 6, 9], 1: [1, 4, 7, 10], 2: [2, 5, 8, 11]}
    for k in range(3):
        for r in range(4):
            for c in range(4):
                assert np.all(_tile(mos, k, r, c) == 3 * (4 * r + c) + k)
        assert [mos[k, 0, c * 95] for c in range(4)] == expected_first_rows[k]
    # caudal (slice 0) top-left, cranial (slice 47) bottom-right
    assert mos[0, 0, 0] == 0 and mos[2, -1, -1] == 47


def test_geometry_resized(volume):
    mos = make_mosaics(volume, 96)
    assert mos.shape == (3, 96, 96)
    for k in range(3):
        for r in range(4):
            for c in range(4):
                s = 3 * (4 * r + c) + k
                np.testing.assert_array_equal(_tile(mos, k, r, c), resize_tile(slice_image(volume, s), 24))


def test_resize_tile_is_a_faithful_downsample():
    # a smooth image shrinks to approximately its block means, and a constant stays constant
    yy, xx = np.mgrid[0:95, 0:95].astype(np.float32)
    img = np.sin(xx / 15.0) + np.cos(yy / 20.0)
    small = resize_tile(img, 24)
    assert small.shape == (24, 24) and small.dtype == np.float32
    centres = (np.arange(24) + 0.5) * 95 / 24 - 0.5
    expected = np.sin(centres[None, :] / 15.0) + np.cos(centres[:, None] / 20.0)
    np.testing.assert_allclose(small, expected, atol=0.05)
    np.testing.assert_allclose(resize_tile(np.full((95, 95), 3.5, np.float32), 24), 3.5, rtol=1e-6)


def test_tiles_do_not_bleed_when_resized():
    vol = np.broadcast_to(np.arange(48, dtype=np.float32), SHAPE).copy()
    mos = make_mosaics(vol, 96)
    for k in range(3):
        for r in range(4):
            for c in range(4):
                np.testing.assert_allclose(_tile(mos, k, r, c), 3 * (4 * r + c) + k, rtol=1e-6)


def test_mosaics_to_volume_inverts_full_size(volume):
    back = mosaics_to_volume(make_mosaics(volume, 380), (95, 95))
    assert back.shape == SHAPE
    np.testing.assert_array_equal(back, volume)


def test_mosaics_to_volume_upsamples_small_mosaics():
    smooth = np.broadcast_to(np.linspace(0, 1, 48, dtype=np.float32), SHAPE).copy()
    back = mosaics_to_volume(make_mosaics(smooth, 96), (95, 95))
    assert back.shape == SHAPE
    np.testing.assert_allclose(back, smooth, atol=1e-5)


def test_slice_image_orientation():
    vol = np.zeros(SHAPE, np.float32)
    vol[50, 90, 10] = 1.0  # high y = anterior
    img = slice_image(vol, 10)
    assert img.shape == (95, 95)
    (row,), (col,) = np.nonzero(img)
    assert row == 94 - 90 and row < 10  # near the top
    assert col == 50

    vol = np.zeros(SHAPE, np.float32)
    vol[3, 40, 10] = 1.0  # low x = subject's left in RAS+
    (row,), (col,) = np.nonzero(slice_image(vol, 10))
    assert col == 3  # left column (neurological convention)
    assert row == 94 - 40
    # other slices are untouched
    assert not slice_image(vol, 11).any()


def test_slice_image_orientation_in_the_mosaic():
    vol = np.zeros(SHAPE, np.float32)
    vol[0, 94, 0] = 1.0  # left-anterior corner of slice 0 -> top-left pixel of mosaic 0
    vol[94, 0, 47] = 2.0  # right-posterior corner of slice 47 -> bottom-right pixel of mosaic 2
    mos = make_mosaics(vol, 380)
    assert mos[0, 0, 0] == 1.0
    assert mos[2, 379, 379] == 2.0
    assert np.count_nonzero(mos) == 2


def test_image_to_slice_inverts_slice_image(volume):
    np.testing.assert_array_equal(mosaic.image_to_slice(slice_image(volume, 5)), volume[:, :, 5])


@pytest.mark.parametrize("size", [95, 101, 382])
def test_size_not_multiple_of_4_raises(volume, size):
    with pytest.raises(ValueError, match="multiple of 4"):
        make_mosaics(volume, size)


@pytest.mark.parametrize("n_slices", [47, 49, 91])
def test_wrong_slice_count_raises(n_slices):
    with pytest.raises(ValueError, match="48 axial slices"):
        make_mosaics(np.zeros((95, 95, n_slices), np.float32), 380)
