"""Command line: `adtransfer <step> ...`. The Snakemake rules call these same entry points.

Imports are lazy, per subcommand: steps that do not train must not pay for TensorFlow (or pandas, nipype)
when they do not need them. Bad input ends with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from adtransfer import modalities
from adtransfer.errors import InputError

log = logging.getLogger("adtransfer")


def _modality(value: str) -> str:
    try:
        return modalities.get(value).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _names(value: str) -> list[str]:
    """A comma-separated list such as mixed5,mixed7 (empty items dropped)."""
    return [x for x in value.split(",") if x]


def _triple(kind: type) -> Callable[[str], tuple]:
    def parse(value: str) -> tuple:
        parts = value.replace(",", "x").split("x")
        if len(parts) != 3:
            raise argparse.ArgumentTypeError(f"expected three numbers like 95x95x48, got '{value}'")
        return tuple(kind(p) for p in parts)

    return parse


# `adtransfer train --backup-every`'s default: set it where jobs are killed more often than a minute (preemptible
# cluster partitions) without touching the workflow's rules or config (a change of either would retrain the models)
BACKUP_EVERY_ENV = "ADTRANSFER_BACKUP_EVERY"


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not (seconds >= 0 and seconds != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got '{value}'")
    return seconds


def _backup_every(given: float | None) -> float:
    """--backup-every, else $ADTRANSFER_BACKUP_EVERY (unset or empty: learning.train.BACKUP_EVERY_S, 60 s)."""
    from adtransfer.learning.train import BACKUP_EVERY_S  # (only the train command gets here)

    if given is not None:
        return given
    value = os.environ.get(BACKUP_EVERY_ENV, "").strip()
    try:
        return _seconds(value) if value else BACKUP_EVERY_S
    except argparse.ArgumentTypeError as exc:
        raise InputError(f"${BACKUP_EVERY_ENV}: {exc}") from None


# --- subcommands ---------------------------------------------------------------------------------------


def cmd_synth(args: argparse.Namespace) -> None:
    """Generate a synthetic cohort (participants.tsv + NIfTI scans + ground truth)."""
    from adtransfer.inputs.synth import CohortSpec, generate_cohort

    spec = CohortSpec.from_config(args.name, args.modality, json.loads(args.spec), args.seed)
    people = generate_cohort(spec, args.out, workers=args.threads)
    counts = people["diagnosis"].value_counts().to_dict()
    log.info(
        "synthetic cohort %s (%s): %d subjects %s -> %s",
        args.name,
        args.modality,
        len(people),
        counts,
        args.out,
    )


def cmd_validate(args: argparse.Namespace) -> None:
    """Check a participants table (TSV, CSV or BIDS root) and its scans."""
    from adtransfer.inputs.cohort import validate_cohort
    from adtransfer.io import atomic_output

    df = validate_cohort(args.table, classify=args.classify, check_scans=not args.table_only)
    counts = ", ".join(f"{k} {v}" for k, v in df["diagnosis"].value_counts().items())
    what = "table" if args.table_only else "cohort"
    print(
        f"{args.table}: valid {what}{' (' + args.modality + ')' if args.modality else ''}: "
        f"{len(df)} subjects ({counts})"
    )
    if args.out:
        with atomic_output(args.out) as tmp:
            df.drop(columns="row").to_csv(tmp, sep="\t", index=False)


def cmd_preprocess(args: argparse.Namespace) -> None:
    """Preprocess one scan: reorient, register (space native), resample to MNI, normalize, crop."""
    from adtransfer.imaging.grid import Grid
    from adtransfer.imaging.preprocess import PreprocParams, preprocess_subject
    from adtransfer.imaging.registration import RegistrationSettings
    from adtransfer.imaging.templates import MNI_2MM

    params = PreprocParams(
        modality=args.modality,
        crop_grid=Grid(args.crop_shape, MNI_2MM.voxel_mm, args.crop_origin),
        reference=args.reference,
        interpolation=args.interpolation,
        space=args.space,
        registration=RegistrationSettings.from_config(json.loads(args.registration)),
    )
    preprocess_subject(
        args.input,
        args.output,
        params,
        subject=args.subject,
        qc_png=args.qc,
        sidecar=args.sidecar,
        registration_png=args.registration_qc,
    )
    log.info("preprocessed %s -> %s", args.input, args.output)


def cmd_registration_qc(args: argparse.Namespace) -> None:
    """Registration QC of a native-space cohort: flag subjects below a similarity; exclude or keep them."""
    from adtransfer.imaging.registration import registration_qc
    from adtransfer.io import atomic_output

    qc, included = registration_qc(args.table, args.preproc_dir, args.min_similarity, args.on_fail)
    flagged = qc[qc["flagged"]]
    for row in flagged.itertuples():
        log.warning(
            "subject %s: registration similarity %.3f < %g: %s",
            row.subject_id,
            row.similarity,
            args.min_similarity,
            row.decision,
        )
    log.info(
        "registration QC: %d subjects, %d flagged (%s), %d used", len(qc), len(flagged), args.on_fail, len(included)
    )
    with atomic_output(args.out) as tmp:
        qc.to_csv(tmp, sep="\t", index=False)
    with atomic_output(args.included) as tmp:
        included.to_csv(tmp, sep="\t", index=False)


def cmd_cache(args: argparse.Namespace) -> None:
    """Gather preprocessed volumes of a cohort into an HDF5 mosaic cache."""
    from adtransfer.imaging.cache import build_cache

    _call(build_cache, args, out=args.output, workers=args.threads)
    log.info("wrote %s", args.output)


def cmd_split(args: argparse.Namespace) -> None:
    """Subject-level stratified splits: test set, nested training subsets, train/val."""
    from adtransfer.catalog import is_classification_set
    from adtransfer.inputs.cohort import read_validated
    from adtransfer.learning.splits import make_splits, read_fixed_test, write_splits

    df = read_validated(args.table)
    counts = json.loads(args.test_counts) if args.test_counts else None
    fixed = read_fixed_test(args.test_file) if args.test_file else None
    splits = make_splits(
        df, counts, args.sizes, args.val_fraction, args.seed, args.mmse_include_mci, args.mmse_min, fixed
    )
    write_splits(splits, args.out)
    log.info(
        "%s: %d test subjects; %s",
        args.out,
        int(splits["test"].sum()),
        ", ".join(
            f"{c}: {int((splits[c] == 'train').sum())} train / {int((splits[c] == 'val').sum())} val"
            for c in splits.columns
            if is_classification_set(c)
        ),
    )


def cmd_train(args: argparse.Namespace) -> None:
    """Train one model (TensorFlow): pre-training, fine-tuning, scratch or MMSE."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off the console
    from adtransfer.learning.train import TrainSettings, train_model

    settings = TrainSettings.from_json(args.settings)
    settings.threads = args.threads
    every = _backup_every(args.backup_every)
    metrics = _call(
        train_model, args, splits_path=args.splits, set_column=args.set, settings=settings, backup_every=every
    )
    shown = {k: v for k, v in metrics.items() if k.startswith("val_") or k in ("seconds", "epochs_run")}
    log.info("trained %s: %s", args.model_out, json.dumps(shown))


def cmd_predict_cohort(args: argparse.Namespace) -> None:
    """Predict every subject of a cached cohort with one trained CNN (TensorFlow; in the workflow the train job runs
    the same code: `train --predictions-out --features-out`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from adtransfer.learning.predict import predict_cohort

    _call(predict_cohort, args, trained=_trained_model(args), out_tsv=args.out, out_features=args.features)


def cmd_bundle(args: argparse.Namespace) -> None:
    """Write manifest.json and MODEL_CARD.md beside a trained and evaluated model."""
    from adtransfer.results.bundle import build_manifest, write_bundle

    manifest = _call(build_manifest, args, trained=_trained_model(args))
    write_bundle(manifest, args.manifest, args.model_card)
    log.info("model bundle %s: %s and %s", args.name, args.manifest, args.model_card)


def cmd_predict(args: argparse.Namespace) -> None:
    """Apply a trained model bundle to new scans: P(AD), class, MMSE, Grad-CAM per scan (TensorFlow)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from adtransfer.learning.predict_scans import predict_scans

    folders = {"model_dir": args.model, "out_dir": args.out, "mmse_dir": args.mmse_model}
    _call(predict_scans, args, **folders, with_gradcam=not args.no_gradcam)


def cmd_baseline(args: argparse.Namespace) -> None:
    """Fit the ROI baseline (logistic or ridge) on a split's training subjects."""
    from adtransfer.results.baseline import train_baseline

    params = train_baseline(args.cache, args.splits, args.set, args.task, args.out, args.predictions, args.seed)
    log.info(
        "ROI %s baseline on %d training subjects, penalty %.3g -> %s",
        args.task,
        params["n_train"],
        params["penalty"],
        args.out,
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Test-set metrics of one model from its prediction table."""
    from adtransfer.results.evaluate import evaluate, read_predictions, write_json

    threshold = args.threshold if args.threshold == "youden" else float(args.threshold)
    metrics = evaluate(read_predictions(args.predictions), args.task, args.n_boot, args.seed, threshold)
    metrics["model"] = args.name or args.predictions
    write_json(metrics, args.out)
    if args.task == "classify":
        auc = metrics["auc"]["ensemble"]
        log.info(
            "%s: test AUC %.3f (%.3f-%.3f), accuracy %s",
            metrics["model"],
            auc["auc"],
            auc["ci_low"],
            auc["ci_high"],
            metrics["at_threshold"]["accuracy"]["text"],
        )
    else:
        log.info("%s: %s", metrics["model"], json.dumps(metrics.get("test", {})))


def _call(func: Callable, args: argparse.Namespace, **given):
    """Call a step's library function with the command-line values named like its parameters (`given`: the
    others); parameters with neither keep their defaults."""
    import inspect

    named = {name: getattr(args, name) for name in inspect.signature(func).parameters if hasattr(args, name)}
    return func(**{**named, **given})


def _trained_model(args: argparse.Namespace):
    """A step's --model, --metrics, --cache (and --splits, --set where it has them) as one TrainedModel."""
    from adtransfer.learning.predict import TrainedModel

    return TrainedModel(args.model, args.metrics, args.cache, getattr(args, "splits", None), getattr(args, "set", None))


def cmd_gradcam(args: argparse.Namespace) -> None:
    """Grad-CAM of a CNN on its test subjects, in 2D and back in 3D (TensorFlow)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from adtransfer.results.explain import run_gradcam

    maps = {"AD": args.map_ad, "NC": args.map_nc}
    summary = _call(run_gradcam, args, trained=_trained_model(args), map_files=maps, n_examples=args.examples)
    for layer, entry in summary["layers"].items():
        log.info("Grad-CAM %s, %s: %s", args.model, layer, json.dumps(entry))


def cmd_occlusion(args: argparse.Namespace) -> None:
    """Region occlusion of a CNN classifier on its test subjects (TensorFlow)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from adtransfer.results.occlusion import run_occlusion

    summary = _call(run_occlusion, args, trained=_trained_model(args))
    log.info(
        "occlusion %s: %s s for %s images; ground truth %s",
        args.model,
        summary["seconds"],
        summary["images"],
        json.dumps(summary.get("ground_truth", {})),
    )


def cmd_explain_baseline(args: argparse.Namespace) -> None:
    """Coefficient brain map and region ranking of an ROI baseline."""
    import h5py

    from adtransfer.imaging.cache import crop_grid_of
    from adtransfer.results.baseline import explain_baseline, load

    with h5py.File(args.cache, "r") as h5:
        crop_grid = crop_grid_of(dict(h5.attrs))
    summary = explain_baseline(load(args.model), crop_grid, args.summary, args.table, args.nifti, args.png, args.truth)
    log.info("ROI baseline explanation %s: %s", args.model, json.dumps(summary.get("ground_truth", {}).get("hits")))


def _results(args: argparse.Namespace):
    """The results tree and model grid a report step reads (--results, --grid)."""
    from adtransfer.results.report import Results

    if not args.grid:
        raise InputError(f"{args.command} {getattr(args, 'kind', '')}: --grid is needed (catalog.grid_spec as JSON)")
    return Results(args.results, args.grid)


def cmd_tables(args: argparse.Namespace) -> None:
    """Tables 3-4 with ROI baselines, the pre-specified comparisons (Holm), replicates, MMSE, the summary page."""
    from adtransfer.results.report import write_tables

    sentences = write_tables(
        args.results,
        args.grid,
        {name: (tsv, md) for name, tsv, md in args.table or []},
        args.findings,
        comparison_spec=json.loads(args.comparisons) if args.comparisons else None,
        n_boot=args.n_boot,
        seed=args.seed,
        alpha=args.alpha,
        truths=dict(args.truth or []),
        registration_qc=dict(args.registration_qc or []),
    )
    for sentence in sentences:
        print(sentence)


def cmd_summary(args: argparse.Namespace) -> None:
    """The one-page result (HTML) from the tables, the findings and key figures."""
    from adtransfer.results.report import write_summary_page

    write_summary_page(dict(args.table or []), args.findings, args.out, dict(args.figure or []), args.alpha)
    log.info("wrote %s", args.out)


def cmd_explanations(args: argparse.Namespace) -> None:
    """Grad-CAM, occlusion and ROI coefficients against the ground truth, one table."""
    from adtransfer.results.report import explanation_table, write_table

    write_table(explanation_table(_results(args)), args.out, args.markdown)


def cmd_explain_figure(args: argparse.Namespace) -> None:
    """Grad-CAM, region occlusion and the ROI baseline's coefficients of one CNN, side by side."""
    from adtransfer.results.report import explanation_figure

    explanation_figure(_results(args), args.model, args.cache, args.out, args.dpi)
    log.info("wrote %s", args.out)


def cmd_figure(args: argparse.Namespace) -> None:
    """One report figure from predictions and metrics."""
    from adtransfer.results import report

    if args.kind == "tsne":
        report.tsne(args.features, args.out, args.title, seed=args.seed, perplexity=args.perplexity, dpi=args.dpi)
    else:
        if args.kind == "roc" and not args.role:
            raise InputError("figure roc needs --role fdg or ecd")
        options = {"role": args.role} if args.kind == "roc" else {}
        report.GRID_FIGURES[args.kind](_results(args), args.out, args.dpi, **options)
    log.info("wrote %s", args.out)


# --- parser --------------------------------------------------------------------------------------------


def _add_cohort_data(
    p: argparse.ArgumentParser,
    column_help: str = "the split column the model was trained on",
    *,
    splits: bool = True,
    column: bool = True,
) -> None:
    """The data a model is trained on: the cohort's cache, its split table and the model's split column."""
    p.add_argument("--cache", required=True, help="the cohort's HDF5 mosaic cache")
    if splits:
        p.add_argument("--splits", required=True, help="the cohort's split table")
    if column:
        p.add_argument("--set", required=True, help=column_help)


def _add_pairs(p: argparse.ArgumentParser, flag: str, metavar: tuple[str, str], help: str) -> None:
    """A repeatable option of two values (a name and its file), collected as a list of pairs."""
    p.add_argument(flag, nargs=2, action="append", metavar=metavar, help=f"{help} (repeat)")


def _add_model_inputs(p: argparse.ArgumentParser, what: str, *, splits: bool = True, column: bool = True) -> None:
    """A trained CNN and its cohort data, as `_trained_model` reads them (learning.predict.TrainedModel)."""
    p.add_argument("--model", required=True, help=f"the {what} model.keras")
    p.add_argument("--metrics", required=True, help="the training job's metrics.json beside it (its settings)")
    _add_cohort_data(p, splits=splits, column=column)


def _add_explanation_outputs(p: argparse.ArgumentParser, summary_help: str) -> None:
    """What every CNN explanation writes (run_gradcam, run_occlusion): its summary and ranked region table, and on
    a synthetic cohort the ground truth they are scored against."""
    p.add_argument("--summary", dest="summary_json", required=True, help=summary_help)
    p.add_argument("--regions", dest="regions_tsv", required=True, help="region table (TSV)")
    p.add_argument("--truth", dest="truth_json", help="ground_truth.json of a synthetic cohort")


class _NotBuilt:
    """Stands in for the parser of a step that is not the one invoked: its arguments are not built. So a step's
    block in build_parser may only call add_argument (and grid_args) on its parser."""

    def add_argument(self, *args, **kwargs) -> None:
        pass


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with `only` (a step's name), that step's arguments alone: building all 20 steps'
    is ~10 ms of a ~0.3 CPU s per-subject preprocessing job. Not a step's name: the whole parser."""
    from adtransfer import __version__

    parser = argparse.ArgumentParser(prog="adtransfer", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"adtransfer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STEP")

    def add(name: str, func: Callable) -> argparse.ArgumentParser:
        """A subcommand: `func` runs it and its docstring is its help."""
        if only is not None and name != only:
            return _NotBuilt()  # type: ignore[return-value]
        p = sub.add_parser(name, help=func.__doc__, description=func.__doc__)
        p.set_defaults(func=func)
        p.add_argument("--log", help="also write messages to this log file")
        return p

    p = add("synth", cmd_synth)
    p.add_argument("--name", required=True, help="cohort name; subject ids are NAME0001, NAME0002, ...")
    p.add_argument("--modality", type=_modality, required=True, help="fdg or ecd")
    p.add_argument("--spec", default="{}", help="JSON object: n_ad, n_nc, n_mci and optional model settings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--threads", type=int, default=1)

    p = add("validate", cmd_validate)
    p.add_argument("table", help="participants table (.tsv/.csv) or a BIDS dataset root")
    p.add_argument("--modality", type=_modality, help="fdg or ecd (recorded in the message)")
    p.add_argument(
        "--no-classify", dest="classify", action="store_false", help="do not require both AD and NC subjects"
    )
    p.add_argument("--table-only", action="store_true", help="check the table and file names, open no scan")
    p.add_argument("--out", help="write the normalized table (absolute paths, sha256 per scan) here")

    p = add("preprocess", cmd_preprocess)
    p.add_argument("--input", required=True, help="the subject's NIfTI scan, or a folder with one DICOM series")
    p.add_argument("--output", required=True, help="preprocessed volume (.nii.gz)")
    p.add_argument("--modality", type=_modality, required=True)
    p.add_argument("--subject", default="", help="subject id, for messages and the sidecar")
    p.add_argument("--crop-shape", type=_triple(int), default=(95, 95, 48))
    p.add_argument(
        "--crop-origin",
        type=_triple(float),
        default=(-94.0, -112.0, -36.0),
        help="MNI mm of the crop's first voxel centre",
    )
    p.add_argument(
        "--reference", default="brain", choices=["brain", "cerebellum"], help="FDG intensity reference region"
    )
    p.add_argument("--interpolation", type=int, default=1, help="spline order for resampling")
    p.add_argument(
        "--space", default="mni", choices=["mni", "native"], help="native: register to the modality's MNI template"
    )
    p.add_argument(
        "--registration",
        default="{}",
        help="JSON: registration settings (shrink, smooth_mm, rigid_iterations, affine_iterations, sampling, "
        "nonlinear, nonlinear_mesh, nonlinear_iterations, cropped_below, cropped_sampling)",
    )
    p.add_argument("--qc", help="QC PNG of the mosaics")
    p.add_argument("--registration-qc", help="QC PNG of the scan on the MNI grid with the template brain's outline")
    p.add_argument("--sidecar", help="JSON sidecar with input sha256, parameters, statistics and registration")

    p = add("registration-qc", cmd_registration_qc)
    p.add_argument("--table", required=True, help="validated cohort table (from `adtransfer validate --out`)")
    p.add_argument("--preproc-dir", required=True, help="folder with SUBJECT.json sidecars")
    p.add_argument("--min-similarity", type=float, required=True, help="flag subjects below this similarity")
    p.add_argument("--on-fail", choices=["exclude", "keep"], required=True, help="what happens to flagged subjects")
    p.add_argument("--out", required=True, help="the QC table (TSV): similarity, flagged, decision per subject")
    p.add_argument("--included", required=True, help="the cohort table without the excluded subjects (TSV)")

    p = add("cache", cmd_cache)
    p.add_argument("--table", required=True, help="validated cohort table (from `adtransfer validate --out`)")
    p.add_argument("--preproc-dir", required=True, help="folder with SUBJECT.nii.gz and SUBJECT.json")
    p.add_argument("--output", required=True, help="the .h5 cache")
    p.add_argument("--size", type=int, required=True, help="mosaic size in pixels (multiple of 4)")
    p.add_argument("--modality", type=_modality, required=True)
    p.add_argument("--cohort", required=True, help="cohort name")
    p.add_argument("--threads", type=int, default=1)

    p = add("split", cmd_split)
    p.add_argument("--table", required=True, help="validated cohort table (results/cohort/COHORT.tsv)")
    p.add_argument("--out", required=True, help="split table (TSV)")
    p.add_argument("--test-counts", help='JSON, e.g. {"AD": 118, "NC": 149}')
    p.add_argument("--test-file", help="a fixed test set instead: file listing subject ids")
    p.add_argument(
        "--sizes",
        type=lambda v: [int(x) for x in v.split(",")],
        help="comma-separated nested training-set sizes; default: the whole pool",
    )
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mmse-include-mci", action="store_true", help="MCI subjects enter MMSE regression")
    p.add_argument("--mmse-min", type=float, default=0.0, help="only subjects with MMSE >= this in regression")

    p = add("train", cmd_train)
    _add_cohort_data(p, "split column: n100, nall, mmse_set, ...")
    p.add_argument("--model-out", required=True, help="the trained model (.keras)")
    p.add_argument("--history-out", required=True, help="the per-epoch history (TSV)")
    p.add_argument("--metrics-out", required=True, help="the validation metrics (JSON)")
    p.add_argument(
        "--work-dir",
        required=True,
        help="resume state kept across a killed run (created; removed after success)",
    )
    p.add_argument("--settings", required=True, help="JSON training settings (adtransfer.learning.train.TrainSettings)")
    p.add_argument("--pretrained", help="fine-tune from this model (.keras; new head)")
    p.add_argument("--predictions-out", help="also write predict-cohort's prediction table (TSV) of the trained model")
    p.add_argument("--features-out", help="and its FC-layer features (HDF5); with --predictions-out")
    p.add_argument(
        "--backup-every",
        type=_seconds,
        metavar="SECONDS",
        help="commit the resume backup after an epoch when this long has passed since the last commit, and after "
        f"the last epoch (0: every epoch; default ${BACKUP_EVERY_ENV} or 60)",
    )
    p.add_argument("--threads", type=int, default=2)

    def grid_args(p: argparse.ArgumentParser, figure: bool = False, grid_required: bool = True) -> None:
        """A step that reads the model grid's results: the tree, the grid, and (figure) the PNG and its dpi."""
        p.add_argument("--results", default="results", help="results folder (paths as adtransfer.layout builds them)")
        p.add_argument("--grid", required=grid_required, help="the model grid: JSON of catalog.grid_spec(config)")
        if figure:
            p.add_argument("--dpi", type=int, default=120)
            p.add_argument("--out", required=True, help="the figure (PNG)")

    p = add("predict", cmd_predict)
    p.add_argument("inputs", nargs="+", metavar="SCAN|TABLE", help="NIfTI scans, participants tables or BIDS roots")
    p.add_argument("--model", required=True, help="classification model folder (model.keras + manifest.json)")
    p.add_argument("--mmse-model", help="MMSE regression model folder, for an MMSE estimate")
    p.add_argument("--modality", type=_modality, help="modality of the scans (fdg or ecd), checked against the model")
    p.add_argument(
        "--space", default="mni", choices=["mni", "native"], help="space of the scans (mni: already normalized)"
    )
    p.add_argument("--out", default="predictions", help="output folder (default: ./predictions)")
    p.add_argument("--allow-modality-mismatch", action="store_true", help="apply a model to another modality")
    p.add_argument("--allow-space-mismatch", action="store_true", help="apply a model to scans of another space")
    p.add_argument("--no-gradcam", action="store_true", help="skip the Grad-CAM PNG and NIfTI (faster)")
    p.add_argument("--threads", type=int, default=2)

    p = add("bundle", cmd_bundle)
    _add_model_inputs(p, "trained", column=False)  # the column is the one metrics.json records
    p.add_argument("--manifest", required=True, help="manifest.json to write (beside the model file)")
    p.add_argument("--model-card", required=True, help="MODEL_CARD.md to write")
    p.add_argument("--name", required=True, help="catalog name of the model, e.g. ecd/from_fdg_n160")
    p.add_argument("--test-metrics", required=True, help="the model's results/metrics/{model}.json")
    p.add_argument("--preproc-sidecar", required=True, help="JSON sidecar of one preprocessed subject of the cohort")
    p.add_argument("--parent", help="catalog name of the model it was fine-tuned from")
    p.add_argument("--gradcam-layer", default="mixed10", help="Grad-CAM layer for predictions on new scans")
    p.add_argument("--synthetic", action="store_true", help="the cohort is the synthetic generator's")

    p = add("predict-cohort", cmd_predict_cohort)
    _add_model_inputs(p, "trained")
    p.add_argument("--out", required=True, help="prediction table (TSV)")
    p.add_argument("--features", required=True, help="FC-layer features (HDF5), for t-SNE")
    p.add_argument("--threads", type=int, default=2)

    p = add("baseline", cmd_baseline)
    _add_cohort_data(p, "the split column of the matching CNN")
    p.add_argument("--task", choices=["classify", "mmse"], required=True)
    p.add_argument("--out", required=True, help="model JSON")
    p.add_argument("--predictions", required=True, help="prediction table (TSV) of every subject")
    p.add_argument("--seed", type=int, default=0)

    p = add("evaluate", cmd_evaluate)
    p.add_argument("--predictions", required=True)
    p.add_argument("--task", choices=["classify", "mmse"], required=True)
    p.add_argument("--out", required=True, help="metrics JSON")
    p.add_argument("--name", help="model name recorded in the JSON")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the AUC CI")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", default="0.5", help="P(AD) threshold, or 'youden' (chosen on validation)")

    p = add("gradcam", cmd_gradcam)
    _add_model_inputs(p, "classifier's", splits=False, column=False)  # its test subjects: the prediction table's
    p.add_argument("--predictions", required=True)
    p.add_argument("--layer", required=True, help="e.g. mixed10 (paper) or mixed7 (small inputs)")
    _add_explanation_outputs(p, "summary JSON (map size, ground truth)")
    p.add_argument("--map-ad", required=True, help="mean AD map (NIfTI on the MNI grid)")
    p.add_argument("--map-nc", required=True, help="mean NC map (NIfTI on the MNI grid)")
    p.add_argument("--examples-png", required=True)
    p.add_argument("--means-png", required=True)
    p.add_argument("--examples", type=int, default=2, help="example subjects per class")
    p.add_argument(
        "--score-layers",
        type=_names,
        default=[],
        help="comma-separated further layers scored against --truth (no figures)",
    )
    p.add_argument("--threads", type=int, default=2)

    p = add("occlusion", cmd_occlusion)
    _add_model_inputs(p, "classifier's")  # the split column: its NC training subjects are the reference
    p.add_argument("--preproc-dir", required=True, help="folder with the preprocessed SUBJECT.nii.gz and .json")
    _add_explanation_outputs(p, "summary JSON (subjects, time, ground truth)")
    p.add_argument("--nifti", required=True, help="drop in P(AD) per region (NIfTI on the MNI grid)")
    p.add_argument("--png", required=True, help="brain-map figure")
    p.add_argument("--classes", type=_names, default=["AD"], help="test subjects occluded: AD (default) or AD,NC")
    p.add_argument("--threads", type=int, default=2)

    p = add("explain-baseline", cmd_explain_baseline)
    p.add_argument("--model", required=True, help="baseline model JSON")
    p.add_argument("--cache", required=True, help="the cohort's cache (for the crop grid)")
    p.add_argument("--summary", required=True, help="summary JSON (ground-truth scores)")
    p.add_argument("--table", required=True, help="ranked coefficients (TSV)")
    p.add_argument("--nifti", required=True, help="coefficient map (NIfTI on the MNI grid)")
    p.add_argument("--png", required=True)
    p.add_argument("--truth", help="ground_truth.json of a synthetic cohort")

    p = add("tables", cmd_tables)
    grid_args(p)
    p.add_argument(
        "--table",
        nargs=3,
        action="append",
        metavar=("NAME", "TSV", "MD"),
        help="where one table goes, as TSV and Markdown (repeat for each of layout.TABLES)",
    )
    p.add_argument("--findings", required=True, help="the findings in sentences (Markdown list)")
    p.add_argument("--comparisons", help="config `comparisons` as JSON (default: the schema's families)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for paired-difference CIs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise level of the Holm adjustment")
    _add_pairs(
        p,
        "--truth",
        ("ROLE", "JSON"),
        "ground_truth.json of a synthetic cohort (fdg or ecd role): the summary says what kind it is",
    )
    _add_pairs(
        p,
        "--registration-qc",
        ("COHORT", "TSV"),
        "registration QC table of a native-space cohort: the summary lists its flagged subjects",
    )

    p = add("summary", cmd_summary)
    _add_pairs(p, "--table", ("NAME", "TSV"), "a table `tables` wrote")
    p.add_argument("--findings", required=True, help="the findings `tables` wrote")
    p.add_argument("--out", required=True, help="summary page (HTML)")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise level (as given to `tables`)")
    p.add_argument(
        "--figure", nargs=2, action="append", metavar=("CAPTION", "PNG"), help="a figure to show inline (repeat)"
    )

    p = add("explanations", cmd_explanations)
    grid_args(p)
    p.add_argument("--out", required=True, help="the table (TSV)")
    p.add_argument("--markdown", required=True, help="the table for people (Markdown)")

    p = add("explain-figure", cmd_explain_figure)
    grid_args(p, figure=True)
    p.add_argument("--model", required=True, help="CNN classifier name, e.g. fdg/n160")
    p.add_argument("--cache", required=True, help="the model's cohort cache (for the crop grid)")

    p = add("figure", cmd_figure)
    p.add_argument("kind", choices=["roc", "sample-size", "mmse", "learning", "tsne"])
    grid_args(p, figure=True, grid_required=False)  # tsne reads one features file, no grid
    p.add_argument("--role", choices=["fdg", "ecd"], help="roc: which cohort")
    p.add_argument("--features", help="tsne: features HDF5 from `predict-cohort`")
    p.add_argument("--title", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--perplexity", type=float, default=30.0)
    if only is not None and only not in sub.choices:  # `--help`, `--version`, a misspelt step: list them all
        return build_parser()
    return parser


def _setup_logging(logfile: str | None, console_stream=None) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    root = logging.getLogger("adtransfer")
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):  # main() may run more than once in a process (tests)
        root.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(console_stream or sys.stderr)
    console.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(console)
    if logfile:
        handler = logging.FileHandler(logfile, mode="a")
        handler.setFormatter(fmt)
        root.addHandler(handler)


@contextlib.contextmanager
def _native_stderr_to(logfile: str | None):
    """Send what libraries write to file descriptor 2 (TensorFlow's C++ start-up and CUDA-probe lines, Python
    warnings, a crash's traceback) to the step's log file, and yield a stream on the real stderr for our own
    messages. A failed Snakemake job prints its log, so nothing is lost; the console keeps one line per event."""
    if not logfile:
        yield sys.stderr
        return
    Path(logfile).parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    target = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 2)
    os.close(target)
    console = open(os.dup(saved), "w", buffering=1, closefd=True)
    try:
        yield console
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        console.close()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(only=argv[0] if argv else None).parse_args(argv)
    with _native_stderr_to(args.log) as console:
        _setup_logging(args.log, console)
        try:
            args.func(args)
        except InputError as exc:
            log.error("error: %s", exc)
            return 2
        finally:
            for handler in list(log.handlers):  # the console stream closes with this context
                log.removeHandler(handler)
                handler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
