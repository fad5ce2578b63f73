"""Running the Snakemake workflow from tests: in a scratch folder, with a config written by the test."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"


TRAIN_RULES = {"train"}  # one rule trains every CNN of the catalog

# The smallest config that runs every stage, training included, in a few minutes on 2 cores.
_TINY_TRAINING = {
    "seed": 9,
    "mosaic": {"size": 76},
    "cohorts": {
        "fdg": {"modality": "fdg_pet", "synthetic": {"n_ad": 6, "n_nc": 6, "n_mci": 1}},
        "ecd": {"modality": "ecd_spect", "synthetic": {"n_ad": 5, "n_nc": 5}},
    },
    "splits": {
        "fdg_cohort": "fdg",
        "ecd_cohort": "ecd",
        "fdg_test": {"AD": 2, "NC": 2},
        "ecd_test": {"AD": 2, "NC": 2},
        "pretrain_sizes": [8],
        "val_fraction": 0.25,
        "mmse_include_mci": True,
    },
    "train": {
        "init": "random",
        "learning_rate": 1e-3,
        "finetune_learning_rate": 1e-4,
        "batch_size": 8,
        "epochs": 2,
        "patience": 2,
        "bn_momentum": 0.9,
        "augment_shift": 0.0,
        "augment_zoom": 0.0,
        "fc_units": {"fdg_pet": 16, "ecd_spect": 8},
        "threads": 1,
        "replicates": 2,
    },
    "evaluate": {"n_bootstrap": 200},
    "explain": {"gradcam_layer": "mixed7", "gradcam_examples": 1, "tsne_perplexity": 3},
    "figures": {"dpi": 60},
}


def tiny_training_config(**overrides) -> dict:
    """A fresh copy of the tiny training config, with top-level sections replaced by `overrides`."""
    return {**copy.deepcopy(_TINY_TRAINING), **copy.deepcopy(overrides)}


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(workdir: Path, configfile: Path | None, *args: str, cores: int | None = 2) -> list[str]:
    """The Snakemake command line of a test run in `workdir` (no --cores with cores=None: the profile decides)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir)]
    cmd += ["--cores", str(cores)] if cores is not None else []
    cmd += list(args)
    return cmd + (["--configfile", str(configfile)] if configfile is not None else [])


def demo_priorities() -> tuple[str, ...]:
    """`make demo`'s --prioritize and its files (the Makefile's CHAIN and EXPLAINED): the longest chain of dependent
    training jobs and the explained models first, so that a run does not end on one core."""
    makefile = (ROOT / "Makefile").read_text()
    files = []
    for name in ("CHAIN", "EXPLAINED"):
        line = re.search(rf"^{name} := (\S+)$", makefile, re.M)
        assert line, f"Makefile: no '{name} := <file>' line"
        files.append(line[1])
    return ("--prioritize", *files)


def job_environment() -> dict[str, str]:
    """This interpreter's bin folder first on PATH: jobs run `python` from the test's environment."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def snakemake(
    workdir: Path, configfile: Path | None, *args: str, check: bool = True, timeout: int = 1200
) -> subprocess.CompletedProcess:
    cmd = snakemake_command(workdir, configfile, *args)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=job_environment(), timeout=timeout, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a (dry) run: rule -> number of jobs."""
    counts: dict[str, int] = {}
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("Job stats:"))
    except StopIteration:
        return counts
    for line in lines[start + 3 :]:
        m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def scheduled_subjects(output: str, rule: str = "preprocess") -> set[str]:
    """Subjects whose `rule` job a (dry) run schedules, from the job listing's wildcards lines."""
    subjects, current = set(), None
    for line in output.splitlines():
        m = re.match(r"^(?:local)?rule (\S+):", line.strip())
        if m:
            current = m.group(1)
        m = re.search(r"wildcards: .*subject=([A-Za-z0-9_-]+)", line)
        if m and current == rule:
            subjects.add(m.group(1))
    return subjects


def job_blocks(stdout: str) -> list[str]:
    """A dry run's job listings, one string each (each starts with a timestamp line)."""
    return re.split(r"\n\[\w{3} \w{3} ", stdout)


def train_jobs(stdout: str) -> dict[str, str]:
    """Model name -> the dry run's listing of its training job (rule `train`, wildcard `model`)."""
    jobs = {}
    for block in job_blocks(stdout):
        if re.search(r"^rule train:", block, re.M):
            jobs[re.search(r"wildcards: model=(\S+)", block)[1]] = block
    return jobs
