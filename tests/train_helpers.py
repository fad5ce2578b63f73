"""Training tiny models on the `tiny_cache` cohort from tests, as the workflow's train step runs them (a fresh
`python -m adtransfer train` process laying a model folder out: model.keras, history.tsv, metrics.json, work/;
with `predictions`, also the cohort's predictions and features beside the folder, as the workflow's train job
writes them).

Used by test_train and test_resume; the session fixtures built on these (conftest.py: `tiny_classifier`,
`tiny_mmse`) are shared by test_train and test_predict_scans, so each tiny model is trained once per test run
(conftest.built_once, also across pytest-xdist workers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def predictions_of(out: Path) -> tuple[Path, Path]:
    """Where a training run into folder `out` writes the cohort's prediction table and features (`predictions`):
    beside the folder, named after it (the folder itself is copied whole by tests that bundle it)."""
    return out.parent / f"{out.name}.predictions.tsv", out.parent / f"{out.name}.features.h5"


def train_cmd(
    tiny_cache,
    out: Path,
    column="n12",
    settings=None,
    splits=None,
    pretrained=None,
    predictions=False,
    backup_every: float | None = None,
) -> list[str]:
    """The command training into folder `out` as the workflow lays a model out: model.keras, history.tsv,
    metrics.json, and the resume state in work/; with `predictions`, the files of `predictions_of(out)` too;
    `backup_every`: seconds between the resume backup's commits (None: the command's default)."""
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
    if predictions:
        table, features = predictions_of(out)
        cmd += ["--predictions-out", str(table), "--features-out", str(features)]
    if backup_every is not None:
        cmd += ["--backup-every", str(backup_every)]
    return cmd + (["--pretrained", str(pretrained)] if pretrained else [])


def train(
    tiny_cache, out: Path, column="n12", pretrained=None, predictions=False, **overrides
) -> subprocess.CompletedProcess:
    """Train with SETTINGS (changed by `overrides`) into `out`, logging to `out`'s sibling `<name>.log`; with
    `predictions`, also write the cohort's predictions and features (`predictions_of(out)`)."""
    cmd = train_cmd(tiny_cache, out, column, {**SETTINGS, **overrides}, pretrained=pretrained, predictions=predictions)
    proc = subprocess.run(
        cmd + ["--log", str(out.parent / f"{out.name}.log")], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc
