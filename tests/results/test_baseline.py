"""The ROI baseline: trained only on the CNN's training subjects, saved as JSON that predicts exactly, and on a
synthetic cohort its most negative coefficients fall on the regions the generator altered."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from adtransfer.catalog import POOL_SET
from adtransfer.learning.splits import read_splits
from adtransfer.results.baseline import explain_baseline, fit, load, predict, ranked_regions, to_json, train_baseline
from adtransfer.results.evaluate import read_predictions


def test_baseline_sees_only_the_training_subjects(tiny_cache, tmp_path):
    params = train_baseline(
        tiny_cache["cache"], tiny_cache["splits"], "n12", "classify", tmp_path / "m.json", tmp_path / "p.tsv"
    )
    splits = read_splits(tiny_cache["splits"])
    train = set(splits.loc[splits["n12"] == "train", "subject_id"])
    assert set(params["train_subjects"]) == train
    assert not train & set(splits.loc[splits["test"], "subject_id"])
    assert not train & set(splits.loc[splits["n12"] == "val", "subject_id"])
    pred = read_predictions(tmp_path / "p.tsv")
    assert set(pred.loc[pred["split"] == "train", "subject_id"]) == train
    assert (pred["split"] == "test").sum() == splits["test"].sum()


def test_baseline_never_trains_on_a_changed_training_set(tiny_cache, tmp_path):
    """Move one training subject to validation: it must leave the fitted set."""
    splits = read_splits(tiny_cache["splits"])
    moved = splits.loc[splits["n12"] == "train", "subject_id"].iloc[0]
    splits.loc[splits["subject_id"] == moved, "n12"] = "val"
    path = tmp_path / "splits.tsv"
    splits.to_csv(path, sep="\t", index=False)
    params = train_baseline(tiny_cache["cache"], path, "n12", "classify", tmp_path / "m.json", tmp_path / "p.tsv")
    assert moved not in params["train_subjects"]


def test_json_round_trip_predicts_exactly_as_the_fitted_model(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(10, 2, (60, 8))
    y = (x[:, 0] - x[:, 1] + rng.normal(0, 1, 60) > 0).astype(int)
    pipe = fit(x, y, "classify", seed=0)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(to_json(pipe, [f"r{i}" for i in range(8)], "classify")))
    np.testing.assert_allclose(predict(load(path), x), pipe.predict_proba(x)[:, 1], rtol=1e-10, atol=1e-12)

    mmse = 30 - 2 * x[:, 2] + rng.normal(0, 1, 60)
    ridge = fit(x, mmse, "mmse", seed=0)
    params = json.loads(json.dumps(to_json(ridge, [f"r{i}" for i in range(8)], "mmse")))
    np.testing.assert_allclose(predict(params, x), np.clip(ridge.predict(x), 0, 30), rtol=1e-10)


def test_ranked_regions_put_the_most_negative_first():
    params = {"regions": ["a", "b", "c"], "coef": [0.2, -1.0, -0.1], "task": "classify"}
    assert ranked_regions(params)["region"].tolist() == ["b", "c", "a"]
    # MMSE falls with uptake loss: the disease direction is the most positive coefficient
    assert ranked_regions({**params, "task": "mmse"})["region"].tolist() == ["a", "c", "b"]


@pytest.fixture(scope="module")
def roi_cohort(tmp_path_factory):
    """30 AD + 30 NC synthetic FDG subjects, preprocessed and cached (features computed by the pipeline)."""
    from cohort_helpers import preprocess_table
    from conftest import CROP

    from adtransfer.imaging.cache import build_cache
    from adtransfer.imaging.preprocess import PreprocParams
    from adtransfer.inputs.cohort import validate_cohort
    from adtransfer.inputs.synth import CohortSpec, generate_cohort
    from adtransfer.learning.splits import make_splits, write_splits

    out = tmp_path_factory.mktemp("roi")
    generate_cohort(
        CohortSpec(name="r", modality="fdg_pet", n_ad=30, n_nc=30, seed=4, effect=0.3),
        out / "data",
        progress=False,
        workers=2,
    )
    table = validate_cohort(out / "data" / "participants.tsv", progress=False)
    preprocess_table(table, PreprocParams("fdg_pet", CROP), out / "preproc")
    table.drop(columns="row").to_csv(out / "cohort.tsv", sep="\t", index=False)
    build_cache(
        out / "cohort.tsv", out / "preproc", out / "cache.h5", size=76, modality="fdg_pet", cohort="r", workers=2
    )
    write_splits(make_splits(table, {"AD": 5, "NC": 5}, None, 0.2, seed=1), out / "splits.tsv")
    return out


@pytest.mark.slow
def test_top_weighted_regions_overlap_the_altered_set(roi_cohort, crop_grid, tmp_path):
    splits = pd.read_csv(roi_cohort / "splits.tsv", sep="\t")
    pool = POOL_SET  # one training set (no sizes): the whole pool
    assert pool in splits.columns
    params = train_baseline(
        roi_cohort / "cache.h5", roi_cohort / "splits.tsv", pool, "classify", tmp_path / "m.json", tmp_path / "p.tsv"
    )
    out = [tmp_path / name for name in ("explain_summary.json", "coefficients.tsv", "coefficients.nii.gz", "coef.png")]
    summary = explain_baseline(params, crop_grid, *out, roi_cohort / "data" / "ground_truth.json")
    hits = summary["ground_truth"]["hits"]
    # about 15 % of the atlas regions are altered: chance gives 1-2 of 10
    assert hits >= 5, summary["ground_truth"]
    assert (tmp_path / "coefficients.nii.gz").exists() and (tmp_path / "coef.png").stat().st_size > 0
