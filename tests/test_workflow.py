"""The workflow as a user runs it: dry runs of the shipped configs, a tiny run end to end, incremental reruns."""

from __future__ import annotations

import re
import shutil

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_helpers import ROOT, job_counts, scheduled_subjects, snakemake, write_config

from adtransfer.synth import CohortSpec, generate_cohort


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
    assert counts["occlusion"] == 11 and counts["explain_figure"] == 11  # occlusion and side by side per classifier
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


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny config run to the end: a user-table FDG cohort and a workflow-generated ECD cohort."""
    work = tmp_path_factory.mktemp("run")
    generate_cohort(
        CohortSpec(name="sub", modality="fdg_pet", n_ad=3, n_nc=3, n_mci=1, seed=5), work / "mydata", progress=False
    )
    cfg = write_config(
        work / "tiny.yaml",
        {
            "seed": 5,
            "mosaic": {"size": 76},
            "cohorts": {
                "fdg": {"modality": "fdg_pet", "table": "mydata/participants.tsv"},
                "ecd": {"modality": "ecd_spect", "synthetic": {"n_ad": 2, "n_nc": 2}},
            },
        },
    )
    snakemake(work, cfg)
    return work, cfg


@pytest.mark.slow
def test_tiny_run_writes_caches(finished_run):
    work, _ = finished_run
    table = pd.read_csv(work / "mydata" / "participants.tsv", sep="\t")
    with h5py.File(work / "results" / "cache" / "fdg.h5") as h5:
        assert h5["mosaics"].shape == (7, 3, 76, 76) and h5["mosaics"].dtype == np.float16
        assert [s.decode() for s in h5["subject_id"][()]] == table["subject_id"].tolist()
        expected = table["diagnosis"].map({"AD": 1, "NC": 0, "MCI": -1}).to_numpy()
        np.testing.assert_array_equal(h5["label"][()], expected)
        np.testing.assert_array_equal(h5["mmse"][()], table["mmse"].to_numpy(np.float32))
        assert h5.attrs["modality"] == "fdg_pet" and h5.attrs["mosaic_size"] == 76
        assert len(h5.attrs["params_hash"]) == 16
        assert np.isfinite(h5["mosaics"][()].astype(np.float32)).all()
    with h5py.File(work / "results" / "cache" / "ecd.h5") as h5:
        assert h5["mosaics"].shape == (4, 3, 76, 76)
        assert sorted(h5["diagnosis"].asstr()[()]) == ["AD", "AD", "NC", "NC"]
    # every subject has its QC image, log and benchmark file
    for sid in table["subject_id"]:
        assert (work / "results" / "preproc" / "fdg" / f"{sid}.png").stat().st_size > 1000
        assert (work / "results" / "logs" / "preprocess" / "fdg" / f"{sid}.log").exists()
        assert (work / "results" / "benchmarks" / "preprocess" / "fdg" / f"{sid}.tsv").exists()


@pytest.mark.slow
def test_nothing_to_do_after_a_full_run(finished_run):
    work, cfg = finished_run
    proc = snakemake(work, cfg, "-n")
    assert job_counts(proc.stdout) == {}, proc.stdout[-2000:]


@pytest.mark.slow
def test_replacing_one_scan_reruns_only_that_subject(finished_run, tmp_path):
    work, cfg = finished_run
    scan = work / "mydata" / "scans" / "sub0002.nii.gz"
    backup = tmp_path / "sub0002.nii.gz"
    shutil.copy2(scan, backup)
    try:
        img = nib.load(scan)
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj) * 1.1, img.affine), scan)
        proc = snakemake(work, cfg, "-n")
        counts = job_counts(proc.stdout)
        assert scheduled_subjects(proc.stdout) == {"sub0002"}
        assert counts == {"preprocess": 1, "validate": 1, "cache": 1, "all": 1}, counts
    finally:
        shutil.copy2(backup, scan)


@pytest.mark.slow
def test_adding_a_subject_preprocesses_only_the_new_one(finished_run):
    work, cfg = finished_run
    table_path = work / "mydata" / "participants.tsv"
    original = table_path.read_text()
    new_scan = work / "mydata" / "scans" / "new01.nii.gz"
    shutil.copy2(work / "mydata" / "scans" / "sub0001.nii.gz", new_scan)
    try:
        table_path.write_text(original + "new01\tNC\t29\t75.0\tF\tS01\tscans/new01.nii.gz\n")
        proc = snakemake(work, cfg, "-n")
        assert scheduled_subjects(proc.stdout) == {"new01"}
        assert job_counts(proc.stdout)["preprocess"] == 1
    finally:
        table_path.write_text(original)
        new_scan.unlink()


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
