"""Evaluation: the paper's metrics from prediction tables, bootstrap CIs and DeLong tests. No TensorFlow.

A prediction table (results/predictions/{model}.tsv) has one row per subject of the cohort:
    subject_id, diagnosis, split    train | val | test | "" (not used by this model)
    target                          AD 1 / NC 0 (classification; MCI -1) or MMSE (regression)
    mosaic_1 .. mosaic_3            each mosaic's output (P(AD) or MMSE); empty for the ROI baselines
    ensemble                        the mean of the three: the paper's prediction for the subject
CNN and ROI-baseline tables share this format, so every number of Tables 3-4 comes from the same functions.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import (
    confusion_matrix,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    roc_curve,
)

from adtransfer.errors import InputError
from adtransfer.io import atomic_output

MOSAIC_COLUMNS = ["mosaic_1", "mosaic_2", "mosaic_3"]
PREDICTION_COLUMNS = ["subject_id", "diagnosis", "split", "target", *MOSAIC_COLUMNS, "ensemble"]


# --- prediction tables ---------------------------------------------------------------------------------


def write_predictions(df: pd.DataFrame, path: str | os.PathLike) -> None:
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"prediction table lacks {missing}")
    with atomic_output(path) as tmp:
        df[PREDICTION_COLUMNS].to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    df = pd.read_csv(
        path,
        sep="\t",
        dtype={"subject_id": str, "split": str},
        keep_default_na=False,
        na_values={c: [""] for c in ["target", *MOSAIC_COLUMNS, "ensemble"]},
    )
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{path}: not a prediction table (missing columns {', '.join(missing)})")
    return df


def subset(pred: pd.DataFrame, split: str, classify: bool) -> pd.DataFrame:
    """The rows of one split that can be scored (AD/NC for classification, known MMSE for regression)."""
    rows = pred[pred["split"] == split]
    rows = rows[rows["target"] >= 0] if classify else rows[np.isfinite(rows["target"])]
    return rows


# --- classification ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """A proportion with its counts, printed as the paper prints it: 93.2 (110/118)."""

    num: int
    den: int

    @property
    def value(self) -> float:
        return self.num / self.den if self.den else float("nan")

    def __str__(self) -> str:
        return f"{100 * self.value:.1f} ({self.num}/{self.den})"


def threshold_metrics(y: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict:
    """Sensitivity, specificity, precision, accuracy and F1 of `score >= threshold` calling AD (label 1)."""
    y = np.asarray(y, dtype=int)
    pred = (np.asarray(score) >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    f1_den = 2 * tp + fp + fn
    return {
        "threshold": float(threshold),
        "sensitivity": Rate(int(tp), int(tp + fn)),
        "specificity": Rate(int(tn), int(tn + fp)),
        "precision": Rate(int(tp), int(tp + fp)),
        "accuracy": Rate(int(tp + tn), int(len(y))),
        "f1": 2 * tp / f1_den if f1_den else float("nan"),
    }


def youden_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """The threshold maximizing sensitivity + specificity - 1 (chosen on validation, applied to test)."""
    fpr, tpr, thresholds = roc_curve(y, score)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))  # roc_curve's first threshold is +inf


def auc_rows(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of `scores` (B, n) against one label vector, by the Mann-Whitney rank identity
    (ties count 1/2, as in roc_auc_score): vectorized over bootstrap resamples, where a loop of roc_auc_score
    calls costs seconds per model."""
    y = np.asarray(y, dtype=bool)
    ranks = stats.rankdata(np.atleast_2d(scores), axis=1)
    m, n = int(y.sum()), int((~y).sum())
    return (ranks[:, y].sum(axis=1) - m * (m + 1) / 2) / (m * n)


def stratified_resamples(y: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap resamples of subject indices (n_boot, n) drawn per class, with replacement, keeping the class
    counts (every resample has both classes and an AUC), and the labels of each resample's columns."""
    y = np.asarray(y, dtype=int)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    idx = np.concatenate([rng.choice(pos, (n_boot, len(pos))), rng.choice(neg, (n_boot, len(neg)))], axis=1)
    return idx, np.r_[np.ones(len(pos)), np.zeros(len(neg))]


def percentile_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    alpha = (1 - level) / 2
    lo, hi = np.nanquantile(values, [alpha, 1 - alpha])
    return float(lo), float(hi)


def bootstrap_auc(
    y: np.ndarray, score: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """ROC AUC and its percentile CI from stratified bootstrap resamples of the subjects."""
    y, score = np.asarray(y, dtype=int), np.asarray(score, dtype=float)
    auc = roc_auc_score(y, score)
    idx, labels = stratified_resamples(y, n_boot, seed)
    return (float(auc), *percentile_ci(auc_rows(labels, score[idx]), level))


def paired_auc_difference(
    y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """AUC(a) - AUC(b) on the same subjects with its paired bootstrap CI: each resample draws the subjects once
    (stratified, seeded) and scores both models on them."""
    y = np.asarray(y, dtype=int)
    a, b = np.asarray(score_a, dtype=float), np.asarray(score_b, dtype=float)
    idx, labels = stratified_resamples(y, n_boot, seed)
    diffs = auc_rows(labels, a[idx]) - auc_rows(labels, b[idx])
    lo, hi = percentile_ci(diffs, level)
    return {"difference": float(roc_auc_score(y, a) - roc_auc_score(y, b)), "ci_low": lo, "ci_high": hi}


def paired_mae_difference(
    y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """MAE(a) - MAE(b) on the same subjects: paired bootstrap CI (the same resampled subjects for both) and the
    Wilcoxon signed-rank p of the per-subject absolute errors (two-sided; 1 when they never differ)."""
    y = np.asarray(y, dtype=float)
    err_a, err_b = np.abs(np.asarray(pred_a, float) - y), np.abs(np.asarray(pred_b, float) - y)
    idx = np.random.default_rng(seed).integers(0, len(y), (n_boot, len(y)))
    lo, hi = percentile_ci(err_a[idx].mean(axis=1) - err_b[idx].mean(axis=1), level)
    p = float(stats.wilcoxon(err_a, err_b).pvalue) if np.any(err_a != err_b) else 1.0
    return {
        "mae_a": float(err_a.mean()),
        "mae_b": float(err_b.mean()),
        "difference": float(err_a.mean() - err_b.mean()),
        "ci_low": lo,
        "ci_high": hi,
        "p": p,
    }


def holm(p_values: list[float] | np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down adjustment of one family of p values: (adjusted p, rejected at family-wise alpha)."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p, np.zeros(0, bool)
    reject, adjusted, _, _ = multipletests(p, alpha=alpha, method="holm")
    return adjusted, reject


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: for each positive, the share of negatives it outranks (ties 1/2),
    and for each negative, the share of positives that outrank it."""
    diff = pos[:, None] - neg[None, :]
    psi = (diff > 0) + 0.5 * (diff == 0)
    return psi.mean(axis=1), psi.mean(axis=0)


def delong_test(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> dict:
    """DeLong, DeLong & Clarke-Pearson (1988): two correlated ROC AUCs on the same subjects.

    Returns both AUCs, the difference, its standard error, z and the two-sided p value.
    """
    y = np.asarray(y, dtype=int)
    if set(np.unique(y)) != {0, 1}:
        raise ValueError("DeLong test needs both classes")
    v10, v01 = [], []
    for s in (np.asarray(score_a, float), np.asarray(score_b, float)):
        a, b = _placements(s[y == 1], s[y == 0])
        v10.append(a)
        v01.append(b)
    v10, v01 = np.array(v10), np.array(v01)  # (2, m) and (2, n)
    aucs = v10.mean(axis=1)
    cov = np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = aucs[0] - aucs[1]
    if var <= 1e-15:  # identical rankings: no difference to test
        z, p = 0.0, 1.0
    else:
        z = diff / np.sqrt(var)
        p = 2 * stats.norm.sf(abs(z))
    return {
        "auc_a": float(aucs[0]),
        "auc_b": float(aucs[1]),
        "difference": float(diff),
        "se": float(np.sqrt(max(var, 0.0))),
        "z": float(z),
        "p": float(p),
    }


def classification_metrics(pred: pd.DataFrame, n_boot: int = 1000, seed: int = 0, threshold: float | str = 0.5) -> dict:
    """Test-set metrics of one classifier: counts at the threshold (0.5, or "youden" chosen on validation)
    and at Youden's validation threshold, AUC with bootstrap CI for the ensemble and each mosaic."""
    test = subset(pred, "test", classify=True)
    if test.empty or test["target"].nunique() < 2:
        raise InputError("the test set needs both AD and NC subjects to compute AUC")
    y = test["target"].to_numpy(int)
    out: dict = {"n_test": int(len(y)), "n_ad": int(y.sum()), "n_nc": int((y == 0).sum())}
    val = subset(pred, "val", classify=True)
    youden = youden_threshold(val["target"].to_numpy(int), val["ensemble"]) if val["target"].nunique() == 2 else 0.5
    out["youden_threshold"] = youden
    chosen = youden if threshold == "youden" else float(threshold)
    for name, thr in (("at_threshold", chosen), ("at_youden", youden)):
        m = threshold_metrics(y, test["ensemble"], thr)
        out[name] = {
            k: (v.__dict__ | {"value": v.value, "text": str(v)} if isinstance(v, Rate) else v) for k, v in m.items()
        }
    auc, lo, hi = bootstrap_auc(y, test["ensemble"].to_numpy(), n_boot, seed)
    out["auc"] = {"ensemble": {"auc": auc, "ci_low": lo, "ci_high": hi}}
    for col in MOSAIC_COLUMNS:
        if test[col].notna().all():
            a, lo, hi = bootstrap_auc(y, test[col].to_numpy(), n_boot, seed)
            out["auc"][col] = {"auc": a, "ci_low": lo, "ci_high": hi}
    out["n_boot"] = n_boot
    return out


# --- regression ----------------------------------------------------------------------------------------


def _r2_rows(y: np.ndarray, yhat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of (B, n) resamples: squared Pearson r (the paper's R²) and the coefficient of determination. A
    resample whose true scores are all equal (likely in a small test set) has neither: NaN, left out of the CI
    (percentile_ci), rather than the -inf of SS_res / 0 that made the CI's lower end -inf or NaN."""
    yc = y - y.mean(axis=1, keepdims=True)
    pc = yhat - yhat.mean(axis=1, keepdims=True)
    ss_tot = (yc**2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (yc * pc).sum(axis=1) / np.sqrt(ss_tot * (pc**2).sum(axis=1))
        determination = np.where(ss_tot > 0, 1 - ((y - yhat) ** 2).sum(axis=1) / ss_tot, np.nan)
    return r**2, determination


def regression_metrics(pred: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """MMSE per split (ensemble prediction): the paper's R² (squared Pearson r of the linear fit of predicted on
    true, with the Pearson test's p), scikit-learn's coefficient of determination (1 - SS_res/SS_tot, negative
    when worse than predicting the mean), MAE; each with a percentile CI from bootstrap resamples of the
    subjects (seeded)."""
    out = {}
    for split in ("train", "val", "test"):
        rows = subset(pred, split, classify=False)
        if len(rows) < 3:
            continue
        y, yhat = rows["target"].to_numpy(float), rows["ensemble"].to_numpy(float)
        r, p = stats.pearsonr(y, yhat) if np.std(yhat) > 0 else (float("nan"), float("nan"))
        idx = np.random.default_rng(seed).integers(0, len(y), (n_boot, len(y)))
        r2_boot, det_boot = _r2_rows(y[idx], yhat[idx])
        mae_boot = np.abs(y[idx] - yhat[idx]).mean(axis=1)
        out[split] = {
            "n": int(len(y)),
            "pearson_r2": float(r**2),
            "pearson_r2_ci": list(percentile_ci(r2_boot)),
            "r2_determination": float(r2_score(y, yhat)),
            "r2_determination_ci": list(percentile_ci(det_boot)),
            "pearson_r": float(r),
            "p": float(p),
            "mae": float(mean_absolute_error(y, yhat)),
            "mae_ci": list(percentile_ci(mae_boot)),
        }
    out["n_boot"] = n_boot
    return out


def evaluate(pred: pd.DataFrame, task: str, n_boot: int = 1000, seed: int = 0, threshold: float | str = 0.5) -> dict:
    if task == "classify":
        return {"task": task, **classification_metrics(pred, n_boot, seed, threshold)}
    return {"task": task, **regression_metrics(pred, n_boot, seed)}


def write_json(data: dict, path: str | os.PathLike) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
