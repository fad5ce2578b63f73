"""Training end to end on a tiny cached cohort: outputs, determinism, resume after a kill, fine-tuning, MMSE."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

SETTINGS = {
    "task": "classify",
    "init": "random",
    "learning_rate": 1e-3,
    "batch_size": 8,
    "epochs": 2,
    "patience": 5,
    "bn_momentum": 0.9,
    "fc_units": 16,
    "seed": 3,
    "intensity_range": [0, 3],
}


def train_cmd(tiny_cache, out: Path, column="n12", settings=None, splits=None, pretrained=None) -> list[str]:
    """The command training into folder `out` as the workflow lays a model out: model.keras, history.tsv,
    metrics.json, and the resume state in work/."""
    cmd = [
        sys.executable,
        "-m",
        "adtransfer",
        "train",
        "--cache",
        str(tiny_cache["cache"]),
        "--splits",
        str(splits or tiny_cache["splits"]),
        "--set",
        column,
        "--model-out",
        str(out / "model.keras"),
        "--history-out",
        str(out / "history.tsv"),
        "--metrics-out",
        str(out / "metrics.json"),
        "--work-dir",
        str(out / "work"),
        "--settings",
        json.dumps(settings or SETTINGS),
        "--threads",
        "2",
    ]
    return cmd + (["--pretrained", str(pretrained)] if pretrained else [])


def train(tiny_cache, out: Path, column="n12", pretrained=None, **overrides) -> subprocess.CompletedProcess:
    cmd = train_cmd(tiny_cache, out, column, {**SETTINGS, **overrides}, pretrained=pretrained)
    proc = subprocess.run(
        cmd + ["--log", str(out.parent / f"{out.name}.log")], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def trained(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "fdg_n12"
    proc = train(tiny_cache, out)
    (out.parent / "console.txt").write_text(proc.stdout + proc.stderr)
    return out


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


def test_console_shows_progress_not_library_noise(trained):
    """TensorFlow's C++ start-up lines and Python warnings go to the step's log; the console keeps our messages
    and one Keras line per epoch."""
    console = (trained.parent / "console.txt").read_text()
    assert re.search(r"^training .* on \d+ subjects", console, re.M) and re.search(r"^trained ", console, re.M)
    assert len(re.findall(r"^Epoch \d+/2$", console, re.M)) == 2
    for noise in ("absl::InitializeLog", "oneDNN", "cuInit", "cuda", "NodeDef", "Warning", "ran out of data"):
        assert noise not in console, (noise, console)


def test_same_config_same_results(trained, tiny_cache, tmp_path):
    again = tmp_path / "fdg_n12"
    train(tiny_cache, again)
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (trained, again))
    for key in ("val_auc_ensemble", "val_auc_mosaic", "val_accuracy_ensemble"):
        assert first[key] == second[key]
    h1, h2 = (pd.read_csv(d / "history.tsv", sep="\t") for d in (trained, again))
    pd.testing.assert_frame_equal(h1, h2)


def test_finetuning_and_mmse(trained, tiny_cache, tmp_path):
    ft = tmp_path / "ecd_from_fdg"
    train(tiny_cache, ft, pretrained=trained / "model.keras", fc_units=8, epochs=1)
    metrics = json.loads((ft / "metrics.json").read_text())
    assert metrics["pretrained"].endswith("model.keras")
    mmse = tmp_path / "mmse"
    train(tiny_cache, mmse, column="mmse_set", task="mmse", epochs=1)
    m = json.loads((mmse / "metrics.json").read_text())
    assert 0 <= m["val_mae_ensemble"] <= 30
    assert "mae" in pd.read_csv(mmse / "history.tsv", sep="\t").columns


# Chosen (measured on the tiny cohort) so that the best validation loss comes early and early stopping acts later:
# the kill falls after the best epoch and before the stop, where a restarted EarlyStopping would forget both.
RESUME = {**SETTINGS, "epochs": 8, "patience": 2, "early_stopping_start": 0}


def _weights(path: Path) -> list:
    import keras

    return keras.saving.load_model(path, compile=False).get_weights()


def test_killed_run_resumes_exactly(tiny_cache, tmp_path):
    """A job killed after its best epoch and before early stopping acts, then rerun, gives the uninterrupted run's
    history, metrics (timings apart) and final weights: EarlyStopping's best, wait counter and best weights are
    rebuilt on resume. The kill leaves no half-written output."""
    straight = tmp_path / "straight"
    done = subprocess.run(train_cmd(tiny_cache, straight, settings=RESUME), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = pd.read_csv(straight / "history.tsv", sep="\t")
    expected_metrics = json.loads((straight / "metrics.json").read_text())
    best, stopped = int(expected["val_loss"].idxmin()), len(expected) - 1
    # the test's premise: early stopping acted (patience epochs after the best one), and the kill point (the best
    # epoch and one without improvement finished) lies between the best epoch and the stop
    kill_after = best + 2
    trajectory = expected[["epoch", "val_loss"]].to_string()
    assert stopped < RESUME["epochs"] - 1 and stopped == best + RESUME["patience"] >= kill_after, trajectory

    out = tmp_path / "resume"
    cmd = train_cmd(tiny_cache, out, settings=RESUME)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    history = out / "work" / "history.tsv"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if history.exists() and len(history.read_text().strip().splitlines()) >= 1 + kill_after:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "training finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # nothing half-written: no output, no temporary file beside the outputs; only the work folder
    assert [p.name for p in out.iterdir()] == ["work"]

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    epochs_shown = [int(m) for m in re.findall(r"Epoch (\d+)/8", done.stdout + done.stderr)]
    assert epochs_shown and min(epochs_shown) > kill_after - 1, epochs_shown  # resumed, not restarted

    final = pd.read_csv(out / "history.tsv", sep="\t")
    pd.testing.assert_frame_equal(final, expected, rtol=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    for m in (metrics, expected_metrics):
        m.pop("seconds")
    assert metrics.keys() == expected_metrics.keys()
    for key, value in expected_metrics.items():
        assert metrics[key] == (pytest.approx(value, rel=1e-5) if isinstance(value, float) else value), key
    assert metrics["best_epoch"] == best and metrics["stopped_epoch"] == stopped, trajectory
    for a, b in zip(_weights(out / "model.keras"), _weights(straight / "model.keras"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not (out / "work").exists()


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
