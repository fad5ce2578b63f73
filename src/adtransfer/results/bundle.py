"""The self-describing model bundle: manifest.json and MODEL_CARD.md beside a trained model.keras. No TensorFlow.

The manifest records everything needed to apply the model to a new scan exactly as the training scans were
processed (modality, space, preprocessing parameters, crop, mosaic size and storage type, intensity mapping,
class order, thresholds) and what a reader needs to judge it (training cohort counts, test metrics with CIs,
parent model, package versions, sha256 of model.keras and of the cache it was trained on). Its schema is
src/adtransfer/schemas/manifest.schema.yaml; it is validated when written and when read.
"""

from __future__ import annotations

import json
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import jsonschema
import numpy as np
import pandas as pd

from adtransfer import __version__, modalities
from adtransfer.errors import InputError
from adtransfer.io import sha256_file, write_text
from adtransfer.learning.splits import read_splits
from adtransfer.schemas import load_schema

if TYPE_CHECKING:
    from adtransfer.learning.predict import TrainedModel

MANIFEST = "manifest.json"
MODEL_CARD = "MODEL_CARD.md"
SCHEMA_VERSION = 1


def _installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def training_counts(cache: str | os.PathLike, splits: pd.DataFrame, set_column: str) -> dict:
    """Training and validation subjects of a split set: counts by diagnosis and by site, MMSE range."""
    with h5py.File(cache, "r") as h5:
        people = pd.DataFrame(
            {
                "subject_id": h5["subject_id"].asstr()[()],
                "diagnosis": h5["diagnosis"].asstr()[()],
                "site": h5["site"].asstr()[()],
                "mmse": h5["mmse"][()].astype(float),
            }
        )
    role = splits.set_index("subject_id")[set_column].reindex(people["subject_id"]).fillna("").to_numpy()
    out = {}
    for part in ("train", "val"):
        rows = people[role == part]
        mmse = rows["mmse"].to_numpy()
        mmse = mmse[np.isfinite(mmse)]
        out[part] = {
            "n": int(len(rows)),
            "by_diagnosis": {k: int(v) for k, v in rows["diagnosis"].value_counts().sort_index().items()},
            "by_site": {(k or "unknown"): int(v) for k, v in rows["site"].value_counts().sort_index().items()},
            "mmse_range": [float(mmse.min()), float(mmse.max())] if len(mmse) else None,
        }
    return out


def build_manifest(
    name: str,
    trained: TrainedModel,
    *,
    test_metrics: str | os.PathLike,
    preproc_sidecar: str | os.PathLike,
    parent: str | None = None,
    gradcam_layer: str = "mixed10",
    synthetic: bool = False,
) -> dict:
    """The manifest of one trained CNN, from the files the workflow wrote for it (nothing retyped; the split
    column is the one its metrics.json records)."""
    model, cache = Path(trained.model), trained.cache
    metrics = _read_json(trained.metrics, "the model's training metrics")
    settings = metrics["settings"]
    sidecar = _read_json(preproc_sidecar, "a preprocessing sidecar")
    with h5py.File(cache, "r") as h5:
        attrs = dict(h5.attrs)
        dtype = str(h5["mosaics"].dtype)
        cohort = str(attrs["cohort"])
    if sidecar["params_hash"] != attrs["params_hash"]:
        raise InputError(
            f"{preproc_sidecar}: preprocessing parameters (hash {sidecar['params_hash']}) differ from those of "
            f"the cache {cache} ({attrs['params_hash']}); rebuild the cache"
        )
    params = sidecar["params"]
    if params["modality"] != attrs["modality"]:
        raise InputError(f"{preproc_sidecar}: modality {params['modality']} but the cache holds {attrs['modality']}")
    task = settings["task"]
    tested = _read_json(test_metrics, "the model's test metrics")
    thresholds = {}
    if task == "classify":
        thresholds = {"default": 0.5, "validation_youden": float(tested["youden_threshold"])}
    validation = {k: v for k, v in metrics.items() if k.startswith("val_")}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "model": name,
        "task": task,
        "modality": params["modality"],
        "space": params["space"],
        "preprocessing": {"params": params, "params_hash": sidecar["params_hash"]},
        "mosaic": {"size": int(attrs["mosaic_size"]), "n_sets": 3, "tiles": 4, "dtype": dtype},
        "intensity": {"range": [float(v) for v in settings["intensity_range"]]},
        "classes": ["NC", "AD"] if task == "classify" else ["MMSE"],
        "thresholds": thresholds,
        "training": {
            "cohort": cohort,
            "set": metrics["set"],
            "n_train": int(metrics["n_train"]),
            "n_val": int(metrics["n_val"]),
            "epochs_run": int(metrics.get("epochs_run", 0)),
            "counts": training_counts(cache, read_splits(trained.splits), metrics["set"]),
            "settings": settings,
            "validation": validation,
        },
        "test_metrics": tested,
        "parent_model": parent or None,
        "gradcam_layer": gradcam_layer,
        "model_file": {"name": model.name, "sha256": sha256_file(model)},
        "cache": {
            "cohort": cohort,
            "sha256": sha256_file(cache),
            "versions": json.loads(attrs.get("versions", "{}")),
        },
        "versions": {
            "adtransfer": __version__,
            "python": sys.version.split()[0],
            **{pkg: _installed(pkg) for pkg in ("tensorflow", "keras", "numpy", "nibabel", "nipype", "h5py")},
        },
        "synthetic_data": bool(synthetic),
    }
    validate_manifest(manifest, f"{model.parent / MANIFEST}")
    return manifest


def _read_json(path: str | os.PathLike, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what} ({exc})") from None


def validate_manifest(manifest: dict, where: str) -> None:
    schema = load_schema("manifest")
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(manifest), key=lambda e: list(e.path))
    if errors:
        shown = "; ".join(f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors[:5])
        raise InputError(f"{where}: not a valid model manifest ({shown})")


def read_manifest(model_dir: str | os.PathLike) -> dict:
    """The validated manifest of a model folder; a folder without one is refused."""
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST
    if not model_dir.is_dir():
        raise InputError(f"{model_dir}: model folder does not exist")
    if not path.is_file():
        raise InputError(
            f"{path}: the model folder has no manifest.json, so how its scans must be preprocessed is unknown; "
            "the workflow writes it (snakemake results/models/<model>/manifest.json)"
        )
    manifest = _read_json(path, "the model manifest")
    if not isinstance(manifest, dict):
        raise InputError(f"{path}: not a valid model manifest (not a JSON object)")
    validate_manifest(manifest, str(path))
    return manifest


def write_bundle(manifest: dict, manifest_json: str | os.PathLike, model_card_md: str | os.PathLike) -> None:
    """manifest.json and MODEL_CARD.md in the model folder, each written to a temporary name and renamed. The
    bundle is that folder: `adtransfer predict` finds the model file the manifest names beside it."""
    model_file = Path(manifest_json).parent / manifest["model_file"]["name"]
    if not model_file.is_file():
        raise InputError(f"{manifest_json}: a bundle's manifest goes beside its model ({model_file} does not exist)")
    write_text(manifest_json, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    write_text(model_card_md, model_card(manifest))


# --- the model card ------------------------------------------------------------------------------------


def _counts(part: dict) -> str:
    dx = ", ".join(f"{k} {v}" for k, v in part["by_diagnosis"].items())
    sites = ", ".join(f"{k} {v}" for k, v in part["by_site"].items())
    mmse = f"; MMSE {part['mmse_range'][0]:g}-{part['mmse_range'][1]:g}" if part["mmse_range"] else ""
    return f"{part['n']} subjects ({dx}); sites: {sites}{mmse}"


def _performance(m: dict) -> list[str]:
    t = m["test_metrics"]
    if m["task"] == "classify":
        auc = t["auc"]["ensemble"]
        lines = [
            f"Held-out test set: {t['n_test']} subjects (AD {t['n_ad']}, NC {t['n_nc']}).",
            "",
            f"- ROC AUC (3-mosaic ensemble): {auc['auc']:.3f} (95 % bootstrap CI {auc['ci_low']:.3f}-"
            f"{auc['ci_high']:.3f}, {t.get('n_boot', '?')} resamples)",
        ]
        for key, label in (("at_threshold", "threshold"), ("at_youden", "validation-chosen threshold")):
            row = t[key]
            lines.append(
                f"- at {label} {row['threshold']:.3f}: sensitivity {row['sensitivity']['text']}, "
                f"specificity {row['specificity']['text']}, accuracy {row['accuracy']['text']}"
            )
        return lines
    lines = []
    for split in ("train", "val", "test"):
        if split in t:
            r = t[split]
            lines.append(
                f"- {split}: n {r['n']}, R^2 (squared Pearson r, the paper's) {r['pearson_r2']:.3f}"
                f"{_ci_text(r.get('pearson_r2_ci'))}, Pearson r {r['pearson_r']:.3f}, coefficient of determination "
                f"{r['r2_determination']:.3f}, MAE {r['mae']:.2f}{_ci_text(r.get('mae_ci'))}"
            )
    return lines or ["- no regression metrics"]


def _ci_text(ci) -> str:
    return f" (95 % CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""


def model_card(m: dict) -> str:
    """A one-minute read: what the model is for, what it was trained on, how well it did, where it stops."""
    modality = modalities.get(m["modality"]).label
    tr = m["training"]
    what = "AD vs NC classification (P(AD))" if m["task"] == "classify" else "MMSE regression (0-30)"
    params = m["preprocessing"]["params"]
    grid = params["crop_grid"]
    limits = [
        "- Research use only. Not a medical device; not for diagnosis or treatment decisions.",
        f"- Applies to {modality} scans only, "
        + ("already spatially normalized to MNI space." if m["space"] == "mni" else "registered to MNI space here."),
        f"- Trained on {tr['n_train']} subjects (validated on {tr['n_val']}) from one cohort; performance on other "
        "scanners, sites, acquisition protocols or populations is unknown until measured there.",
        "- One training run is one draw: a retrained model can differ (see the project's replicate results).",
    ]
    if m["synthetic_data"]:
        limits.insert(0, "- **Trained on synthetic data** (the project's generator): it says nothing about patients.")
    if m["task"] == "classify":
        limits.append("- MCI was not a training class: for MCI scans P(AD) has no validated meaning.")
    lines = [
        f"# Model card: {m['model']}",
        "",
        f"Inception v3 on 4x4 slice mosaics (Ni et al. 2021), {what}, for {modality}.",
        "",
        "## Intended use",
        "",
        "Research on Alzheimer's disease imaging: apply to new scans with `adtransfer predict --model <this folder>`.",
        "",
        "## Data",
        "",
        f"- Cohort `{tr['cohort']}`, split set `{tr['set']}`"
        + (f", fine-tuned from `{m['parent_model']}`" if m["parent_model"] else "")
        + ".",
        f"- Training: {_counts(tr['counts']['train'])}.",
        f"- Validation: {_counts(tr['counts']['val'])}.",
        f"- Preprocessing: {params['space']} space input, {params['modality']} intensity normalization"
        + (
            f" (reference {params['reference']})"
            if modalities.get(params["modality"]).normalization == "reference_ratio"
            else " (z-score in the brain)"
        )
        + f", crop {'x'.join(map(str, grid['shape']))} voxels of {grid['voxel_mm']:g} mm, "
        f"{m['mosaic']['size']} px mosaics, intensities {m['intensity']['range'][0]:g}..{m['intensity']['range'][1]:g}"
        " -> -1..1.",
        "",
        "## Performance",
        "",
        *_performance(m),
        "",
        "## Limits",
        "",
        *limits,
        "",
        f"model.keras sha256 `{m['model_file']['sha256']}`; trained on cache sha256 `{m['cache']['sha256']}`; "
        f"adtransfer {m['versions']['adtransfer']}"
        + (f", TensorFlow {m['versions']['tensorflow']}" if m["versions"].get("tensorflow") else "")
        + ".",
        "",
    ]
    return "\n".join(lines)
