"""Training end to end on a tiny cached cohort (slow): outputs, fine-tuning, MMSE, the cohort's predictions; refused
settings and training sets, and the job fingerprint. Resume after a kill, and determinism (a second process with the
same settings gives the same history, metrics and weights): test_resume.py.

The slow tests share their training runs: the classifier and the MMSE model are session fixtures (conftest.py,
also used by test_predict_scans)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from train_helpers import SETTINGS, predictions_of, train_cmd


@pytest.fixture(scope="module")
def trained(tiny_classifier):
    return tiny_classifier


@pytest.mark.slow
def test_training_writes_model_history_metrics(trained, tiny_cache):
    assert (trained / "model.keras").stat().st_size > 1_000_000
    history = pd.read_csv(trained / "history.tsv", sep="\t")
    assert history["epoch"].tolist() == [0, 1]
    assert {"loss", "val_loss", "auc", "val_auc"} <= set(history.columns)
    metrics = json.loads((trained / "metrics.json").read_text())
    splits = pd.read_csv(tiny_cache["splits"], sep="\t")
    assert metrics["n_train"] == int((splits["n12"] == "train").sum())
    assert metrics["n_val"] == int((splits["n12"] == "val").sum())
    assert 0.0 <= metrics["val_auc_ensemble"] <= 1.0
    assert not (trained / "work").exists()  # backups and checkpoints are removed after success
    assert "training" in (trained.parent / "fdg_n12.log").read_text()


@pytest.mark.slow
def test_console_shows_progress_not_library_noise(trained):
    """TensorFlow's C++ start-up lines and Python warnings go to the step's log; the console keeps our messages
    and one Keras line per epoch."""
    console = (trained.parent / "console.txt").read_text()
    assert re.search(r"^training .* on \d+ subjects", console, re.M) and re.search(r"^trained ", console, re.M)
    assert len(re.findall(r"^Epoch \d+/2$", console, re.M)) == 2
    for noise in ("absl::InitializeLog", "oneDNN", "cuInit", "cuda", "NodeDef", "Warning", "ran out of data"):
        assert noise not in console, (noise, console)


@pytest.mark.slow
def test_mmse_model_is_finetuned_from_the_classifier(trained, tiny_mmse):
    """The MMSE regressor (one epoch on mmse_set, its head replacing the classifier's: conftest.tiny_mmse) records
    the model it started from. (A classifier fine-tuned from a classifier: the workflow's ECD models, whose parents
    test_workflow_full checks; the weights a fine-tune keeps: test_model.)"""
    m = json.loads((tiny_mmse / "metrics.json").read_text())
    assert m["pretrained"] == str(trained / "model.keras"), m["pretrained"]
    assert m["settings"]["task"] == "mmse" and m["set"] == "mmse_set"
    assert 0 <= m["val_mae_ensemble"] <= 30
    assert "mae" in pd.read_csv(tiny_mmse / "history.tsv", sep="\t").columns


@pytest.mark.slow
@pytest.mark.parametrize("task", ["classify", "mmse"])
def test_training_writes_the_predictions_of_predict_cohort(task, tiny_classifier, tiny_mmse, tiny_cache, tmp_path):
    """The workflow's train job writes the cohort's predictions and features (--predictions-out, --features-out):
    the same rows and numbers as `adtransfer predict-cohort` on the saved model, for a classifier trained from
    scratch and for an MMSE model fine-tuned from it."""
    import h5py

    from adtransfer.learning.splits import read_splits, split_membership
    from adtransfer.results.evaluate import read_predictions

    model, column = (tiny_classifier, "n12") if task == "classify" else (tiny_mmse, "mmse_set")
    written, written_features = predictions_of(model)
    table, features = tmp_path / "p.tsv", tmp_path / "f.h5"
    args = ["--model", model / "model.keras", "--metrics", model / "metrics.json", "--cache", tiny_cache["cache"]]
    args += ["--splits", tiny_cache["splits"], "--set", column, "--out", table, "--features", features]
    proc = subprocess.run(
        [sys.executable, "-m", "adtransfer", "predict-cohort", *map(str, args), "--threads", "2"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    ours, theirs = (read_predictions(p) for p in (written, table))
    with h5py.File(tiny_cache["cache"], "r") as h5:
        cache_ids = h5["subject_id"].asstr()[()].tolist()
    assert ours["subject_id"].tolist() == cache_ids  # every subject of the cohort, in cache order
    member = split_membership(read_splits(tiny_cache["splits"]), column)
    assert ours["split"].tolist() == member.loc[cache_ids].tolist()
    assert {"train", "val", "test"} <= set(ours["split"])
    # the table holds 6 significant digits (write_predictions); the features file full float32
    pd.testing.assert_frame_equal(ours, theirs, check_exact=False, rtol=1e-5, atol=1e-6)
    with h5py.File(written_features, "r") as a, h5py.File(features, "r") as b:
        assert set(a) == set(b) and dict(a.attrs) == dict(b.attrs)
        np.testing.assert_allclose(a["features"][()], b["features"][()], rtol=0, atol=1e-6)
        for key in ("subject_id", "diagnosis", "split"):
            assert a[key][()].tolist() == b[key][()].tolist(), key
    assert "predicted" in (model.parent / f"{model.name}.log").read_text()


@pytest.mark.slow
def test_single_class_training_set_is_refused(tiny_cache, tmp_path):
    splits = pd.read_csv(tiny_cache["splits"], sep="\t", keep_default_na=False)
    splits.loc[(splits["n12"] == "train") & (splits["diagnosis"] == "NC"), "n12"] = ""
    bad = tmp_path / "splits.tsv"
    splits.to_csv(bad, sep="\t", index=False)
    cmd = train_cmd(tiny_cache, tmp_path / "m", splits=bad)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "single class" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_training_setting_is_refused():
    from adtransfer.errors import InputError
    from adtransfer.learning.train import TrainSettings

    assert TrainSettings.from_json(json.dumps(SETTINGS)).intensity_range == (0, 3)
    with pytest.raises(InputError, match="learnig_rate"):
        TrainSettings.from_json(json.dumps({**SETTINGS, "learnig_rate": 1e-3}))


def test_job_fingerprint_follows_settings_splits_and_parent(tmp_path):
    from adtransfer.learning.train import TrainSettings, job_fingerprint

    splits, cache, parent = tmp_path / "s.tsv", tmp_path / "c.h5", tmp_path / "p.keras"
    for f in (splits, cache, parent):
        f.write_text("x")
    out = tmp_path / "m.keras"
    base = job_fingerprint(TrainSettings(), "n8", str(splits), str(cache), str(parent), out)
    assert base == job_fingerprint(TrainSettings(threads=7), "n8", str(splits), str(cache), str(parent), out)
    assert base != job_fingerprint(TrainSettings(epochs=3), "n8", str(splits), str(cache), str(parent), out)
    assert base != job_fingerprint(TrainSettings(), "nall", str(splits), str(cache), str(parent), out)
    assert base != job_fingerprint(TrainSettings(), "n8", str(splits), str(cache), None, out)
    splits.write_text("y")
    assert base != job_fingerprint(TrainSettings(), "n8", str(splits), str(cache), str(parent), out)


def test_settings_left_open_come_from_the_cache_modality():
    """A hand-run job on an ECD cache without fc_units/intensity_range trains with ECD's, never FDG's mapping."""
    from adtransfer.learning.train import TrainSettings

    ecd = TrainSettings.from_json('{"task": "classify"}')
    ecd.for_modality("ecd_spect")
    assert ecd.fc_units == 128 and ecd.intensity_range == (-4.0, 4.0)
    given = TrainSettings.from_json('{"fc_units": 16, "intensity_range": [0, 2]}')
    given.for_modality("ecd_spect")
    assert given.fc_units == 16 and given.intensity_range == (0, 2)
