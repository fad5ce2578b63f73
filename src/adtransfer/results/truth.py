"""Explanations scored against the synthetic generator's truth: the one place that reads ground_truth.json's
altered regions, puts them on the crop, and scores a map (Grad-CAM, region occlusion, ROI coefficients) by its
mass inside them against chance and by how many of its first-ranked regions the generator altered."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from adtransfer.imaging.grid import Grid, crop


def mass_ratio(volume: np.ndarray, truth: np.ndarray, brain: np.ndarray) -> dict:
    """Share of the map's mass inside the true altered voxels, divided by their share of the brain volume.

    1 is what a map spread uniformly over the brain gives; higher means the map finds the altered regions.
    """
    brain = brain.astype(bool)
    mass = np.clip(volume, 0, None)[brain]
    inside = truth.astype(bool)[brain]
    chance = float(inside.mean())
    share = float(mass[inside].sum() / mass.sum()) if mass.sum() > 0 else float("nan")
    return {"mass_share": share, "volume_share": chance, "ratio": share / chance if chance > 0 else float("nan")}


def top_regions_hit(regions: list[str], altered_prefixes: list[str], k: int = 10) -> dict:
    """How many of the first k regions belong to the generator's altered set (AAL3 name prefixes)."""
    top = list(regions)[:k]
    hits = [r for r in top if any(r.startswith(p) for p in altered_prefixes)]
    return {"k": k, "hits": len(hits), "regions": top, "altered_in_top": hits}


def altered_mask(truth_json: str | os.PathLike, crop_grid: Grid) -> tuple[np.ndarray, list[str]]:
    """The generator's altered regions (AAL3 name prefixes from ground_truth.json) on the crop."""
    from adtransfer.imaging.templates import load_templates

    prefixes = list(json.loads(Path(truth_json).read_text())["altered_regions"])
    t = load_templates()
    return crop(t.region_mask(prefixes), t.grid, crop_grid), prefixes


def truth_scores(volume: np.ndarray, ranked_regions: list[str], truth_json: str | os.PathLike, crop_grid: Grid) -> dict:
    """One scoring for every explanation (Grad-CAM, occlusion, ROI coefficients): the map's mass inside the
    generator's altered regions against chance (negative values count as 0; NaN voxels as unmeasured), and how
    many of its ten first-ranked regions the generator altered."""
    from adtransfer.imaging.templates import MNI_2MM, load_templates

    mask, prefixes = altered_mask(truth_json, crop_grid)
    brain = crop(load_templates().brain_mask, MNI_2MM, crop_grid)
    values = np.nan_to_num(np.asarray(volume, np.float64), nan=0.0)
    return {**mass_ratio(values, mask, brain), "top_regions": top_regions_hit(ranked_regions, prefixes)}
