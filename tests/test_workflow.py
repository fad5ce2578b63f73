"""The workflow as a user runs it: dry runs of the shipped configs and profiles. The tiny run end to end and its
incremental reruns are in test_workflow_full.py (one trained run shared by every end-to-end check)."""

from __future__ import annotations

import re

import yaml
from workflow_helpers import ROOT, job_counts, snakemake, write_config


def test_default_config_dry_run(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    proc = snakemake(tmp_path, ROOT / "config" / "config.yaml", "-n")
    counts = job_counts(proc.stdout)
    n_subjects = sum(sum(c["synthetic"].values()) for c in cfg["cohorts"].values())
    assert counts["preprocess"] == n_subjects
    assert counts["cache"] == 2 and counts["validate"] == 2 and counts["split"] == 2
    assert counts["synth_fdg"] == 1 and counts["synth_ecd"] == 1
    n_sizes = len(cfg["splits"]["pretrain_sizes"])
    assert counts["train_fdg"] == n_sizes and counts["finetune_ecd"] == n_sizes


def test_paper_config_dry_run(tmp_path):
    proc = snakemake(tmp_path, ROOT / "config" / "paper.yaml", "-n")
    counts = job_counts(proc.stdout)
    assert counts["preprocess"] == 629 + 638 + 654 + 113 + 134
    # the paper's grid: 5 FDG pre-trainings (100..1000), 5 ECD fine-tunes, the scratch baseline, MMSE FDG -> ECD
    assert counts["train_fdg"] == 5 and counts["finetune_ecd"] == 5
    assert counts["train_ecd_scratch"] == 1
    assert counts["train_mmse_fdg"] == 1 and counts["finetune_mmse_ecd"] == 1
    assert counts["split"] == 2
    # every CNN predicts (13) and every classifier is explained (11); an ROI baseline beside each training set:
    # 5 FDG sizes, the ECD set, FDG and ECD MMSE (8); one evaluation per model (21)
    assert counts["predict"] == 13 and counts["gradcam"] == 11 and counts["tsne"] == 11
    assert counts["train_baseline"] == 8 and counts["explain_baseline"] == 8 and counts["evaluate"] == 21
    assert counts["tables"] == 1 and counts["figure_roc"] == 2


def test_training_jobs_are_gpu_tagged(tmp_path):
    """Every training job asks for one GPU, so `--resources gpu=N` caps how many train at once."""
    proc = snakemake(
        tmp_path,
        ROOT / "config" / "paper.yaml",
        "results/models/ecd/from_fdg_n100/metrics.json",  # before --resources, which takes several values
        "-n",
        "--resources",
        "gpu=1",
    )
    blocks = re.split(r"\n\[\w{3} \w{3} ", proc.stdout)  # each job's listing starts with a timestamp line
    train_blocks = [b for b in blocks if re.search(r"rule (train_|finetune_)", b)]
    assert len(train_blocks) == 2
    for block in train_blocks:
        assert re.search(r"resources: .*gpu=1", block), block


def test_bad_table_stops_before_any_job(tmp_path):
    (tmp_path / "participants.tsv").write_text(
        "subject_id\tdiagnosis\tmmse\tpath\ns01\tAD\t45\ts01.nii.gz\ns02\tNC\t29\ts02.nii.gz\n"
    )
    cfg = write_config(
        tmp_path / "bad.yaml",
        {
            "seed": 1,
            "mosaic": {"size": 76},
            "cohorts": {"site": {"modality": "ecd_spect", "table": str(tmp_path / "participants.tsv")}},
        },
    )
    proc = snakemake(tmp_path, cfg, "-n", check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "row 2 (subject s01)" in err and "mmse 45 is outside 0-30" in err
    assert "Traceback" not in err


def test_workstation_profile_is_picked_up_and_caps_gpu_jobs(tmp_path):
    profile = yaml.safe_load((ROOT / "workflow" / "profiles" / "default" / "config.yaml").read_text())
    assert profile["resources"] == {"gpu": 1}
    proc = snakemake(tmp_path, ROOT / "config" / "config.yaml", "-n")
    assert re.search(r"Using workflow specific profile \S*profiles/default", proc.stderr + proc.stdout)


def test_data_only_config_with_own_cohort_names(tmp_path):
    """Without `splits` the workflow stops at the caches, whatever the cohorts are called."""
    cfg = write_config(
        tmp_path / "c.yaml",
        {
            "seed": 1,
            "mosaic": {"size": 96},
            "cohorts": {"adni": {"modality": "fdg_pet", "synthetic": {"n_ad": 2, "n_nc": 2}}},
        },
    )
    counts = job_counts(snakemake(tmp_path, cfg, "-n").stdout)
    assert counts == {"synth_adni": 1, "validate": 1, "preprocess": 4, "cache": 1, "all": 1}, counts
