"""Figures. QC images are drawn with Pillow (no matplotlib import on the per-subject hot path)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

from adtransfer import modalities
from adtransfer.imaging.mosaic import make_mosaics
from adtransfer.io import atomic_output

# zlib level of the per-subject QC PNGs: 1 writes them in 40 % of level 6's time (Pillow's default; two PNGs were
# ~0.05 s of a ~0.4 s preprocessing job) for ~10 % larger files.
PNG_COMPRESS_LEVEL = 1


def to_uint8(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (np.clip((image - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)


def qc_mosaic_png(volume: np.ndarray, path: str | os.PathLike, modality: str, title: str = "") -> None:
    """The three full-resolution mosaics of a cropped volume side by side, with a caption line."""
    lo, hi = modalities.get(modality).display_range  # a window on normalized intensities
    mosaics = make_mosaics(volume, volume.shape[0] * 4)
    strip = np.concatenate([to_uint8(m, lo, hi) for m in mosaics], axis=1)
    canvas = Image.new("L", (strip.shape[1], strip.shape[0] + 16), 0)
    canvas.paste(Image.fromarray(strip), (0, 16))
    ImageDraw.Draw(canvas).text(
        (4, 2), f"{title}  {modality}  window {lo:g}..{hi:g}  sets 1-3, caudal->cranial", fill=255
    )
    with atomic_output(path) as tmp:
        canvas.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def registration_qc_png(
    on_mni: np.ndarray, path: str | os.PathLike, modality: str, title: str, registration: dict
) -> None:
    """The scan on the 2 mm MNI grid (after registration, if any): 9 axial, a coronal and a sagittal slice, the
    template brain's outline drawn in red over each; the caption gives the similarity to the template."""
    from adtransfer.imaging.preprocess import erode
    from adtransfer.imaging.templates import load_templates

    brain = load_templates().brain_mask
    edge = brain & ~erode(brain)
    inside = on_mni[brain]
    # the window's ends are voxel values (method nearest): interpolating percentiles imports numpy.ma (np.unique's
    # masked-array check), ~8 ms of a per-subject job
    lo, hi = 0.0, float(np.percentile(inside, 99.5, method="nearest")) if inside.size and np.any(inside) else 1.0
    if modalities.get(modality).normalization == "zscore" and np.any(inside < 0):
        lo = float(np.percentile(inside, 0.5, method="nearest"))
    nx, ny, nz = on_mni.shape
    axial = [(on_mni[:, :, k], edge[:, :, k]) for k in np.linspace(nz * 0.15, nz * 0.78, 9).astype(int)]
    views = axial + [(on_mni[:, ny // 2 - 8, :], edge[:, ny // 2 - 8, :]), (on_mni[nx // 2, :, :], edge[nx // 2, :, :])]
    tiles = []
    for image, outline in views:
        grey = to_uint8(np.rot90(image), lo, hi)
        rgb = np.repeat(grey[..., None], 3, axis=2)
        rgb[np.rot90(outline)] = (255, 0, 0)
        tile = np.zeros((ny, ny, 3), np.uint8)  # square tiles, side = the longest in-plane size
        h, w = rgb.shape[:2]
        tile[(ny - h) // 2 : (ny - h) // 2 + h, (ny - w) // 2 : (ny - w) // 2 + w] = rgb
        tiles.append(tile)
    tiles.append(np.zeros_like(tiles[0]))
    grid = np.concatenate([np.concatenate(tiles[r * 6 : r * 6 + 6], axis=1) for r in range(2)], axis=0)
    canvas = Image.new("RGB", (grid.shape[1], grid.shape[0] + 16), 0)
    canvas.paste(Image.fromarray(grid), (0, 16))
    if registration.get("registered"):
        caption = f"registered to the {modality} template, similarity {registration['similarity']:.3f}"
    else:
        caption = "space mni (not registered)"
    ImageDraw.Draw(canvas).text((4, 2), f"{title}  {caption}  (red: MNI brain outline)", fill=(255, 255, 255))
    with atomic_output(path) as tmp:
        canvas.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
