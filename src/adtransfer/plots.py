"""Figures. QC images are drawn with Pillow (no matplotlib import on the per-subject hot path)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

from adtransfer.io import atomic_output
from adtransfer.mosaic import make_mosaics

# Display windows for normalized intensities: FDG uptake relative to the reference, ECD z-scores.
DISPLAY_RANGE = {"fdg_pet": (0.0, 2.5), "ecd_spect": (-3.0, 3.0)}


def to_uint8(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (np.clip((image - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)


def qc_mosaic_png(volume: np.ndarray, path: str | os.PathLike, modality: str, title: str = "") -> None:
    """The three full-resolution mosaics of a cropped volume side by side, with a caption line."""
    lo, hi = DISPLAY_RANGE[modality]
    mosaics = make_mosaics(volume, volume.shape[0] * 4)
    strip = np.concatenate([to_uint8(m, lo, hi) for m in mosaics], axis=1)
    canvas = Image.new("L", (strip.shape[1], strip.shape[0] + 16), 0)
    canvas.paste(Image.fromarray(strip), (0, 16))
    ImageDraw.Draw(canvas).text(
        (4, 2), f"{title}  {modality}  window {lo:g}..{hi:g}  sets 1-3, caudal->cranial", fill=255
    )
    with atomic_output(path) as tmp:
        canvas.save(tmp, format="PNG")
