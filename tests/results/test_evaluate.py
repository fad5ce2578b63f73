"""Metrics against hand-computed cases and scikit-learn; bootstrap CIs; DeLong against a resampling check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from adtransfer.results.evaluate import (
    Rate,
    auc_rows,
    bootstrap_auc,
    classification_metrics,
    delong_test,
    evaluate,
    holm,
    paired_auc_difference,
    paired_mae_difference,
    read_predictions,
    regression_metrics,
    threshold_metrics,
    write_predictions,
    youden_threshold,
)


def test_threshold_metrics_hand_computed():
    # 4 AD, 6 NC; called AD: 3 of the AD, 2 of the NC
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.6, 0.2, 0.7, 0.5, 0.4, 0.3, 0.1, 0.0])
    m = threshold_metrics(y, p, 0.5)
    assert (m["sensitivity"].num, m["sensitivity"].den) == (3, 4)
    assert (m["specificity"].num, m["specificity"].den) == (4, 6)
    assert (m["precision"].num, m["precision"].den) == (3, 5)
    assert (m["accuracy"].num, m["accuracy"].den) == (7, 10)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert str(m["sensitivity"]) == "75.0 (3/4)"


def test_threshold_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.3 * y + rng.random(200) * 0.7, 0, 1)
    m = threshold_metrics(y, p, 0.5)
    pred = (p >= 0.5).astype(int)
    assert m["sensitivity"].value == pytest.approx(recall_score(y, pred))
    assert m["specificity"].value == pytest.approx(recall_score(y, pred, pos_label=0))
    assert m["precision"].value == pytest.approx(precision_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))


def test_rate_without_denominator_is_nan():
    assert np.isnan(Rate(0, 0).value)


def test_youden_threshold_separates_perfectly_separable_scores():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    t = youden_threshold(y, s)
    assert 0.3 < t <= 0.7
    assert threshold_metrics(y, s, t)["accuracy"].value == 1.0


def test_bootstrap_ci_contains_estimate_and_narrows_with_n():
    rng = np.random.default_rng(1)

    def cohort(n):
        y = np.repeat([0, 1], n)
        return y, y * 1.0 + rng.normal(0, 1.0, 2 * n)

    y, s = cohort(30)
    auc, lo, hi = bootstrap_auc(y, s, n_boot=500, seed=0)
    assert auc == pytest.approx(roc_auc_score(y, s))
    assert lo <= auc <= hi
    y2, s2 = cohort(300)
    auc2, lo2, hi2 = bootstrap_auc(y2, s2, n_boot=500, seed=0)
    assert lo2 <= auc2 <= hi2
    assert (hi2 - lo2) < 0.6 * (hi - lo)


def test_vectorized_auc_equals_scikit_learn_with_ties():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 30)
    y[:2] = [0, 1]
    scores = rng.integers(0, 5, (20, 30)).astype(float)  # many ties
    expected = [roc_auc_score(y, row) for row in scores]
    np.testing.assert_allclose(auc_rows(y, scores), expected)


def test_bootstrap_is_seeded():
    y = np.repeat([0, 1], 20)
    s = np.linspace(0, 1, 40)[::-1] * 0.5 + y * 0.5
    assert bootstrap_auc(y, s, 200, seed=3) == bootstrap_auc(y, s, 200, seed=3)


def test_delong_single_auc_variance_matches_hand_computation():
    # m=2 AD, n=2 NC: placements by hand
    y = np.array([1, 1, 0, 0])
    a = np.array([0.9, 0.4, 0.5, 0.1])  # AD 0.9 beats both NC; AD 0.4 beats 0.1 only -> AUC 0.75
    b = np.array([0.8, 0.7, 0.2, 0.1])  # perfect -> AUC 1
    d = delong_test(y, a, b)
    assert d["auc_a"] == pytest.approx(0.75) and d["auc_b"] == pytest.approx(1.0)
    # a: V10 = [1, 0.5], V01 = [0.5, 1]; b: V10 = [1, 1], V01 = [1, 1] (no variance)
    var_a = np.var([1, 0.5], ddof=1) / 2 + np.var([0.5, 1], ddof=1) / 2
    assert d["se"] == pytest.approx(np.sqrt(var_a))


def test_delong_identical_scores_give_p_one():
    y = np.repeat([0, 1], 10)
    s = np.arange(20) / 20
    assert delong_test(y, s, s)["p"] == 1.0


def test_delong_standard_error_agrees_with_paired_bootstrap():
    """DeLong's SE of the AUC difference is an asymptotic estimate of what resampling the subjects gives."""
    rng = np.random.default_rng(7)
    n = 150
    y = np.repeat([0, 1], n)
    latent = rng.normal(0, 1, 2 * n)
    a = y * 1.2 + latent + rng.normal(0, 0.6, 2 * n)
    b = y * 0.9 + latent + rng.normal(0, 0.6, 2 * n)
    d = delong_test(y, a, b)
    boot = np.random.default_rng(0)
    idx = np.concatenate([boot.choice(np.flatnonzero(y == c), (800, n)) for c in (0, 1)], axis=1)
    yb = np.repeat([0, 1], n)  # auc_rows is checked against scikit-learn above
    diffs = auc_rows(yb, a[idx]) - auc_rows(yb, b[idx])
    assert d["difference"] == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
    assert d["se"] == pytest.approx(np.std(diffs), rel=0.15)


def test_delong_p_is_roughly_uniform_under_the_null():
    """Two equally good, correlated predictors: p < 0.05 in about 5 % of cohorts, not far more or less."""
    rng = np.random.default_rng(11)
    ps = []
    for _ in range(300):
        y = np.repeat([0, 1], 40)
        shared = y + rng.normal(0, 1, 80)
        ps.append(delong_test(y, shared + rng.normal(0, 0.7, 80), shared + rng.normal(0, 0.7, 80))["p"])
    rate = np.mean(np.array(ps) < 0.05)
    assert 0.01 <= rate <= 0.11


def _prediction_table(n=40, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = np.repeat([1, 0], n // 2)
    mos = np.clip(y[:, None] * 0.4 + rng.random((n, 3)) * 0.6, 0, 1)
    split = np.array(["test"] * (n // 2) + ["val"] * (n // 4) + ["train"] * (n - n // 2 - n // 4))
    rng.shuffle(split)
    df = pd.DataFrame(
        {
            "subject_id": [f"s{i:03d}" for i in range(n)],
            "diagnosis": np.where(y, "AD", "NC"),
            "split": split,
            "target": y,
        }
    )
    for i in range(3):
        df[f"mosaic_{i + 1}"] = mos[:, i]
    df["ensemble"] = mos.mean(axis=1)
    return df


def test_classification_metrics_use_only_test_subjects(tmp_path):
    df = _prediction_table()
    path = tmp_path / "p.tsv"
    write_predictions(df, path)
    back = read_predictions(path)
    m = classification_metrics(back, n_boot=200, seed=0)
    test = df[df["split"] == "test"]
    assert m["n_test"] == len(test)
    assert m["auc"]["ensemble"]["auc"] == pytest.approx(roc_auc_score(test["target"], test["ensemble"]), abs=1e-5)
    assert m["auc"]["mosaic_2"]["auc"] == pytest.approx(roc_auc_score(test["target"], test["mosaic_2"]), abs=1e-5)
    assert m["at_threshold"]["accuracy"]["den"] == len(test)


def test_mci_rows_are_not_scored_in_classification():
    df = _prediction_table()
    mci = df.iloc[:3].copy()
    mci["target"], mci["diagnosis"], mci["split"] = -1, "MCI", "test"
    m = classification_metrics(pd.concat([df, mci]), n_boot=100)
    assert m["n_test"] == int((df["split"] == "test").sum())


def test_baseline_tables_without_mosaic_columns_score_the_ensemble():
    df = _prediction_table()
    df[["mosaic_1", "mosaic_2", "mosaic_3"]] = np.nan
    m = evaluate(df, "classify", n_boot=100)
    assert set(m["auc"]) == {"ensemble"}


def test_regression_metrics():
    rng = np.random.default_rng(2)
    y = rng.uniform(10, 30, 60)
    yhat = y + rng.normal(0, 2, 60)
    df = pd.DataFrame(
        {
            "subject_id": [f"s{i}" for i in range(60)],
            "diagnosis": "AD",
            "split": ["train"] * 40 + ["test"] * 20,
            "target": y,
            "ensemble": yhat,
        }
    )
    m = regression_metrics(df)
    test_y, test_hat = y[40:], yhat[40:]
    assert m["test"]["mae"] == pytest.approx(np.mean(np.abs(test_y - test_hat)))
    assert m["test"]["pearson_r"] == pytest.approx(np.corrcoef(test_y, test_hat)[0, 1])
    assert m["train"]["n"] == 40 and m["test"]["p"] < 1e-3


def test_r2_is_reported_both_ways_and_named_for_what_it_is():
    """The paper's R² is the squared Pearson r of the linear fit; scikit-learn's coefficient of determination is a
    different number (negative for a biased prediction). Today's table printed only the latter as "R2"."""
    rng = np.random.default_rng(3)
    y = rng.uniform(10, 30, 50)
    yhat = 0.5 * y + 20 + rng.normal(0, 2, 50)  # correlated but biased: r² high, determination low/negative
    df = pd.DataFrame(
        {"subject_id": [f"s{i}" for i in range(50)], "diagnosis": "AD", "split": "test", "target": y, "ensemble": yhat}
    )
    t = regression_metrics(df, n_boot=300, seed=1)["test"]
    assert t["pearson_r2"] == pytest.approx(np.corrcoef(y, yhat)[0, 1] ** 2)
    assert t["r2_determination"] == pytest.approx(1 - np.sum((y - yhat) ** 2) / np.sum((y - y.mean()) ** 2))
    assert t["pearson_r2"] > 0.5 > t["r2_determination"]
    for key in ("pearson_r2", "r2_determination", "mae"):
        lo, hi = t[f"{key}_ci"]
        assert lo < t[key] < hi
    assert regression_metrics(df, n_boot=300, seed=1) == regression_metrics(df, n_boot=300, seed=1)


def test_r2_cis_of_a_small_test_set_leave_out_resamples_without_variance():
    """Three test subjects, two with the same MMSE: some bootstrap resamples draw only those two, whose R² (either
    kind) is undefined. They are left out of the CI (finite ends, no numpy warning), not counted as -inf."""
    import warnings

    df = pd.DataFrame(
        {
            "subject_id": ["a", "b", "c"],
            "diagnosis": "AD",
            "split": "test",
            "target": [20.0, 20.0, 29.0],
            "ensemble": [21.0, 19.5, 25.0],
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = regression_metrics(df, n_boot=400, seed=0)["test"]
    for key in ("pearson_r2", "r2_determination"):
        lo, hi = t[f"{key}_ci"]
        assert np.isfinite(lo) and np.isfinite(hi) and lo <= hi <= 1, (key, lo, hi)


def test_holm_matches_a_hand_example():
    # sorted p 0.01, 0.02, 0.03, 0.04 -> 4*0.01, 3*0.02, 2*0.03, 1*0.04, then running maximum: .04 .06 .06 .06
    adjusted, reject = holm([0.03, 0.01, 0.04, 0.02], alpha=0.05)
    np.testing.assert_allclose(adjusted, [0.06, 0.04, 0.06, 0.06])
    assert reject.tolist() == [False, True, False, False]
    assert holm([0.2])[0].tolist() == [0.2]


def test_paired_auc_difference_ci_is_narrower_than_unpaired_for_correlated_models():
    """Both models are scored on the same resampled subjects: with strongly correlated scores the paired CI of
    the difference is far narrower than the two marginal CIs suggest."""
    rng = np.random.default_rng(5)
    y = np.tile([1, 0], 40)
    base = y + rng.normal(0, 0.8, 80)
    a, b = base + rng.normal(0, 0.1, 80), base + rng.normal(0, 0.1, 80)
    d = paired_auc_difference(y, a, b, n_boot=500, seed=2)
    assert d["difference"] == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
    assert d["ci_low"] <= d["difference"] <= d["ci_high"]
    _, lo_a, hi_a = bootstrap_auc(y, a, 500, 2)
    assert d["ci_high"] - d["ci_low"] < 0.5 * (hi_a - lo_a)
    assert paired_auc_difference(y, a, b, n_boot=500, seed=2) == d


def test_paired_mae_difference():
    rng = np.random.default_rng(6)
    y = rng.uniform(10, 30, 60)
    good, bad = y + rng.normal(0, 1, 60), y + rng.normal(0, 4, 60)
    d = paired_mae_difference(y, good, bad, n_boot=500, seed=0)
    assert d["difference"] == pytest.approx(np.mean(np.abs(good - y)) - np.mean(np.abs(bad - y)))
    assert d["ci_high"] < 0 and d["p"] < 0.01
    same = paired_mae_difference(y, good, good, n_boot=100)
    assert same["p"] == 1.0 and same["difference"] == 0
