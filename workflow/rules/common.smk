# Shared helpers: the cohorts and their subjects, known when the DAG is built. Every path of the results tree is
# built by adtransfer.layout (`layout.cache("{cohort}")`, `layout.model_file("{model}", "model.keras")`, ...).
# Real cohorts: the participants table is read (and checked) here, so a defect in it stops the run at once.
# Synthetic cohorts: subject ids follow from the config alone (no checkpoint needed).

import json
import os
import re
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError

# The package lives in src/: make it importable here and in every job (also inside --sdm conda envs).
SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, SRC)
# (quadrupled braces: both the f-string and Snakemake format the prefix; the clone's path is quoted for the shell)
shell.prefix(f'export PYTHONPATH={shlex.quote(SRC)}"${{{{PYTHONPATH:+:$PYTHONPATH}}}}"; ')

# Only light modules at parse time: every Snakemake process parses this, also the one inside each cluster job, and
# scikit-learn, scipy and nibabel would add ~1 CPU s to each (a participants table brings in its reader, below).
from adtransfer import layout, modalities
from adtransfer import catalog
from adtransfer.catalog import grid_from_spec, grid_spec, replicate_seed
from adtransfer.errors import InputError
from adtransfer.configuration import config_problems, merged_schedule_problems, mmse_min_for, subject_ids
from adtransfer.scheduling import keep_scheduler_idle


def _merged_problems():
    """--configfile files merged over config/config.yaml (the demo's) that would inherit its stage schedules."""
    here = Path("config/config.yaml")  # the Snakefile's `configfile:`, relative to the working directory
    replaced = getattr(workflow.config_settings, "replace_workflow_config", False)
    if replaced or not here.exists() or not workflow.overwrite_configfiles:
        return []
    users = {str(f): yaml.safe_load(Path(f).read_text()) for f in workflow.overwrite_configfiles}
    return merged_schedule_problems(yaml.safe_load(here.read_text()), users, str(here))


_problems = config_problems(config) + _merged_problems()
if _problems:
    sys.exit("Error in config:\n" + "\n".join(f"  {p}" for p in _problems))

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


def table_path(cohort):
    """The cohort's participants table (or BIDS root)."""
    if is_synthetic(cohort):
        return layout.synth_file(cohort, "table")
    return config["cohorts"][cohort]["table"]


def _load_cohort(cohort):
    spec = config["cohorts"][cohort]
    if is_synthetic(cohort):
        syn = spec.get("synthetic")
        if not syn:
            raise WorkflowError(f"config: cohort '{cohort}' has neither a table nor a synthetic section")
        n = syn["n_ad"] + syn["n_nc"] + syn.get("n_mci", 0)
        ids = subject_ids(cohort, n)
        return {s: layout.synth_scan(cohort, s) for s in ids}
    from adtransfer.inputs.cohort import read_participants

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


# --- native-space cohorts: registration and its QC -------------------------------------------------------

REGISTRATION = PREPROC.get("registration", {})
# what the registration itself uses (the QC threshold and decision do not rerun preprocessing)
# (and, while the nonlinear step is off, its settings neither: the jobs' params stay as they were without them)
REGISTRATION_SETTINGS = {
    k: v
    for k, v in REGISTRATION.items()
    if k not in ("min_similarity", "on_fail") and (REGISTRATION.get("nonlinear") or not k.startswith("nonlinear"))
}


def space_of(cohort):
    return config["cohorts"][cohort].get("space", "mni")


def registration_settings(cohort):
    """JSON registration settings of a cohort's preprocessing ("{}" for MNI-space cohorts: nothing to rerun)."""
    return json.dumps(REGISTRATION_SETTINGS, sort_keys=True) if space_of(cohort) == "native" else "{}"


def cohort_table_used(wildcards):
    """The cohort table the cache and the splits read: for native cohorts, the one after registration QC."""
    if space_of(wildcards.cohort) == "native":
        return layout.registration_qc(wildcards.cohort, included=True)
    return layout.cohort_table(wildcards.cohort)


# Each subject's registration QC image goes into the Snakemake report, one subcategory per native-space cohort: the
# images are report-flagged inputs of the cohort's `registration_qc` job, so an MNI-space cohort (no such job) adds
# none. Snakemake resolves the caption of a rule's literal files only, not of an input function's: joined here.
REGISTRATION_PNG_CAPTION = workflow.current_basedir.join("../report/registration_png.rst")


def registration_pngs(wildcards):
    """The registration QC images of a native-space cohort's subjects, flagged for the report."""
    # (`report(` must not begin a line here: Snakemake's parser would take it for the `report:` directive)
    return [report(layout.preprocessed(wildcards.cohort, s, "registration_qc"),
                   caption=REGISTRATION_PNG_CAPTION,
                   category="0. Data quality",
                   subcategory=f"Registration: {wildcards.cohort}",
                   labels={"cohort": wildcards.cohort, "subject": s, "figure": "registered scan, template outline"})
            for s in subjects(wildcards.cohort)]


def synthetic_spec(cohort):
    """A synthetic cohort's settings; a native-space cohort's scans are written in scanner space."""
    spec = dict(config["cohorts"][cohort]["synthetic"])
    if config["cohorts"][cohort].get("space", "mni") == "native":
        spec.setdefault("space", "native")
    return spec


# --- the training grid ---------------------------------------------------------------------------------

SPLITS = config.get("splits") or {}  # null or absent: the data stages only
TRAIN = config.get("train", {})
FDG = SPLITS.get("fdg_cohort", "fdg")
ECD = SPLITS.get("ecd_cohort", "ecd")
SIZES = SPLITS.get("pretrain_sizes", [])
if SPLITS and not {FDG, ECD} <= set(COHORTS):
    sys.exit(f"config: splits.fdg_cohort '{FDG}' and splits.ecd_cohort '{ECD}' must name cohorts")
TRAIN_THREADS = TRAIN.get("threads", 2)


def split_args(cohort):
    """Command-line arguments of `adtransfer split` for a cohort: FDG gets the nested sizes, ECD one set."""
    key = "fdg" if cohort == FDG else "ecd"
    args = [f"--seed {config['seed']}", f"--val-fraction {SPLITS.get('val_fraction', 0.2)}",
            f"--mmse-min {mmse_min_for(SPLITS, key)}"]
    if SPLITS.get(f"{key}_test_file"):
        args.append(f"--test-file {shlex.quote(SPLITS[f'{key}_test_file'])}")
    else:
        args.append(f"--test-counts '{json.dumps(SPLITS[f'{key}_test'])}'")
    if cohort == FDG and SIZES:
        args.append(f"--sizes {','.join(str(s) for s in SIZES)}")
    if SPLITS.get("mmse_include_mci", False):
        args.append("--mmse-include-mci")
    return " ".join(args)


def fixed_test_file(wildcards):
    """A user-given test set file of the cohort (an input of its split, so editing it redoes the split)."""
    key = "fdg" if wildcards.cohort == FDG else "ecd"
    path = SPLITS.get(f"{key}_test_file") if wildcards.cohort in (FDG, ECD) else None
    return [path] if path else []


REPLICATES = TRAIN.get("replicates", 1)


def train_settings(model):
    """JSON settings of one model's training job, from config `train` and `seed`. The replicated ECD stage trains
    each replicate with its own seed (catalog.replicate_seed); every other model with the config seed."""
    modality = config["cohorts"][ROLE_COHORT[model.role]]["modality"]
    units = modalities.fc_units(modality, TRAIN.get("fc_units"))
    settings = {k: TRAIN[k] for k in ("init", "batch_size", "bn_momentum", "augment_shift", "augment_zoom", "max_memory_gb")
                if k in TRAIN}
    lr = TRAIN.get("finetune_learning_rate", TRAIN.get("learning_rate")) if model.pretrained else TRAIN.get("learning_rate")
    settings.update(catalog.schedule(model, TRAIN))  # epochs, patience, early_stopping_start: its stage's or the plain keys
    seed = replicate_seed(config["seed"], REPLICATES, model.replicate) if model.replicated else config["seed"]
    settings.update(task=model.task, learning_rate=lr, fc_units=units, seed=seed, intensity_range=modalities.intensity_range(modality, TRAIN.get("intensity_range")))
    return json.dumps(settings, sort_keys=True)


def train_inputs(wildcards):
    """A CNN's cache and splits (its cohort's), and its parent model when it fine-tunes one (catalog)."""
    model = MODELS[wildcards.model]
    cohort = ROLE_COHORT[model.role]
    inputs = {"cache": layout.cache(cohort), "splits": layout.splits(cohort)}
    if model.pretrained:
        inputs["pretrained"] = layout.model_file(model.pretrained, "model.keras")
    return inputs


# Data stages (synth, validate, preprocess, cache, split) run before training and explanations. Without a priority,
# Snakemake's scheduler prefers the jobs with the largest inputs: measured in the demo, the ECD cohort was only
# synthesized after FDG pre-training, so the ECD jobs that need no FDG model could not fill the second core.
DATA_PRIORITY = 10


# what one training job writes: the model, its history and its validation metrics
TRAINED_FILES = {"model": "model.keras", "history": "history.tsv", "metrics": "metrics.json"}


# --- evaluation, explanation, report --------------------------------------------------------------------

# The model grid by name (src/adtransfer/catalog.py): CNNs and the ROI baseline beside each training set.
MODELS = {m.name: m for m in grid_from_spec(grid_spec(config))} if SPLITS else {}
# what steps that read the grid (tables, figures) receive as --grid: the same values, so the same grid
GRID_SPEC = json.dumps(grid_spec(config), sort_keys=True)
# the `model` wildcard of the training rule: exactly the catalog's CNNs (a never-matching pattern without a grid)
def name_pattern(names):
    """A `model` wildcard constraint matching exactly these catalog names (never matching when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


CNN_PATTERN = name_pattern(m for m, spec in MODELS.items() if spec.kind == "cnn")
# CNN classifiers, every replicate: what Grad-CAM, occlusion and the side-by-side figure can explain
CNN_CLASSIFIER_PATTERN = name_pattern(m for m, spec in MODELS.items() if spec.kind == "cnn" and spec.classify)
ROLE_COHORT = {"fdg": FDG, "ecd": ECD}
EVAL = config.get("evaluate", {})
EXPLAIN = config.get("explain", {})
FIGURE_DPI = config.get("figures", {}).get("dpi", 120)
COMPARISONS = json.dumps(config.get("comparisons", {}), sort_keys=True)
# what Grad-CAM, occlusion and t-SNE explain: config explain.models, by default every classifier of replicate 0
CNN_CLASSIFIERS = [m.name for m in catalog.explained_from_spec(GRID_SPEC)] if SPLITS else []
BASELINES = [m.name for m in MODELS.values() if m.kind == "roi"]


def trained(model):
    """A trained CNN's files a later step reads: the model and its training metrics (settings)."""
    return {f.split(".")[0]: layout.model_file(model, f) for f in ("model.keras", "metrics.json")}


def cohort_files(kind, role_of):
    """An input function: the cache (or split table: kind = layout.cache or layout.splits) of the cohort of the
    model named by the `model` wildcard (role_of: model_of or baseline_of)."""
    return lambda wc: kind(ROLE_COHORT[role_of(wc).role])


def model_of(wildcards):
    return MODELS[wildcards.model]


def baseline_of(wildcards):
    """The ROI baseline named by a rule's `model` wildcard (its path below results/models/roi/)."""
    return MODELS[f"roi/{wildcards.model}"]


def cohort_of(model):
    return ROLE_COHORT[MODELS[model].role]


def matching_baseline(model):
    """The name of the ROI baseline trained on the same subjects as a CNN (catalog.matching_baseline)."""
    return catalog.matching_baseline(MODELS[model], list(MODELS.values())).name


def synthetic_truths():
    """Cohort role -> ground_truth.json, for the training grid's synthetic cohorts (none without `splits`)."""
    if not SPLITS:
        return {}
    return {r: layout.synth_file(c, "truth_json") for r, c in ROLE_COHORT.items() if is_synthetic(c)}


def registration_qc_tables():
    """Cohort -> registration QC table, for the training grid's native-space cohorts (what the summary lists);
    MNI-space cohorts are not registered and have none."""
    if not SPLITS:
        return {}
    return {c: layout.registration_qc(c) for c in dict.fromkeys(ROLE_COHORT.values()) if space_of(c) == "native"}


def truth_of(model):
    """The generator's ground truth for a synthetic cohort (Grad-CAM and baseline checks); [] for real data."""
    cohort = cohort_of(model)
    return [layout.synth_file(cohort, "truth_json")] if is_synthetic(cohort) else []


def preproc_sidecar(model):
    """One preprocessing sidecar of the model's cohort: the parameters every subject was preprocessed with
    (`adtransfer bundle` checks them against the cache's parameter hash)."""
    cohort = cohort_of(model)
    return layout.preprocessed(cohort, subjects(cohort)[0], "sidecar")


def explain_figure_inputs(model):
    """What the side-by-side figure of a CNN reads: its Grad-CAM and occlusion (summary and AD map) and the
    coefficient map of the matching ROI baseline."""
    return {
        "gradcam": layout.explain(model, "gradcam_summary.json"),
        "gradcam_map": layout.explain(model, "gradcam_AD.nii.gz"),
        "occlusion": layout.explain(model, "occlusion_summary.json"),
        "occlusion_map": layout.explain(model, "occlusion_AD.nii.gz"),
        "baseline_map": layout.explain(matching_baseline(model), "coefficients.nii.gz"),
    }


def scored(names):
    """Predictions and test metrics of these models."""
    return [layout.predictions(m) for m in names] + [layout.test_metrics(m) for m in names]


def classifier_inputs(role=None):
    """Predictions and metrics of every classifier (of one cohort role): what tables and ROC figures read."""
    return scored([m for m, spec in MODELS.items() if spec.classify and role in (None, spec.role)])


def mmse_inputs():
    return scored([m for m, spec in MODELS.items() if not spec.classify])


def first_cnns():
    """Replicate 0 of every CNN (validation metrics and learning curves are read of these)."""
    return [m for m, spec in MODELS.items() if spec.kind == "cnn" and spec.replicate == 0]


def all_models():
    """Every trained model of the grid; none when the config has no `splits` (data stages only)."""
    return [layout.model_file(m, "metrics.json") for m, spec in MODELS.items() if spec.kind == "cnn"]


# the figures the summary page shows inline (caption -> file)
SUMMARY_FIGURES = {
    "ROC curves, ECD SPECT test set": layout.figure("roc_ecd"),
    "ROC curves, FDG PET test set": layout.figure("roc_fdg"),
    "Sample-size study (dots: replicates)": layout.figure("sample_size"),
    "MMSE: predicted vs true": layout.figure("mmse_scatter"),
}


def quoted(*parts):
    return " ".join(shlex.quote(str(p)) for p in parts)


def figure_shell(kind, options=""):
    """The command of a figure of the whole grid (read below layout.ROOT by the grid GRID_SPEC)."""
    return (f"python -m adtransfer figure {kind} --results {layout.ROOT} --grid {{params.grid:q}} {options}"
            " --dpi {params.dpi} --out {output:q} --log {log:q}")


def all_results():
    """Everything the evaluation and report stages write."""
    if not SPLITS:
        return []
    cnns = [m for m, spec in MODELS.items() if spec.kind == "cnn"]
    out = [layout.test_metrics(m) for m in MODELS]
    out += [layout.model_file(m, f) for m in cnns for f in ("manifest.json", "MODEL_CARD.md")]
    out += [layout.table(name, ext) for name in layout.TABLES for ext in ("tsv", "md")]
    out += [layout.summary_page()] + [layout.figure(f) for f in ("sample_size", "mmse_scatter", "learning_curves")]
    out += [layout.figure(f"roc_{role}") for role in ("fdg", "ecd")]
    out += [layout.model_figure("tsne", m) for m in CNN_CLASSIFIERS]
    out += [layout.explain(m, f) for f in ("gradcam_summary.json", "occlusion_summary.json") for m in CNN_CLASSIFIERS]
    out += [layout.model_figure("explain", m) for m in CNN_CLASSIFIERS]
    out += [layout.explain(m, "explain_summary.json") for m in BASELINES]
    out += [layout.table("explanations")]
    return out
