"""The whole workflow on a tiny config, training included: what reruns after a change, and an interrupted run."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from workflow_helpers import (
    job_counts,
    job_environment,
    snakemake,
    snakemake_command,
    tiny_training_config,
    write_config,
)

pytestmark = pytest.mark.slow

DATA_RULES = {"synth_fdg", "synth_ecd", "validate", "preprocess", "cache", "split"}


def _config(work: Path, **changes) -> Path:
    cfg = tiny_training_config()
    for key, value in changes.items():
        section, name = key.split("__")
        cfg[section][name] = value
    return write_config(work / f"tiny_{len(changes)}.yaml", cfg)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("full")
    cfg = _config(work)
    snakemake(work, cfg, timeout=2400)
    return work, cfg


def test_full_run_writes_every_result(full_run):
    work, _ = full_run
    res = work / "results"
    for path in [
        "tables/table3_fdg.tsv",
        "tables/table4_ecd.md",
        "tables/mmse.tsv",
        "summary.html",
        "figures/roc_fdg.png",
        "figures/roc_ecd.png",
        "figures/sample_size.png",
        "figures/mmse_scatter.png",
        "figures/learning_curves.png",
        "figures/tsne/ecd/scratch.png",
        "explain/fdg/n8/gradcam_AD.nii.gz",
        "explain/fdg/n8/occlusion_AD.nii.gz",
        "explain/ecd/scratch/occlusion_regions.tsv",
        "figures/explain/ecd/from_fdg_n8.png",
        "explain/roi/ecd/nall/coefficients.nii.gz",
        "predictions/roi/mmse/fdg.tsv",
    ]:
        assert (res / path).stat().st_size > 0, path
    summary = json.loads((res / "explain/fdg/n8/gradcam_summary.json").read_text())
    assert summary["layer"] == "mixed7" and "ratio" in summary["ground_truth"]
    occlusion = json.loads((res / "explain/fdg/n8/occlusion_summary.json").read_text())
    assert occlusion["images"] > 0 and "ratio" in occlusion["ground_truth"]
    assert "Which model wins" in (res / "summary.html").read_text()
    snakemake(work, full_run[1], "--report", "results/report.html", timeout=300)
    assert (res / "report.html").stat().st_size > 100_000


def test_nothing_to_do_after_the_full_run(full_run):
    work, cfg = full_run
    proc = snakemake(work, cfg, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changing_a_training_parameter_retrains_but_keeps_the_data(full_run):
    work, _ = full_run
    proc = snakemake(work, _config(work, train__learning_rate=5e-4), "-n")
    rules = set(job_counts(proc.stdout))
    assert {"train_fdg", "train_ecd_scratch", "train_mmse_fdg"} <= rules
    assert {"predict", "evaluate", "tables"} <= rules
    assert not rules & DATA_RULES, rules


def test_changing_a_figure_setting_redraws_only_figures(full_run):
    work, _ = full_run
    proc = snakemake(work, _config(work, figures__dpi=72), "-n")
    rules = set(job_counts(proc.stdout)) - {"all"}
    assert rules and all(r.startswith("figure_") or r == "tsne" for r in rules), rules


def test_interrupted_run_finishes_with_the_same_results(full_run, tmp_path):
    """Kill Snakemake while a model trains, rerun with --rerun-incomplete: the same model as without the kill."""
    work, cfg = full_run
    copy = tmp_path / "copy"
    shutil.copytree(work, copy, symlinks=True)
    target = copy / "results/models/ecd/scratch"
    before = json.loads((target / "metrics.json").read_text())
    shutil.rmtree(target)  # this model is still to be trained when the run is interrupted
    cmd = snakemake_command(copy, cfg)
    proc = subprocess.Popen(
        cmd,
        cwd=copy,
        env=job_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    log = copy / "results/logs/train/ecd_scratch.log"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and "training" in log.read_text():  # the job is in Keras, before its first epoch ends
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert not (target / "metrics.json").exists()  # no half-written outputs left
    done = snakemake(copy, cfg, "--rerun-incomplete", timeout=1200)
    assert re.search(r"rule train_ecd_scratch", done.stdout + done.stderr)
    after = json.loads((target / "metrics.json").read_text())
    for key in ("val_auc_ensemble", "val_accuracy_ensemble", "epochs_run"):
        assert after[key] == before[key], (key, before[key], after[key])
    assert (copy / "results/tables/table4_ecd.tsv").exists()
