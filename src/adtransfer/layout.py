"""The results tree: the one place that says where every file of a run lives.

The Snakemake rules (through common.smk) and the steps that read many results (tables, figures, the report) build
their paths here, so a rule's declared files and the files the package reads are the same strings. Every function
takes names as they are or as Snakemake wildcards ("{model}" stays "{model}"), and the root of the tree (default
"results"). Pure string building: no TensorFlow, no pandas, nothing read or written.

    synth/{cohort}/participants.tsv, scans/{subject}.nii.gz, ground_truth.{tsv,json}, ad_pattern.nii.gz
    cohort/{cohort}.tsv                      qc/{cohort}/registration.tsv, registration_included.tsv
    preproc/{cohort}/{subject}.nii.gz .json .png, registration/{subject}.png
    cache/{cohort}.h5                        splits/{cohort}.tsv
    models/{model}/model.keras history.tsv metrics.json manifest.json MODEL_CARD.md work/  (ROI: model.json)
    predictions/{model}.tsv .features.h5     metrics/{model}.json
    explain/{model}/...                      figures/...png    tables/{name}.{tsv,md}, summary.md    summary.html
    logs/{step}/{name}.log                   benchmarks/{step}/{name}.tsv
"""

from __future__ import annotations

ROOT = "results"

SYNTH_FILES = {
    "table": "participants.tsv",
    "truth": "ground_truth.tsv",
    "truth_json": "ground_truth.json",
    "pattern": "ad_pattern.nii.gz",
}
PREPROC_SUFFIXES = {"nii": ".nii.gz", "sidecar": ".json", "qc": ".png"}
MODEL_FILES = ("model.keras", "history.tsv", "metrics.json", "manifest.json", "MODEL_CARD.md", "model.json")
EXPLAIN_FILES = (
    "gradcam_summary.json",
    "gradcam_regions.tsv",
    "gradcam_AD.nii.gz",
    "gradcam_NC.nii.gz",
    "occlusion_summary.json",
    "occlusion_regions.tsv",
    "occlusion_AD.nii.gz",
    "explain_summary.json",
    "coefficients.tsv",
    "coefficients.nii.gz",
)
TABLES = ("table3_fdg", "table4_ecd", "comparisons", "replicates", "mmse")
# figures of the whole grid (results/figures/{name}.png); per-model figures have their own functions
GRID_FIGURES = ("roc_fdg", "roc_ecd", "sample_size", "mmse_scatter", "learning_curves")


def _per_name(folder: str, suffix: str, doc: str):
    """A path function of one name (cohort or model): {root}/{folder}/{name}{suffix}."""

    def path(name: str, root: str = ROOT) -> str:
        return f"{root}/{folder}/{name}{suffix}"

    path.__doc__ = doc
    return path


def _one_of(value: str, known, what: str) -> str:
    """The value, if it is a known one or a Snakemake wildcard pattern ("roc_{role}")."""
    if value not in known and "{" not in value:
        raise ValueError(f"unknown {what} {value!r} (known: {', '.join(known)})")
    return value


# --- cohorts and preprocessing -------------------------------------------------------------------------


synth_dir = _per_name("synth", "", "A synthetic cohort's folder (what `adtransfer synth --out` fills).")
cohort_table = _per_name("cohort", ".tsv", "The validated cohort table.")
preproc_dir = _per_name("preproc", "", "A cohort's preprocessed scans, sidecars and QC images.")
cache = _per_name("cache", ".h5", "A cohort's HDF5 mosaic cache.")
splits = _per_name("splits", ".tsv", "A cohort's split table.")
model_dir = _per_name("models", "", "A model's folder (its files: model_file).")
predictions = _per_name("predictions", ".tsv", "A model's prediction table, every subject of its cohort.")
features = _per_name("predictions", ".features.h5", "A CNN's FC-layer features of every subject (t-SNE).")
test_metrics = _per_name("metrics", ".json", "A model's test metrics with CIs.")


def synth_file(cohort: str, kind: str, root: str = ROOT) -> str:
    """A synthetic cohort's table, ground truth (tsv or json) or AD pattern (kind: a key of SYNTH_FILES)."""
    return f"{synth_dir(cohort, root)}/{SYNTH_FILES[_one_of(kind, SYNTH_FILES, 'synthetic file')]}"


def synth_scan(cohort: str, subject: str, root: str = ROOT) -> str:
    return f"{synth_dir(cohort, root)}/scans/{subject}.nii.gz"


def preprocessed(cohort: str, subject: str, kind: str = "nii", root: str = ROOT) -> str:
    """A preprocessed scan (nii), its sidecar (sidecar), its QC image (qc) or its registration QC image."""
    if kind == "registration_qc":
        return f"{preproc_dir(cohort, root)}/registration/{subject}.png"
    suffix = PREPROC_SUFFIXES[_one_of(kind, [*PREPROC_SUFFIXES, "registration_qc"], "preprocessed file")]
    return f"{preproc_dir(cohort, root)}/{subject}{suffix}"


def registration_qc(cohort: str, included: bool = False, root: str = ROOT) -> str:
    """The registration QC table, or (included) the cohort table without the subjects it excludes."""
    return f"{root}/qc/{cohort}/registration{'_included' if included else ''}.tsv"


# --- models and their results --------------------------------------------------------------------------


def model_file(name: str, file: str, root: str = ROOT) -> str:
    """A file of a model's folder: model.keras, history.tsv, metrics.json (validation), manifest.json,
    MODEL_CARD.md; model.json for an ROI baseline (name roi/...)."""
    return f"{model_dir(name, root)}/{_one_of(file, MODEL_FILES, 'model file')}"


def training_work(name: str, root: str = ROOT) -> str:
    """The training job's resumable state (checkpoints, partial history)."""
    return f"{model_dir(name, root)}/work"


def explain(name: str, file: str, root: str = ROOT) -> str:
    """An explanation file of a model (a name of EXPLAIN_FILES)."""
    return f"{root}/explain/{name}/{_one_of(file, EXPLAIN_FILES, 'explanation file')}"


# --- figures, tables, summary ----------------------------------------------------------------------------


def figure(name: str, root: str = ROOT) -> str:
    """A figure of the whole grid (a name of GRID_FIGURES)."""
    return f"{root}/figures/{_one_of(name, GRID_FIGURES, 'figure')}.png"


def model_figure(kind: str, name: str, root: str = ROOT) -> str:
    """A figure of one model: tsne, gradcam_examples, gradcam_means, occlusion, explain (side by side) or
    roi_coefficients (name without its roi/ prefix, as the baseline rules' wildcard)."""
    folder, suffix = {
        "tsne": ("tsne", ""),
        "gradcam_examples": ("gradcam", "_examples"),
        "gradcam_means": ("gradcam", "_means"),
        "occlusion": ("occlusion", ""),
        "explain": ("explain", ""),
        "roi_coefficients": ("roi_coefficients", ""),
    }[kind]
    return f"{root}/figures/{folder}/{name}{suffix}.png"


def table(name: str, ext: str = "tsv", root: str = ROOT) -> str:
    """A results table (TABLES, or explanations) as TSV or Markdown."""
    return f"{root}/tables/{_one_of(name, [*TABLES, 'explanations'], 'table')}.{_one_of(ext, ('tsv', 'md'), 'ext')}"


def findings(root: str = ROOT) -> str:
    """The findings in plain sentences (Markdown list), then the registration QC of the grid's native-space cohorts
    under its own heading: what the summary page states."""
    return f"{root}/tables/summary.md"


def summary_page(root: str = ROOT) -> str:
    return f"{root}/summary.html"


# --- logs and benchmarks ---------------------------------------------------------------------------------


def log(step: str, name: str, root: str = ROOT) -> str:
    return f"{root}/logs/{step}/{name}.log"


def benchmark(step: str, name: str, root: str = ROOT) -> str:
    return f"{root}/benchmarks/{step}/{name}.tsv"
