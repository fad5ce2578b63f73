"""Explanations scored against the synthetic generator's truth (results/truth.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adtransfer.results.truth import altered_mask, mass_ratio, top_regions_hit, truth_scores


def test_mass_ratio_is_one_for_a_uniform_map_and_inverse_share_inside_truth():
    brain = np.ones((10, 10, 10), bool)
    truth = np.zeros_like(brain)
    truth[:2] = True  # 20 % of the brain
    assert mass_ratio(np.ones(brain.shape), truth, brain)["ratio"] == pytest.approx(1.0)
    assert mass_ratio(truth.astype(float), truth, brain)["ratio"] == pytest.approx(5.0)


def test_top_regions_hit_counts_prefix_matches():
    hit = top_regions_hit(["Precuneus_L", "Frontal_Sup_R", "Cingulate_Post_R"], ["Precuneus", "Cingulate_Post"], k=2)
    assert hit["hits"] == 1 and hit["altered_in_top"] == ["Precuneus_L"]


def test_truth_scores_find_a_map_painted_on_the_altered_regions(crop_grid, tmp_path):
    truth = tmp_path / "ground_truth.json"
    truth.write_text(json.dumps({"altered_regions": ["Precuneus", "Cingulate_Post"]}))
    mask, prefixes = altered_mask(truth, crop_grid)
    assert prefixes == ["Precuneus", "Cingulate_Post"] and mask.shape == tuple(crop_grid.shape) and mask.any()
    ranked = ["Precuneus_L", "Frontal_Sup_R", "Cingulate_Post_R"]
    scores = truth_scores(mask.astype(float), ranked, truth, crop_grid)
    assert scores["ratio"] > 1 and scores["mass_share"] == pytest.approx(1.0)
    assert scores["top_regions"]["hits"] == 2
    # NaN voxels count as unmeasured (0) and negative values as 0: such a map has no mass to place
    assert np.isnan(truth_scores(np.where(mask, np.nan, -1.0), ranked, truth, crop_grid)["mass_share"])
