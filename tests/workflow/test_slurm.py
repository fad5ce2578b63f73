"""The workflow on SLURM: a reduced config through workflow/profiles/slurm on a single-node test cluster
(tests/slurm_cluster.py), checked job by job in slurmctld's records and against a local run of the same config."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from slurm_cluster import GPUS, slurm_cluster_fixture
from workflow_helpers import (
    ROOT,
    TRAIN_RULES,
    job_blocks,
    job_counts,
    snakemake,
    snakemake_command,
    tiny_training_config,
    write_config,
)

from adtransfer.inputs.synth import CohortSpec, generate_cohort

pytestmark = pytest.mark.slow

PROFILE = ROOT / "workflow" / "profiles" / "slurm"
# The local reference trains the transfer chain only (FDG pre-training -> ECD fine-tuning): on 2 cores every
# extra model costs ~1 min, and these two already cover a model handed from one job to the next.
REFERENCE_MODELS = ["fdg/n8", "ecd/from_fdg_n8"]
TIMEOUT = 1500
# Subjects per preprocessing group job in the cluster run (the profile's 50 would put the config's 23 in one): several
# groups, each larger than the cores its Snakemake runs with, so that a request summed over the group would show.
GROUP_SIZE = 10


def reduced_config() -> dict:
    """The tests' tiny training config at 1 epoch, 1 replicate and 1 explained model: every rule of the tiny config
    still runs (checked against its dry run in `runs`), with the fewest jobs, since the node runs 2 jobs at a time
    and each pays SLURM's and Snakemake's start-up (replicates only repeat the train (which predicts)/evaluate/bundle
    jobs, further explained models the explaining ones)."""
    cfg = tiny_training_config(seed=7)
    cfg["train"]["epochs"] = 1
    cfg["train"]["replicates"] = 1
    # one explained model: its four explaining jobs (two of them GPU jobs) are what the rules need; the GPU jobs
    # that wait for the FDG model (its explanations, the ECD fine-tune, the FDG MMSE model) are still more than the
    # node's GPUs, which test_gpu_jobs_and_only_they_get_the_gpu needs
    cfg["explain"]["models"] = ["fdg/n8"]
    return cfg


# The first status check of a job comes this many seconds after its submission (the profile's 10 s is meant for
# real clusters; the plugin backs off by 10 s per idle check either way). It only shortens the waits between
# dependent jobs; the profile's every other setting is what the run uses.
STATUS_CHECK_SECONDS = "2"


def slurm_snakemake(cluster, workdir: Path, configfile: Path, *args: str) -> subprocess.CompletedProcess:
    """`snakemake --profile workflow/profiles/slurm` as a user runs it, talking to the test cluster."""
    env = cluster.environment(Path(sys.executable).parent)  # jobs run `python` (the venv's) and `srun`
    args = ("--slurm-init-seconds-before-status-checks", STATUS_CHECK_SECONDS, *args)
    cmd = snakemake_command(workdir, configfile, "--profile", str(PROFILE), *args, cores=None)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT, cwd=workdir)


def slurm_jobs(cluster, output: str) -> list[dict]:
    """slurmctld's record of every job the run says it submitted, with the Snakemake jobs it ran: `members`, one
    (rule, wildcards) each, from the `--target-jobs` of the Snakemake command in its batch script (a group job runs
    several; its comment names the group, not a rule), `rule` (every member's) and `cores` (that command's --cores)."""
    records = []
    for job_id in re.findall(r"has been submitted with SLURM jobid (\d+)", output):
        rec = cluster.job_record(job_id)
        assert rec, f"slurmctld has no record of job {job_id}"
        script = cluster.batch_script(job_id)
        targets = re.search(r"--target-jobs (.+?) --", script)
        assert targets, f"no --target-jobs in the batch script of job {job_id}:\n{script}"
        rec["members"] = [tuple(t.split(":", 1)) for t in shlex.split(targets[1])]
        rules = {rule for rule, _ in rec["members"]}
        assert len(rules) == 1, f"job {job_id} ran jobs of several rules: {rec['members']}"
        rec["rule"] = rules.pop()
        rec["cores"] = int(re.search(r"--cores (\d+)", script)[1])
        records.append(rec)
    return records


def gpu_tagged_rules(workdir: Path, configfile: Path) -> set[str]:
    """Rules whose jobs declare gpu=1, read from a plain dry run (without the SLURM profile)."""
    out = snakemake(workdir, configfile, "-n").stdout
    rules = set()
    for block in job_blocks(out):
        m = re.search(r"^(?:local)?rule (\S+):", block, re.M)
        if m and re.search(r"resources: .*\bgpu=1\b", block):
            rules.add(m.group(1))
    return rules


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    yield from slurm_cluster_fixture(tmp_path_factory.mktemp("cluster"))


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory):
    """The reduced config run to `all` on SLURM and, meanwhile, its data stages and two models run locally."""
    base = tmp_path_factory.mktemp("slurm_vs_local")
    cfg = write_config(base / "config.yaml", reduced_config())
    slurm_dir, local_dir = base / "slurm", base / "local"
    slurm_dir.mkdir()
    local_dir.mkdir()
    gpu_rules = gpu_tagged_rules(local_dir, cfg)
    # the rules of the tests' whole tiny config (2 epochs, 2 replicates), which the reduced one must all run
    tiny = write_config(base / "tiny.yaml", tiny_training_config(seed=7))
    tiny_rules = set(job_counts(snakemake(local_dir, tiny, "-n").stdout))
    targets = [
        f"results/{kind}/{c}.{ext}" for c in ("fdg", "ecd") for kind, ext in (("cache", "h5"), ("splits", "tsv"))
    ]
    targets += [f"results/models/{m}/metrics.json" for m in REFERENCE_MODELS]
    # The local run shares the 2 cores with SLURM's jobs (two at a time on the node's two fake GPUs).
    with ThreadPoolExecutor(1) as pool:
        local = pool.submit(snakemake, local_dir, cfg, *targets, timeout=TIMEOUT)
        proc = slurm_snakemake(slurm_cluster, slurm_dir, cfg, "--group-components", f"preprocess={GROUP_SIZE}")
        local.result()
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"SLURM run failed ({proc.returncode}):\n{output[-8000:]}\n{slurm_cluster.log_tails()}"
    return {
        "slurm": slurm_dir,
        "local": local_dir,
        "output": output,
        "gpu_rules": gpu_rules,
        "tiny_rules": tiny_rules,
        "jobs": slurm_jobs(slurm_cluster, output),
    }


def test_every_job_ran_as_a_completed_slurm_job(runs):
    output, jobs = runs["output"], runs["jobs"]
    assert "Using profiles" in output and "profiles/slurm" in output
    planned = job_counts(output)  # the run's own job table: whatever rules `all` currently needs
    local_rules = set(re.findall(r"^localrule (\S+):", output, re.M))
    submitted: dict[str, int] = {}  # Snakemake jobs per rule, counted inside the SLURM jobs that ran them
    for rec in jobs:
        submitted[rec["rule"]] = submitted.get(rec["rule"], 0) + len(rec["members"])
        assert rec["JobState"] == "COMPLETED" and rec["ExitCode"] == "0:0", rec
    assert submitted == {r: n for r, n in planned.items() if r not in local_rules}
    assert local_rules <= {"all"}, local_rules  # only the target itself, which runs nothing, stays local
    assert TRAIN_RULES <= set(submitted)
    # the reduced config left out no rule of the tiny config: every kind of job ran on SLURM
    assert set(planned) == runs["tiny_rules"], set(planned) ^ runs["tiny_rules"]
    # and no job ran twice (in two SLURM jobs)
    members = [(rec["rule"], m) for rec in jobs for m in rec["members"]]
    assert len(members) == len(set(members)), members


def minutes(limit: str) -> int:
    """A SLURM time limit ([D-]HH:MM:SS) in minutes."""
    days, _, hms = limit.rpartition("-")
    h, m, sec = map(int, hms.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m + math.ceil(sec / 60)


def megabytes(mem: str) -> int:
    return int(float(mem[:-1]) * {"M": 1, "G": 1024, "T": 1024**2}[mem[-1]])


def test_preprocessing_went_to_slurm_in_groups(runs):
    """Fewer SLURM jobs than subjects, each asking SLURM for what its Snakemake runs at once: as many CPUs as the
    cores it runs its subjects on side by side, their memory, and the preprocessing runtime per round of them."""
    subjects = job_counts(runs["output"])["preprocess"]
    groups = [rec for rec in runs["jobs"] if rec["rule"] == "preprocess"]
    assert len(groups) == math.ceil(subjects / GROUP_SIZE) < subjects, (len(groups), subjects)
    per_job = yaml.safe_load((PROFILE / "config.yaml").read_text())["set-resources"]["preprocess"]
    for rec in groups:
        n = len(rec["members"])
        assert n <= GROUP_SIZE, rec["members"]
        side_by_side = min(n, rec["cores"])
        assert int(rec["CPUs/Task"]) == side_by_side, (rec["CPUs/Task"], n, rec["cores"])
        assert megabytes(rec["MinMemoryNode"]) == side_by_side * per_job["mem_mb"], (rec["MinMemoryNode"], n)
        assert minutes(rec["TimeLimit"]) == math.ceil(n / side_by_side) * per_job["runtime"], (rec["TimeLimit"], n)
        assert "gpu" not in rec.get("TresPerNode", "") + rec.get("TresPerJob", "")
    # some group ran more subjects than side by side: a request summed over its subjects would have shown
    assert any(len(rec["members"]) > min(len(rec["members"]), rec["cores"]) for rec in groups), groups


def test_gpu_jobs_and_only_they_get_the_gpu(runs):
    gpu_rules, jobs = runs["gpu_rules"], runs["jobs"]
    assert TRAIN_RULES <= gpu_rules
    for rec in jobs:
        # what the job asked SLURM for: --gres=gpu:1 shows per node, --gpus=1 per job
        asked = rec.get("TresPerNode", "") + rec.get("TresPerJob", "")
        assert ("gpu:1" in asked) == (rec["rule"] in gpu_rules), (rec["rule"], asked)
    gpu_jobs = [rec for rec in jobs if rec["rule"] in gpu_rules]
    span = {id(r): (r["SubmitTime"], r["StartTime"], r["EndTime"]) for r in gpu_jobs}
    pairs = [(span[id(a)], span[id(b)]) for i, a in enumerate(gpu_jobs) for b in gpu_jobs[i + 1 :]]
    # SLURM never ran more jobs at once than the node has GPUs ...
    running = [sum(b[1] <= a[1] < b[2] for b in span.values()) for a in span.values()]
    assert max(running) <= GPUS, f"{max(running)} jobs held the node's {GPUS} GPUs at once"
    # ... while Snakemake queued several at once: profiles/default's `resources: gpu=1` did not throttle them
    assert any(a[0] < b[2] and b[0] < a[2] for a, b in pairs), "GPU jobs were submitted one at a time"
    # and more than the GPUs at once: what kept them within the GPUs was SLURM
    queued = [sum(b[0] <= a[0] < b[2] for b in span.values()) for a in span.values()]
    assert max(queued) > GPUS, f"never more than {max(queued)} GPU jobs queued at once: SLURM's limit untested"


def test_slurm_outputs_match_a_local_run(runs):
    slurm, local = runs["slurm"] / "results", runs["local"] / "results"
    for c in ("fdg", "ecd"):
        assert (slurm / "splits" / f"{c}.tsv").read_text() == (local / "splits" / f"{c}.tsv").read_text()
        with h5py.File(slurm / "cache" / f"{c}.h5") as a, h5py.File(local / "cache" / f"{c}.h5") as b:
            assert sorted(a) == sorted(b)
            for name in a:
                np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=f"{c}.h5:{name}")
    for model in REFERENCE_MODELS:
        got = json.loads((slurm / "models" / model / "metrics.json").read_text())
        want = json.loads((local / "models" / model / "metrics.json").read_text())
        assert_same_metrics(got, want, model)


def assert_same_metrics(got, want, where: str) -> None:
    """Equal apart from timings. Training is seeded with deterministic ops on 1 thread, so numbers agree; the
    tolerance only absorbs float formatting, not run-to-run noise."""
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for key in want:
            if "seconds" not in key:
                assert_same_metrics(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same_metrics(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def test_a_job_failing_on_slurm_fails_the_run(slurm_cluster, tmp_path):
    """A corrupt scan passes the DAG (only the table is read then) and breaks its jobs on the cluster."""
    generate_cohort(
        CohortSpec(name="bad", modality="ecd_spect", n_ad=2, n_nc=2, seed=3), tmp_path / "data", progress=False
    )
    scan = sorted((tmp_path / "data" / "scans").glob("*.nii.gz"))[0]
    scan.write_bytes(os.urandom(2048))
    cfg = write_config(
        tmp_path / "bad.yaml",
        {
            "seed": 3,
            "mosaic": {"size": 76},
            "cohorts": {"bad": {"modality": "ecd_spect", "table": "data/participants.tsv"}},
        },
    )
    proc = slurm_snakemake(slurm_cluster, tmp_path, cfg)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-4000:]
    subject = scan.name.removesuffix(".nii.gz")
    # The scan's subjects were preprocessed in one group job, which failed as a unit: Snakemake reports each of its
    # jobs under "Error in group" with its log. Only the jobs reading the corrupt scan (its preprocessing and the
    # cohort's validation) failed themselves: every error logged names that scan, the preprocessing's its subject.
    assert "Error in group preprocess" in output, output[-4000:]
    assert set(re.findall(r"Error in rule (\S+):", output)) <= {"preprocess", "validate"}, output[-4000:]
    errors = re.findall(r"^\s*\d\d:\d\d:\d\d ERROR (.*)$", output, re.M)
    assert errors and all(str(scan) in e for e in errors), errors
    assert any(f"(subject {subject})): cannot read NIfTI header" in e for e in errors), errors
    assert re.search(r"SLURM-job '\d+' failed, SLURM status is: 'FAILED'", output), output[-4000:]
    # the failure came from the job itself, and nothing of the run is left in the queue
    assert not re.search(r"RUNNING|PENDING|COMPLETING", slurm_cluster.jobs()), slurm_cluster.jobs()
