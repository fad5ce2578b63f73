"""The linear ROI baseline beside every CNN: regional mean uptake -> standardized L2 logistic (or ridge) regression.

Trained on exactly the subjects the matching CNN trains on (its split column == "train"), never on validation
or test subjects; the penalty is chosen by cross-validation inside that training set. The fitted model is
saved as JSON (no pickle): scaler mean/scale, coefficients, intercept and region names, and every prediction
is made from that JSON, so what is saved is what was evaluated. No TensorFlow.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from adtransfer.errors import InputError
from adtransfer.imaging.cache import per_cache_row, read_cache
from adtransfer.io import write_text
from adtransfer.learning.splits import read_splits, split_membership
from adtransfer.results.evaluate import MOSAIC_COLUMNS, write_predictions

MMSE_RANGE = (0.0, 30.0)


def fit(x: np.ndarray, y: np.ndarray, task: str, seed: int = 0, folds: int = 5):
    """A scikit-learn pipeline (StandardScaler + LogisticRegressionCV / RidgeCV) fitted on the training set."""
    if task == "classify":
        n_min = int(np.bincount(y.astype(int)).min())
        cv = StratifiedKFold(min(folds, n_min), shuffle=True, random_state=seed)
        model = LogisticRegressionCV(Cs=np.logspace(-4, 2, 13), cv=cv, scoring="roc_auc", max_iter=5000)
    else:
        cv = KFold(min(folds, len(y)), shuffle=True, random_state=seed)
        model = RidgeCV(alphas=np.logspace(-1, 5, 13), cv=cv)
    with warnings.catch_warnings():  # scikit-learn 1.8+ announces parameter changes that do not affect L2 fits
        warnings.simplefilter("ignore", FutureWarning)
        return make_pipeline(StandardScaler(), model).fit(x, y)


def to_json(pipe, regions: list[str], task: str, extra: dict | None = None) -> dict:
    scaler, model = pipe[0], pipe[-1]
    coef = np.ravel(model.coef_)
    return {
        "kind": "roi_logistic" if task == "classify" else "roi_ridge",
        "task": task,
        "regions": list(regions),
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        "coef": coef.tolist(),  # per standardized feature: comparable across regions
        "intercept": float(np.ravel(model.intercept_)[0]),
        "penalty": float(model.C_[0]) if task == "classify" else float(model.alpha_),
        **(extra or {}),
    }


def predict(params: dict, x: np.ndarray) -> np.ndarray:
    """P(AD) or MMSE from the saved JSON parameters."""
    z = (np.asarray(x, np.float64) - np.asarray(params["mean"])) / np.asarray(params["scale"])
    score = z @ np.asarray(params["coef"]) + params["intercept"]
    if params["task"] == "classify":
        return 1.0 / (1.0 + np.exp(-score))
    return np.clip(score, *MMSE_RANGE)


def train_baseline(
    cache: str | os.PathLike,
    splits_path: str | os.PathLike,
    set_column: str,
    task: str,
    out_json: str | os.PathLike,
    out_tsv: str | os.PathLike,
    seed: int = 0,
) -> dict:
    """Fit on the split's training subjects, save the JSON, predict every subject from the JSON."""
    data = read_cache(cache, with_mosaics=False)
    member = split_membership(read_splits(splits_path), set_column)
    ids = np.asarray(data["subject_id"])
    split = per_cache_row(member, ids, cache, f"subjects of {splits_path}")
    target = np.asarray(data["label"] if task == "classify" else data["mmse"], dtype=float)
    train = split == "train"
    if task == "classify" and np.any(target[train] < 0):
        raise InputError(f"{splits_path}: {set_column} puts MCI subjects in a classification training set")
    if train.sum() < 4 or (task == "classify" and len(np.unique(target[train])) < 2):
        raise InputError(f"{splits_path}: {set_column} has too few training subjects for the ROI baseline")
    x = np.asarray(data["roi"], np.float64)
    pipe = fit(x[train], target[train], task, seed)
    params = to_json(
        pipe,
        data["regions"],
        task,
        {"set": set_column, "n_train": int(train.sum()), "train_subjects": sorted(ids[train].tolist())},
    )
    write_text(out_json, json.dumps(params, indent=1) + "\n")
    pred = pd.DataFrame({"subject_id": ids, "diagnosis": data["diagnosis"], "split": split, "target": target})
    for col in MOSAIC_COLUMNS:  # one feature vector per subject: no per-mosaic outputs
        pred[col] = np.nan
    pred["ensemble"] = predict(params, x)
    write_predictions(pred, out_tsv)
    return params


def load(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())


def ranked_regions(params: dict) -> pd.DataFrame:
    """Regions in the direction of disease first: most negative coefficient for AD classification (lower
    uptake -> AD), most positive for MMSE (lower uptake -> lower MMSE)."""
    df = pd.DataFrame({"region": params["regions"], "coefficient": params["coef"]})
    descending = params.get("task") == "mmse"
    return df.sort_values("coefficient", ascending=not descending, kind="stable").reset_index(drop=True)


def explain_baseline(
    params: dict,
    crop_grid,
    summary_json: str | os.PathLike,
    table_tsv: str | os.PathLike,
    nifti: str | os.PathLike,
    png: str | os.PathLike,
    truth_json: str | os.PathLike | None = None,
) -> dict:
    """The baseline's explanation: standardized coefficients painted on their regions (NIfTI on the MNI grid,
    PNG over the grey-matter template), a ranked region table, and the top-10 check against a known pattern."""
    import nibabel as nib

    from adtransfer.imaging.grid import crop, uncrop
    from adtransfer.imaging.roi import atlas_in
    from adtransfer.imaging.templates import MNI_2MM, load_templates
    from adtransfer.io import atomic_output, save_nifti
    from adtransfer.results.figures import brain_map_figure
    from adtransfer.results.truth import truth_scores

    labels, table = atlas_in(crop_grid)
    coef = dict(zip(params["regions"], params["coef"], strict=True))
    lut = np.zeros(int(labels.max()) + 1, np.float32)
    for idx, name in zip(table["index"], table["name"], strict=True):
        lut[idx] = coef.get(name, 0.0)
    crop_map = lut[labels]
    save_nifti(nib.Nifti1Image(uncrop(crop_map, MNI_2MM, crop_grid), MNI_2MM.affine), nifti)
    ranked = ranked_regions(params)
    with atomic_output(table_tsv) as tmp:
        ranked.to_csv(tmp, sep="\t", index=False, float_format="%.4g")
    gm = crop(load_templates().gm, MNI_2MM, crop_grid)
    toward = "blue: lower uptake -> AD" if params["task"] == "classify" else "red: lower uptake -> lower MMSE"
    brain_map_figure(
        crop_map,
        gm,
        png,
        f"{params['kind']} baseline: standardized coefficients ({toward})",
        cmap="RdBu_r",
        symmetric=True,
        cbar_label="coefficient",
    )
    summary = {"kind": params["kind"], "n_regions": len(params["regions"]), "penalty": params["penalty"]}
    if truth_json:
        # scored as every explanation is (truth.truth_scores): the map in the direction of disease
        toward_disease = crop_map if params["task"] == "mmse" else -crop_map
        scores = truth_scores(toward_disease, ranked["region"].tolist(), truth_json, crop_grid)
        summary["ground_truth"] = {**scores["top_regions"], **scores}
    write_text(summary_json, json.dumps(summary, indent=2) + "\n")
    return summary
