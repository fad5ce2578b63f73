"""`adtransfer predict`: apply a trained model bundle to new scans (TensorFlow).

Every setting that shapes the model's input is read from the bundle's manifest.json, never retyped: the
preprocessing parameters (adtransfer.imaging.preprocess, the workflow's own nipype steps), the mosaic size, the cache's
storage type (mosaics are cast to float16 when the training cache stored them so) and the intensity mapping.
A scan therefore reaches the network exactly as it would through the workflow's preprocess -> cache -> predict
steps. Per scan: P(AD) of each mosaic and of their mean (the ensemble), the class at 0.5 and at the
validation-chosen threshold, the MMSE estimate when an MMSE model is given, and Grad-CAM (of the AD output)
on the mosaics (PNG) and back in 3D on the MNI grid (NIfTI).

Everything is checked before the model is loaded: bundles, modality and space against the manifests, every
scan and table with the workflow's own validation (adtransfer.io.load_volume, adtransfer.inputs.cohort).
Only model.keras (Keras safe mode) and JSON are loaded from a model folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from adtransfer.errors import InputError
from adtransfer.imaging.grid import Grid
from adtransfer.imaging.mosaic import make_mosaics
from adtransfer.imaging.preprocess import PreprocParams
from adtransfer.io import atomic_output, is_nifti_path, load_volume, sha256_file, write_text
from adtransfer.learning.data import scale
from adtransfer.results.bundle import read_manifest
from adtransfer.results.evaluate import MOSAIC_COLUMNS

log = logging.getLogger("adtransfer")

SUBJECT_ID = re.compile(r"[^A-Za-z0-9_-]+")
TABLE_SUFFIXES = (".tsv", ".csv", ".txt")


# --- inputs --------------------------------------------------------------------------------------------


@dataclass
class Scan:
    subject_id: str
    path: str
    who: str  # for messages: file, and table row when it came from a table
    diagnosis: str = ""  # from a table (the input contract requires it); "" for a bare scan


def subject_id_of(path: str | os.PathLike) -> str:
    """A scan file's name without .nii/.nii.gz, reduced to the characters output names may carry."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return SUBJECT_ID.sub("_", name).strip("_") or "scan"


def collect_scans(inputs: list[str]) -> list[Scan]:
    """Scans named on the command line and rows of participants tables (or BIDS roots), all validated."""
    from adtransfer.inputs.cohort import validate_cohort

    scans: list[Scan] = []
    for item in inputs:
        path = Path(item)
        if is_nifti_path(path):
            load_volume(path)  # the workflow's checks: readable, 3D, finite, non-empty
            scans.append(Scan(subject_id_of(path), str(path), str(path)))
        elif path.is_dir() or path.suffix.lower() in TABLE_SUFFIXES:
            table = validate_cohort(path, classify=False, check_scans=True, progress=False)
            for rec in table.itertuples(index=False):
                who = f"{rec.path} (subject {rec.subject_id}, {table.attrs['table']} row {rec.row})"
                scans.append(Scan(rec.subject_id, rec.path, who, rec.diagnosis))
        elif not path.exists():
            raise InputError(f"{path}: no such scan or table")
        else:
            raise InputError(f"{path}: neither a NIfTI scan (.nii, .nii.gz) nor a participants table (.tsv, .csv)")
    if not scans:
        raise InputError("no scans to predict")
    seen: dict[str, str] = {}
    for scan in scans:
        if scan.subject_id in seen:
            raise InputError(
                f"{scan.who}: subject id {scan.subject_id!r} also names {seen[scan.subject_id]}; "
                "outputs are named by subject id, so ids must be unique (rename one file or use a table)"
            )
        seen[scan.subject_id] = scan.who
    return scans


# --- the bundle ----------------------------------------------------------------------------------------


def preproc_params(manifest: dict, where: str) -> PreprocParams:
    """The manifest's preprocessing as the workflow's PreprocParams (fields this version lacks are refused)."""
    raw = dict(manifest["preprocessing"]["params"])
    known = {f.name for f in fields(PreprocParams)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputError(
            f"{where}: preprocessing setting(s) {', '.join(unknown)} unknown to this adtransfer version; update it"
        )
    g = raw["crop_grid"]
    raw["crop_grid"] = Grid(tuple(int(v) for v in g["shape"]), float(g["voxel_mm"]), tuple(map(float, g["origin_mm"])))
    if "registration" in raw:  # JSON gives a dict; the digest and the register step need the settings object
        from adtransfer.imaging.registration import RegistrationSettings

        raw["registration"] = RegistrationSettings.from_config(raw["registration"])
    return PreprocParams(**raw)


@dataclass
class Bundle:
    folder: Path
    manifest: dict
    params: PreprocParams
    net: object = None
    extras: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.manifest["model"]

    @classmethod
    def open(cls, folder: str | os.PathLike, task: str, option: str) -> Bundle:
        folder = Path(folder)
        manifest = read_manifest(folder)
        if manifest["task"] != task:
            raise InputError(f"{folder}: {option} needs a {task} model, this one is a {manifest['task']} model")
        model_file = folder / manifest["model_file"]["name"]
        if not model_file.is_file():
            raise InputError(f"{model_file}: model file missing beside its manifest")
        return cls(folder, manifest, preproc_params(manifest, str(folder / "manifest.json")))

    @property
    def model_path(self) -> Path:
        """The model file the manifest names, beside it in the bundle folder."""
        return self.folder / self.manifest["model_file"]["name"]

    def check_model_file(self) -> None:
        if sha256_file(self.model_path) != self.manifest["model_file"]["sha256"]:
            raise InputError(
                f"{self.model_path}: not the model its manifest describes (sha256 differs); "
                "rebuild the bundle (the workflow's bundle rule)"
            )

    def load(self) -> None:
        import keras

        path = self.model_path
        try:
            # Keras' safe mode: no Python code (lambdas) is deserialized from the file
            self.net = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:  # Keras raises several types for a file that is not a .keras model
            text = " ".join(str(exc).split())[:300]
            raise InputError(f"{path}: cannot load the Keras model ({type(exc).__name__}: {text})") from None

    def inputs(self, volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The mosaics as the cache stores them (size, dtype) and the network's input (intensity mapping)."""
        mos = make_mosaics(volume, self.manifest["mosaic"]["size"]).astype(self.manifest["mosaic"]["dtype"])
        size = mos.shape[-1]
        return mos.astype(np.float32), scale(mos.reshape(-1, size, size, 1), tuple(self.manifest["intensity"]["range"]))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Per-mosaic outputs (3,): P(AD) or MMSE, as the workflow's cohort prediction computes them."""
        batch = int(self.manifest["training"]["settings"].get("batch_size", 32))
        out = np.asarray(self.net.predict(x, batch_size=batch, verbose=0))
        return out[:, 1] if self.manifest["task"] == "classify" else out.reshape(-1)


def check_compatible(bundle: Bundle, modality: str | None, space: str, allow_modality: bool, allow_space: bool) -> list:
    """Refuse scans whose modality or space disagrees with the manifest (unless overridden); return warnings."""
    m, where, warnings = bundle.manifest, bundle.folder / "manifest.json", []
    if modality is not None and modality != m["modality"]:
        text = f"the scans are {modality} but {bundle.name} was trained on {m['modality']} ({where})"
        if not allow_modality:
            raise InputError(f"{text}; use --allow-modality-mismatch to apply it anyway")
        warnings.append(f"modality mismatch: {text}")
    if modality is None:
        warnings.append(f"modality not stated (--modality): taken to be the model's {m['modality']}")
    if space != m["space"]:
        text = f"the scans are in {space} space but {bundle.name} was trained on {m['space']}-space scans ({where})"
        if not allow_space:
            raise InputError(f"{text}; use --allow-space-mismatch to apply it anyway")
        warnings.append(f"space mismatch: {text}")
    return warnings


# --- one scan ------------------------------------------------------------------------------------------


def preprocess_scan(scan: Scan, params: PreprocParams) -> np.ndarray:
    """The workflow's preprocessing of one scan (the cropped volume, float32), via a temporary file."""
    from adtransfer.imaging.preprocess import preprocess_subject

    with tempfile.TemporaryDirectory(prefix="adtransfer-predict-") as work:
        try:
            return preprocess_subject(scan.path, Path(work) / "preprocessed.nii.gz", params, subject=scan.subject_id)
        except InputError as exc:
            text = str(exc)
            raise InputError(text if scan.path in text else f"{scan.who}: {text}") from None


class GradCam:
    """adtransfer.results.explain.gradcam of the AD output, with the probe model built and traced once per command.

    The same maps (tests compare them); explain.gradcam builds its probe and runs eagerly on every call, which
    costs several times the prediction itself when a command predicts scan after scan.
    """

    def __init__(self, net, layer: str):
        import tensorflow as tf

        from adtransfer.results.explain import class_score_model

        scores = class_score_model(net, layer)  # the class logit, as explain.gradcam takes it

        @tf.function(reduce_retracing=True)
        def maps(x):
            with tf.GradientTape() as tape:
                conv, out = scores(x)
                score = out[:, 1]
            grads = tape.gradient(score, conv)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            return tf.nn.relu(tf.reduce_sum(weights * conv, axis=-1))

        self._maps = maps

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        return self._maps(tf.constant(x, tf.float32)).numpy()


def gradcam_outputs(bundle: Bundle, scan: Scan, mosaics: np.ndarray, x: np.ndarray, p_ad: float, out: Path) -> dict:
    """Grad-CAM of the AD output on the three mosaics (PNG) and back in 3D on the MNI grid (NIfTI)."""
    import nibabel as nib

    from adtransfer.imaging.templates import MNI_2MM
    from adtransfer.io import save_nifti
    from adtransfer.results.explain import normalize, to_volume, upsample
    from adtransfer.results.figures import overlay_rows

    layer = bundle.manifest["gradcam_layer"]
    if "gradcam" not in bundle.extras:
        bundle.extras["gradcam"] = GradCam(bundle.net, layer)
    raw = bundle.extras["gradcam"](x)
    size = mosaics.shape[-1]
    maps = normalize(upsample(raw, size))
    _, mni_vol = to_volume(maps, bundle.params.crop_grid, MNI_2MM)
    nifti = out / f"{scan.subject_id}_gradcam.nii.gz"
    img = nib.Nifti1Image(mni_vol.astype(np.float32), MNI_2MM.affine)
    img.header["descrip"] = f"adtransfer Grad-CAM {layer} AD"
    save_nifti(img, nifti)
    png = out / f"{scan.subject_id}_gradcam.png"
    what = f"{bundle.name}, Grad-CAM of AD, layer {layer} ({raw.shape[1]}x{raw.shape[2]} map on {size} px mosaics)"
    overlay_rows(
        [(f"{scan.subject_id} P(AD)={p_ad:.2f}", list(mosaics), list(maps))],
        png,
        f"{what}\nresearch use only, not for diagnosis",
        vmin=0,
        vmax=1,
        cbar_label="Grad-CAM",
    )
    return {"layer": layer, "map_size": [int(raw.shape[1]), int(raw.shape[2])], "png": png.name, "nifti": nifti.name}


def predict_scan(scan: Scan, model: Bundle, mmse: Bundle | None, out: Path, with_gradcam: bool, cache: dict) -> dict:
    volumes = {}
    for bundle in filter(None, (model, mmse)):
        key = bundle.params.digest()
        if key not in volumes:  # the MMSE model usually shares the classifier's preprocessing: run it once
            volumes[key] = preprocess_scan(scan, bundle.params)
    mosaics, x = model.inputs(volumes[model.params.digest()])
    p = model.predict(x)
    p_ad = float(p.mean())
    thresholds = model.manifest["thresholds"]
    result = {
        "subject_id": scan.subject_id,
        "scan": str(scan.path),
        "scan_sha256": sha256_file(scan.path),
        "model": model.name,
        "model_sha256": model.manifest["model_file"]["sha256"],
        "p_ad": {"ensemble": p_ad, **{c: float(v) for c, v in zip(MOSAIC_COLUMNS, p, strict=True)}},
        "class": {
            name: {"threshold": float(t), "class": "AD" if p_ad >= t else "NC"}
            for name, t in (("default", thresholds["default"]), ("validation_youden", thresholds["validation_youden"]))
        },
        "mmse": None,
        "gradcam": None,
        "warnings": list(cache.get("warnings", [])),
        "intended_use": "research only, not for diagnosis",
    }
    if scan.diagnosis:
        result["diagnosis_in_table"] = scan.diagnosis
    if mmse is not None:
        _, x_mmse = mmse.inputs(volumes[mmse.params.digest()])
        est = mmse.predict(x_mmse)
        result["mmse"] = {
            "model": mmse.name,
            "ensemble": float(est.mean()),
            **{c: float(v) for c, v in zip(MOSAIC_COLUMNS, est, strict=True)},
        }
    if with_gradcam:
        result["gradcam"] = gradcam_outputs(model, scan, mosaics, x, p_ad, out)
    write_text(out / f"{scan.subject_id}.json", json.dumps(result, indent=2) + "\n")
    return result


def table_row(result: dict) -> dict:
    row = {
        "subject_id": result["subject_id"],
        "scan": result["scan"],
        "p_ad": result["p_ad"]["ensemble"],
        **{f"p_ad_{c}": result["p_ad"][c] for c in MOSAIC_COLUMNS},
        "class_0.5": result["class"]["default"]["class"],
        "threshold_validation": result["class"]["validation_youden"]["threshold"],
        "class_validation": result["class"]["validation_youden"]["class"],
    }
    if result["mmse"] is not None:
        row["mmse"] = result["mmse"]["ensemble"]
        row.update({f"mmse_{c}": result["mmse"][c] for c in MOSAIC_COLUMNS})
    if "diagnosis_in_table" in result:
        row["diagnosis_in_table"] = result["diagnosis_in_table"]
    return row


# --- the command ---------------------------------------------------------------------------------------


def predict_scans(
    inputs: list[str],
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    mmse_dir: str | os.PathLike | None = None,
    modality: str | None = None,
    space: str = "mni",
    allow_modality_mismatch: bool = False,
    allow_space_mismatch: bool = False,
    with_gradcam: bool = True,
    threads: int = 2,
) -> pd.DataFrame:
    """Predict every scan; write {out}/predictions.tsv and per scan {id}.json, {id}_gradcam.png/.nii.gz."""
    model = Bundle.open(model_dir, "classify", "--model")
    mmse = Bundle.open(mmse_dir, "mmse", "--mmse-model") if mmse_dir else None
    warnings = []
    for bundle in filter(None, (model, mmse)):
        warnings += check_compatible(bundle, modality, space, allow_modality_mismatch, allow_space_mismatch)
        # the scans' own space decides their preprocessing (native: registration); the rest is the manifest's
        bundle.params = replace(bundle.params, space=space)
    scans = collect_scans(inputs)
    for w in dict.fromkeys(warnings):
        log.warning("warning: %s", w)

    for bundle in filter(None, (model, mmse)):
        bundle.check_model_file()  # before TensorFlow's start-up: a swapped model file is refused at once

    from adtransfer.learning.train import configure_tensorflow

    start = time.perf_counter()
    configure_tensorflow(0, threads)
    for bundle in filter(None, (model, mmse)):
        bundle.load()
    if with_gradcam:
        try:
            model.net.get_layer(model.manifest["gradcam_layer"])
        except ValueError:
            raise InputError(f"{model.folder}: no layer {model.manifest['gradcam_layer']!r} for Grad-CAM") from None
    log.info("loaded %s%s in %.1f s", model.name, f" and {mmse.name}" if mmse else "", time.perf_counter() - start)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, failed, n = [], [], len(scans)
    context = {"warnings": list(dict.fromkeys(warnings))}
    t0 = time.perf_counter()
    for i, scan in enumerate(scans, 1):
        t_scan = time.perf_counter()
        try:
            result = predict_scan(scan, model, mmse, out, with_gradcam, context)
        except InputError as exc:  # e.g. an empty brain after resampling: report it, go on with the others
            failed.append(str(exc))
            print(f"[{i}/{n}] {scan.subject_id}: FAILED: {exc}", file=sys.stderr, flush=True)
            continue
        rows.append(table_row(result))
        val = result["class"]["validation_youden"]
        mmse_text = f", MMSE {result['mmse']['ensemble']:.1f}" if result["mmse"] else ""
        print(
            f"[{i}/{n}] {scan.subject_id}: P(AD) {result['p_ad']['ensemble']:.3f} -> "
            f"{result['class']['default']['class']} at 0.5, {val['class']} at {val['threshold']:.3f}{mmse_text} "
            f"({time.perf_counter() - t_scan:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
    table = pd.DataFrame(rows)
    done = len(rows)
    if done:
        with atomic_output(out / "predictions.tsv") as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        n_ad = int((table["class_0.5"] == "AD").sum())
        n_ad_val = int((table["class_validation"] == "AD").sum())
        print(
            f"predicted {done} scan(s) with {model.name} in {time.perf_counter() - t0:.1f} s: AD {n_ad} / NC "
            f"{done - n_ad} at 0.5, AD {n_ad_val} / NC {done - n_ad_val} at the validation threshold"
            f"{f'; {len(failed)} failed' if failed else ''}; -> {out / 'predictions.tsv'}",
            file=sys.stderr,
            flush=True,
        )
    if failed:
        raise InputError(f"{len(failed)} of {n} scan(s) failed:\n" + "\n".join(failed))
    return table
