"""Slice mosaics, as the paper builds them.

The cropped volume's 48 axial slices are split into 3 interleaved sets ([1,4,7..], [2,5,8..], [3,6,9..]
counting from 1); each set's 16 slices are tiled 4x4, row by row, from caudal (top-left) to cranial
(bottom-right). So tile (r, c) of mosaic k holds slice 3*(4r+c)+k (0-based). A 95x95 slice is shown with
anterior up and the subject's left on the image's left (neurological convention); a 95x95x48 volume gives
three 380x380 mosaics, which are resized tile by tile for smaller inputs (tile borders stay exact).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

N_SETS = 3
TILES = 4  # per side


def slice_image(volume: np.ndarray, k: int) -> np.ndarray:
    """Axial slice k of a RAS+ volume as an image: rows anterior->posterior, columns left->right."""
    return volume[:, :, k].T[::-1, :]


def image_to_slice(image: np.ndarray) -> np.ndarray:
    """Inverse of slice_image: back to the (x, y) layout of the volume."""
    return image[::-1, :].T


def slice_index(set_k: int, r: int, c: int) -> int:
    return N_SETS * (TILES * r + c) + set_k


def resize_tile(image: np.ndarray, tile: int) -> np.ndarray:
    """Resize one slice to tile x tile pixels (Pillow's bilinear filter, which antialiases when shrinking)."""
    if image.shape == (tile, tile):
        return image.astype(np.float32, copy=False)
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    return np.asarray(pil.resize((tile, tile), Image.Resampling.BILINEAR), dtype=np.float32)


def make_mosaics(volume: np.ndarray, size: int) -> np.ndarray:
    """The 3 mosaics of a cropped volume, shape (3, size, size), float32."""
    n_slices = volume.shape[2]
    if n_slices != N_SETS * TILES * TILES:
        raise ValueError(f"mosaics need {N_SETS * TILES * TILES} axial slices, the volume has {n_slices}")
    if size % TILES:
        raise ValueError(f"mosaic size {size} is not a multiple of {TILES}")
    tile = size // TILES
    out = np.empty((N_SETS, size, size), np.float32)
    for k in range(N_SETS):
        for r in range(TILES):
            for c in range(TILES):
                out[k, r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = resize_tile(
                    slice_image(volume, slice_index(k, r, c)), tile
                )
    return out


def mosaics_to_volume(mosaics: np.ndarray, shape_xy: tuple[int, int]) -> np.ndarray:
    """Put 3 mosaics back into a (x, y, 48) volume; exact inverse of make_mosaics when tiles are full size."""
    size = mosaics.shape[-1]
    tile = size // TILES
    vol = np.empty((*shape_xy, N_SETS * TILES * TILES), np.float32)
    for k in range(N_SETS):
        for r in range(TILES):
            for c in range(TILES):
                img = mosaics[k, r * tile : (r + 1) * tile, c * tile : (c + 1) * tile]
                img = resize_tile(img, shape_xy[0]) if img.shape != (shape_xy[1], shape_xy[0]) else img
                vol[:, :, slice_index(k, r, c)] = image_to_slice(img)
    return vol
