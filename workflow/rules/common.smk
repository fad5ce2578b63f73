# Shared helpers: the cohorts and their subjects, known when the DAG is built.
# Real cohorts: the participants table is read (and checked) here, so a defect in it stops the run at once.
# Synthetic cohorts: subject ids follow from the config alone (no checkpoint needed).

import json
import os
import sys

from snakemake.exceptions import WorkflowError

# The package lives in src/: make it importable here and in every job (also inside --sdm conda envs).
SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, SRC)
# (quadrupled braces: both the f-string and Snakemake format the prefix)
shell.prefix(f'export PYTHONPATH="{SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}}"; ')

from adtransfer.cohort import read_participants
from adtransfer.errors import InputError
from adtransfer.synth import subject_ids

COHORTS = list(config["cohorts"])
PREPROC = config.get("preprocess", {})
CROP = config.get("crop", {})
CROP_SHAPE = "x".join(str(v) for v in CROP.get("shape", [95, 95, 48]))
CROP_ORIGIN = "x".join(str(v) for v in CROP.get("origin_mm", [-94, -112, -36]))

wildcard_constraints:
    cohort="|".join(COHORTS),
    subject="[A-Za-z0-9_-]+",


def is_synthetic(cohort):
    return not config["cohorts"][cohort].get("table")


def synth_dir(cohort):
    return f"results/synth/{cohort}"


def table_path(cohort):
    """The cohort's participants table (or BIDS root)."""
    if is_synthetic(cohort):
        return f"{synth_dir(cohort)}/participants.tsv"
    return config["cohorts"][cohort]["table"]


def _load_cohort(cohort):
    spec = config["cohorts"][cohort]
    if is_synthetic(cohort):
        syn = spec.get("synthetic")
        if not syn:
            raise WorkflowError(f"config: cohort '{cohort}' has neither a table nor a synthetic section")
        n = syn["n_ad"] + syn["n_nc"] + syn.get("n_mci", 0)
        ids = subject_ids(cohort, n)
        return {s: f"{synth_dir(cohort)}/scans/{s}.nii.gz" for s in ids}
    try:
        df = read_participants(spec["table"])
    except InputError as exc:
        # one clear message and a non-zero exit, without a Snakefile traceback
        sys.exit(f"Error in cohort '{cohort}' (config cohorts.{cohort}.table):\n{exc}")
    return dict(zip(df["subject_id"], df["path"]))


SCANS = {c: _load_cohort(c) for c in COHORTS}


def subjects(cohort):
    return list(SCANS[cohort])


def scan_of(wildcards):
    return SCANS[wildcards.cohort][wildcards.subject]


def cohort_scans(wildcards):
    return list(SCANS[wildcards.cohort].values())
