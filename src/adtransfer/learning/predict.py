"""Predictions of one trained CNN for every subject of its cohort, and its FC-layer features (TensorFlow).

Every subject is predicted (train, validation, test, and subjects the model never used such as MCI), so
the same table serves the test metrics, the validation threshold, MMSE train/test R^2 and the t-SNE plots.
Each mosaic is predicted alone; the ensemble is their mean, as in the paper. The workflow's training job calls
`predict_cohort` with the network it has just trained and saved (learning.train.train_model, predictions_out);
`adtransfer predict-cohort` runs it on any saved model.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from adtransfer.errors import InputError
from adtransfer.imaging.cache import per_cache_row
from adtransfer.io import atomic_output
from adtransfer.learning.data import scale
from adtransfer.learning.splits import read_splits, split_membership

log = logging.getLogger("adtransfer")


def model_settings(metrics: str | os.PathLike) -> dict:
    """What prediction needs from training: task, intensity mapping and batch size (from the training job's
    metrics.json)."""
    path = Path(metrics)
    try:
        settings = json.loads(path.read_text())["settings"]
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the model's training settings ({exc})") from None
    return {
        "task": settings["task"],
        "intensity_range": tuple(settings["intensity_range"]),
        "batch_size": int(settings.get("batch_size", 32)),
    }


@dataclass(frozen=True)
class TrainedModel:
    """A trained CNN and the cohort data it was trained on, as the steps that apply it take them (predict-cohort,
    gradcam, occlusion, bundle): model.keras, the training job's metrics.json (its settings), the cohort's cache
    and, where a step reads them, the split table and the model's split column (gradcam finds its test subjects
    in the prediction table; the bundle reads the column from metrics.json)."""

    model: str | os.PathLike
    metrics: str | os.PathLike
    cache: str | os.PathLike
    splits: str | os.PathLike | None = None
    set_column: str | None = None

    def load(self, threads: int = 2):
        """The Keras model (TensorFlow set up for this job) and the settings prediction needs (`model_settings`)."""
        from adtransfer.learning.train import configure_tensorflow

        settings = model_settings(self.metrics)
        configure_tensorflow(0, threads)
        import keras

        return keras.saving.load_model(Path(self.model), compile=False, safe_mode=True), settings

    def membership(self, cache_ids: Sequence[str]) -> np.ndarray:
        """Each cache row's split membership for the model's column: "train", "val", "test" or ""."""
        if self.splits is None or self.set_column is None:
            raise ValueError(f"{self.model}: no split table and column given")
        member = split_membership(read_splits(self.splits), self.set_column)
        return per_cache_row(member, cache_ids, self.cache, f"subjects of {self.splits}")


def feature_probe(net):
    """The network with a second output, its FC-layer features: one pass gives both the prediction and the features."""
    import keras

    from adtransfer.learning.model import FC_FEATURES_LAYER

    return keras.Model(net.input, [net.output, net.get_layer(FC_FEATURES_LAYER).output])


def predict_cohort(
    trained: TrainedModel,
    out_tsv: str | os.PathLike,
    out_features: str | os.PathLike,
    threads: int = 2,
    chunk_subjects: int = 64,
    probe=None,
) -> pd.DataFrame:
    """Write the prediction table and the FC features of every subject of the cache. `probe`: the `feature_probe`
    of the network just trained and saved as trained.model (the training job, which so neither loads the model back
    nor traces prediction again); without it the saved model is loaded."""
    from adtransfer.learning.model import FC_FEATURES_LAYER
    from adtransfer.results.evaluate import MOSAIC_COLUMNS, write_predictions  # scipy, sklearn: not for the bundle job

    if probe is None:
        net, settings = trained.load(threads)
        probe = feature_probe(net)
    else:
        settings = model_settings(trained.metrics)

    with h5py.File(trained.cache, "r") as h5:
        ids = h5["subject_id"].asstr()[()]
        split = trained.membership(ids)  # before the predictions: a bad split table fails fast
        n = len(ids)
        outputs, feats = [], []
        for start in range(0, n, chunk_subjects):  # bounded memory at any cohort and mosaic size
            mos = h5["mosaics"][start : start + chunk_subjects]
            size = mos.shape[-1]
            x = scale(mos.reshape(-1, size, size, 1), settings["intensity_range"])
            out, f = probe.predict(x, batch_size=settings["batch_size"], verbose=0)
            out = np.asarray(out)
            outputs.append(out[:, 1] if settings["task"] == "classify" else out.reshape(-1))
            feats.append(np.asarray(f, np.float32))
        diagnosis = h5["diagnosis"].asstr()[()]
        target = h5["label"][()].astype(float) if settings["task"] == "classify" else h5["mmse"][()].astype(float)
    scores = np.concatenate(outputs).reshape(n, 3)
    features = np.concatenate(feats).reshape(n, 3, -1)

    pred = pd.DataFrame(
        {
            "subject_id": ids,
            "diagnosis": diagnosis,
            "split": split,
            "target": target,
        }
    )
    for i, col in enumerate(MOSAIC_COLUMNS):
        pred[col] = scores[:, i]
    pred["ensemble"] = scores.mean(axis=1)
    write_predictions(pred, out_tsv)
    with atomic_output(out_features) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("features", data=features)
        h5.create_dataset("subject_id", data=ids.astype("S"))
        h5.create_dataset("diagnosis", data=diagnosis.astype("S"))
        h5.create_dataset("split", data=pred["split"].to_numpy().astype("S"))
        h5.attrs["layer"] = FC_FEATURES_LAYER
    log.info(
        "predicted %d subjects (%s) with %s",
        n,
        ", ".join(f"{k or 'unused'} {v}" for k, v in pred["split"].value_counts().items()),
        trained.model,
    )
    return pred
