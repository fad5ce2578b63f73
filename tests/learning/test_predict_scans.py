"""`adtransfer predict` on new scans from a model bundle, and the bundle (manifest.json, MODEL_CARD.md) itself.

Fast tests use a bundle whose model.keras is a placeholder: everything they check is refused before a model is
loaded. The slow tests bundle the session's tiny trained models (76 px: conftest's tiny_classifier and the MMSE model
fine-tuned from it, tiny_mmse; also test_train's) and compare with the workflow's cohort predictions of them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from cli_helpers import NO_TENSORFLOW, run_steps_without

from adtransfer.errors import InputError
from adtransfer.learning.predict import TrainedModel
from adtransfer.results.bundle import build_manifest, read_manifest, write_bundle
from adtransfer.results.evaluate import MOSAIC_COLUMNS, evaluate, read_predictions, write_json

SETTINGS = {
    "task": "classify",
    "init": "random",
    "learning_rate": 1e-3,
    "batch_size": 8,
    "epochs": 1,
    "patience": 5,
    "bn_momentum": 0.9,
    "fc_units": 16,
    "seed": 3,
    "intensity_range": [0, 3],
}


def cohort_table(tiny_cache) -> Path:
    return tiny_cache["dir"] / "data" / "participants.tsv"


def first_sidecar(tiny_cache) -> Path:
    return sorted((tiny_cache["dir"] / "preproc").glob("*.json"))[0]


def trained_model(tiny_cache, folder: Path, column: str | None = None) -> TrainedModel:
    """A model folder as training leaves it (model.keras, metrics.json), on the tiny cohort."""
    return TrainedModel(
        folder / "model.keras", folder / "metrics.json", tiny_cache["cache"], tiny_cache["splits"], column
    )


def write_test_metrics(tiny_cache, folder: Path, task: str = "classify") -> Path:
    """Test metrics as the workflow's evaluate step writes them (of the ROI baseline: no TensorFlow needed)."""
    from adtransfer.results.baseline import train_baseline

    pred = folder / "baseline_predictions.tsv"
    column = "n12" if task == "classify" else "mmse_set"
    train_baseline(tiny_cache["cache"], tiny_cache["splits"], column, task, folder / "baseline.json", pred, 0)
    out = folder / "test_metrics.json"
    write_json(evaluate(read_predictions(pred), task, n_boot=50, seed=0), out)
    return out


def placeholder_model(tiny_cache, folder: Path, task: str = "classify") -> Path:
    """A model folder as training leaves it (metrics.json), with a placeholder model.keras, and its bundle."""
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"placeholder")
    splits = pd.read_csv(tiny_cache["splits"], sep="\t")
    column = "n12" if task == "classify" else "mmse_set"
    metrics = {
        "set": column,
        "n_train": int((splits[column] == "train").sum()),
        "n_val": int((splits[column] == "val").sum()),
        "pretrained": None,
        "settings": {**SETTINGS, "task": task},
        "epochs_run": 1,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    bundle(tiny_cache, folder, task)
    return folder


def bundle(tiny_cache, folder: Path, task: str = "classify", parent: str | None = None) -> dict:
    manifest = build_manifest(
        "fdg/n12" if task == "classify" else "mmse/fdg",
        trained_model(tiny_cache, folder),
        test_metrics=write_test_metrics(tiny_cache, folder, task),
        preproc_sidecar=first_sidecar(tiny_cache),
        parent=parent,
        gradcam_layer="mixed7",
        synthetic=True,
    )
    write_bundle(manifest, folder / "manifest.json", folder / "MODEL_CARD.md")
    return manifest


def run_predict(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "adtransfer", "predict", *map(str, args)], capture_output=True, text=True, timeout=900
    )


def assert_clean_failure(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for word in words:
        assert word in proc.stderr, f"{word!r} not in stderr:\n{proc.stderr}"


@pytest.fixture(scope="module")
def placeholder(tiny_cache, tmp_path_factory) -> Path:
    return placeholder_model(tiny_cache, tmp_path_factory.mktemp("bundle") / "fdg_n12")


# --- the bundle ----------------------------------------------------------------------------------------


def test_manifest_round_trips_and_records_its_sources(placeholder, tiny_cache):
    manifest = read_manifest(placeholder)
    again = json.loads(json.dumps(manifest))
    assert again == manifest
    assert manifest["modality"] == "fdg_pet" and manifest["space"] == "mni"
    assert manifest["mosaic"] == {"size": 76, "n_sets": 3, "tiles": 4, "dtype": "float16"}
    assert manifest["intensity"]["range"] == [0.0, 3.0]
    assert manifest["classes"] == ["NC", "AD"]
    tested = json.loads((placeholder / "test_metrics.json").read_text())
    assert manifest["thresholds"] == {"default": 0.5, "validation_youden": tested["youden_threshold"]}
    assert manifest["test_metrics"]["auc"]["ensemble"] == tested["auc"]["ensemble"]
    splits = pd.read_csv(tiny_cache["splits"], sep="\t")
    train = splits[splits["n12"] == "train"]
    counts = manifest["training"]["counts"]["train"]
    assert counts["by_diagnosis"] == train["diagnosis"].value_counts().sort_index().to_dict()
    assert sum(counts["by_site"].values()) == len(train)
    from adtransfer.io import sha256_file

    assert manifest["cache"]["sha256"] == sha256_file(tiny_cache["cache"])
    assert manifest["model_file"]["sha256"] == sha256_file(placeholder / "model.keras")
    card = (placeholder / "MODEL_CARD.md").read_text()
    assert "Research use only" in card and "Trained on synthetic data" in card
    assert f"{tested['auc']['ensemble']['ci_low']:.3f}" in card


def test_invalid_manifest_and_missing_manifest_are_refused(placeholder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(placeholder, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    del manifest["mosaic"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="not a valid model manifest.*mosaic"):
        read_manifest(broken)
    (broken / "manifest.json").unlink()
    with pytest.raises(InputError, match="no manifest.json"):
        read_manifest(broken)


def test_bundle_refuses_a_sidecar_of_other_preprocessing(placeholder, tiny_cache, tmp_path):
    sidecar = json.loads(first_sidecar(tiny_cache).read_text())
    sidecar["params_hash"] = "0" * 16
    (tmp_path / "s.json").write_text(json.dumps(sidecar))
    with pytest.raises(InputError, match="differ from those of the cache"):
        build_manifest(
            "fdg/n12",
            trained_model(tiny_cache, placeholder),
            test_metrics=placeholder / "test_metrics.json",
            preproc_sidecar=tmp_path / "s.json",
        )


def test_bundle_step_does_not_import_tensorflow_or_sklearn(placeholder, tiny_cache, tmp_path):
    """Nor sklearn or scipy.stats (~0.7 s of imports): it reads a split table and writes the manifest and card."""
    out = tmp_path / "m"
    shutil.copytree(placeholder, out)
    (out / "manifest.json").unlink()
    argv = [
        "bundle",
        "--model",
        str(out / "model.keras"),
        "--metrics",
        str(out / "metrics.json"),
        "--manifest",
        str(out / "manifest.json"),
        "--model-card",
        str(out / "MODEL_CARD.md"),
        "--name",
        "fdg/n12",
        "--test-metrics",
        str(out / "test_metrics.json"),
        "--cache",
        str(tiny_cache["cache"]),
        "--splits",
        str(tiny_cache["splits"]),
        "--preproc-sidecar",
        str(first_sidecar(tiny_cache)),
    ]
    proc = run_steps_without([argv], {*NO_TENSORFLOW, "sklearn", "scipy.stats"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_manifest(out)["model"] == "fdg/n12"


# --- refusals of the command (before any model is loaded) ----------------------------------------------


def test_model_folder_without_manifest_is_refused(tiny_cache, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.keras").write_bytes(b"placeholder")
    proc = run_predict("--model", folder, cohort_table(tiny_cache))
    assert_clean_failure(proc, str(folder / "manifest.json"), "no manifest.json")


def test_wrong_modality_is_refused_unless_overridden(placeholder, tiny_cache, tmp_path):
    scan = sorted((tiny_cache["dir"] / "data" / "scans").glob("*.nii.gz"))[0]
    proc = run_predict("--model", placeholder, "--modality", "ecd", scan)
    assert_clean_failure(proc, "ecd_spect", "trained on fdg_pet", "--allow-modality-mismatch")
    # with the override the checks pass and the (placeholder) model file is what stops it
    proc = run_predict("--model", placeholder, "--modality", "ecd", "--allow-modality-mismatch", scan)
    assert_clean_failure(proc, "cannot load the Keras model")
    assert "modality mismatch" in proc.stderr


def test_wrong_space_is_refused(placeholder, tiny_cache):
    scan = sorted((tiny_cache["dir"] / "data" / "scans").glob("*.nii.gz"))[0]
    proc = run_predict("--model", placeholder, "--space", "native", scan)
    assert_clean_failure(proc, "native space", "trained on mni-space scans", "--allow-space-mismatch")
    proc = run_predict("--model", placeholder, "--space", "native", "--allow-space-mismatch", scan)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # with the override the checks pass and the (placeholder) model file is what stops it
    assert "cannot load the Keras model" in proc.stderr and "space mismatch" in proc.stderr


def test_bad_scans_fail_with_the_workflows_messages(placeholder, tmp_path):
    nan = np.ones((20, 20, 20), np.float32)
    nan[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), str(tmp_path / "nan scan.nii.gz"))
    proc = run_predict("--model", placeholder, tmp_path / "nan scan.nii.gz")
    assert_clean_failure(proc, str(tmp_path / "nan scan.nii.gz"), "NaN or Inf")
    (tmp_path / "notes.txt").write_text("subject_id\tdiagnosis\n")
    proc = run_predict("--model", placeholder, tmp_path / "notes.txt")
    assert_clean_failure(proc, str(tmp_path / "notes.txt"), "missing required column(s) path")
    proc = run_predict("--model", placeholder, tmp_path / "missing.nii.gz")
    assert_clean_failure(proc, str(tmp_path / "missing.nii.gz"), "does not exist")


def test_two_scans_with_the_same_name_are_refused(placeholder, tiny_cache, tmp_path):
    scan = sorted((tiny_cache["dir"] / "data" / "scans").glob("*.nii.gz"))[0]
    (tmp_path / "a").mkdir()
    shutil.copy(scan, tmp_path / "a" / scan.name)
    proc = run_predict("--model", placeholder, scan, tmp_path / "a" / scan.name)
    assert_clean_failure(proc, "ids must be unique")


def test_a_model_file_other_than_the_manifests_is_refused(placeholder, tiny_cache, tmp_path):
    folder = tmp_path / "swapped"
    shutil.copytree(placeholder, folder)
    (folder / "model.keras").write_bytes(b"another placeholder")
    proc = run_predict("--model", folder, cohort_table(tiny_cache))
    assert_clean_failure(proc, str(folder / "model.keras"), "sha256 differs")


# --- predictions of trained models (TensorFlow) ------------------------------------------------------------


def trained_bundle(tiny_cache, root: Path, task: str, model: Path) -> tuple[Path, pd.DataFrame]:
    """A copy of a tiny trained model folder, bundled, and the workflow's cohort predictions of it."""
    from adtransfer.learning.predict import predict_cohort

    folder = root / task
    shutil.copytree(model, folder)  # the session's model folder stays as training left it
    column = "n12" if task == "classify" else "mmse_set"
    pred = predict_cohort(trained_model(tiny_cache, folder, column), root / f"{task}.tsv", root / f"{task}.h5")
    bundle(tiny_cache, folder, task, parent="fdg/n12" if task == "mmse" else None)
    return folder, pred.set_index("subject_id")


@pytest.fixture(scope="module")
def trained_classifier(tiny_cache, tiny_classifier, tmp_path_factory):
    return trained_bundle(tiny_cache, tmp_path_factory.mktemp("trained"), "classify", tiny_classifier)


@pytest.fixture(scope="module")
def trained(tiny_cache, trained_classifier, tiny_mmse):
    """The classifier and an MMSE model fine-tuned from it, with the workflow's cohort predictions of both."""
    clf, clf_pred = trained_classifier
    mmse, mmse_pred = trained_bundle(tiny_cache, clf.parent, "mmse", tiny_mmse)
    return {"classify": clf, "mmse": mmse, "predictions": {"classify": clf_pred, "mmse": mmse_pred}}


def subset_table(tiny_cache, path: Path, n_per_class: int = 1) -> tuple[Path, list[str]]:
    from adtransfer.inputs.cohort import read_participants

    people = read_participants(cohort_table(tiny_cache))
    rows = people.groupby("diagnosis").head(n_per_class)
    rows.drop(columns="row").to_csv(path, sep="\t", index=False)
    return path, rows["subject_id"].tolist()


@pytest.mark.slow
def test_predictions_equal_the_workflows(trained, tiny_cache, tmp_path):
    table, ids = subset_table(tiny_cache, tmp_path / "new patients.tsv")
    people = pd.read_csv(cohort_table(tiny_cache), sep="\t")
    bare = people[~people["subject_id"].isin(ids)].iloc[-1]  # one more subject, given as a bare scan file
    scan = cohort_table(tiny_cache).parent / bare["path"]
    out = tmp_path / "out dir"
    proc = run_predict(
        "--model", trained["classify"], "--mmse-model", trained["mmse"], "--modality", "fdg", "--out", out, table, scan
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ids = [*ids, bare["subject_id"]]
    progress = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert len(progress) == len(ids) and progress[-1].startswith(f"[{len(ids)}/{len(ids)}]")
    assert f"predicted {len(ids)} scan(s)" in proc.stderr
    table_out = pd.read_csv(out / "predictions.tsv", sep="\t").set_index("subject_id")
    assert sorted(table_out.index) == sorted(ids)
    clf, reg = trained["predictions"]["classify"], trained["predictions"]["mmse"]
    manifest = read_manifest(trained["classify"])
    for sid in ids:
        result = json.loads((out / f"{sid}.json").read_text())
        for col in MOSAIC_COLUMNS + ["ensemble"]:
            assert result["p_ad"][col] == pytest.approx(clf.loc[sid, col], abs=1e-6), (sid, col)
            assert result["mmse"][col] == pytest.approx(reg.loc[sid, col], abs=1e-5), (sid, col)
        t = manifest["thresholds"]["validation_youden"]
        assert result["class"]["validation_youden"] == {
            "threshold": t,
            "class": "AD" if result["p_ad"]["ensemble"] >= t else "NC",
        }
        assert result["class"]["default"]["class"] == ("AD" if result["p_ad"]["ensemble"] >= 0.5 else "NC")
        assert table_out.loc[sid, "p_ad"] == pytest.approx(result["p_ad"]["ensemble"], abs=1e-6)
        img = nib.load(out / f"{sid}_gradcam.nii.gz")
        # the AD logit's map may be all zero after the ReLU for a scan this tiny model calls NC; its values are
        # checked against explain.gradcam in test_compiled_gradcam_gives_explains_maps
        cam = np.asarray(img.dataobj)
        assert img.shape == (91, 109, 91) and np.isfinite(cam).all() and cam.min() >= 0
        assert (out / f"{sid}_gradcam.png").stat().st_size > 5000
    assert "diagnosis_in_table" in json.loads((out / f"{ids[0]}.json").read_text())


@pytest.mark.slow
def test_a_changed_setting_in_the_manifest_changes_the_output(trained_classifier, tiny_cache, tmp_path):
    """The command reads preprocessing and intensity settings from the manifest, not from its own defaults.

    Unchanged settings reproduce the workflow's P(AD) to 1e-6 (test above); a changed one moves it by more.
    """
    from adtransfer.learning.predict_scans import predict_scans

    model = trained_classifier[0]
    table, _ = subset_table(tiny_cache, tmp_path / "t.tsv")
    base = predict_scans([str(table)], model, tmp_path / "base", with_gradcam=False)
    changes = {
        "reference": lambda m: m["preprocessing"]["params"].update(reference="cerebellum"),
        "crop": lambda m: m["preprocessing"]["params"]["crop_grid"].update(origin_mm=[-90.0, -108.0, -30.0]),
        "intensity": lambda m: m["intensity"].update(range=[0.0, 2.0]),
    }
    for name, change in changes.items():
        folder = tmp_path / name
        shutil.copytree(model, folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        change(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))
        changed = predict_scans([str(table)], folder, tmp_path / f"out_{name}", with_gradcam=False)
        diff = np.abs(changed["p_ad"].to_numpy() - base["p_ad"].to_numpy()).max()
        assert diff > 1e-5, name


@pytest.mark.slow
def test_a_scan_failing_preprocessing_is_reported_others_predicted(trained_classifier, tiny_cache, tmp_path):
    from adtransfer.learning.predict_scans import predict_scans

    off_grid = np.zeros((91, 109, 91), np.float32)
    off_grid[:10, :10, :10] = 1.0  # valid NIfTI, but no signal where the MNI brain is: not in MNI space
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-90.0, -126.0, -72.0]
    nib.save(nib.Nifti1Image(off_grid, affine), str(tmp_path / "off-grid.nii.gz"))
    good = cohort_table(tiny_cache).parent / pd.read_csv(cohort_table(tiny_cache), sep="\t")["path"].iloc[0]
    with pytest.raises(InputError, match=r"1 of 2 scan\(s\) failed:\n.*off-grid.nii.gz.*empty brain"):
        predict_scans([str(tmp_path / "off-grid.nii.gz"), str(good)], trained_classifier[0], tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "predictions.tsv", sep="\t")
    assert table["subject_id"].tolist() == [Path(good).name.split(".")[0]]


@pytest.mark.slow
def test_compiled_gradcam_gives_explains_maps():
    from adtransfer.learning.train import configure_tensorflow

    configure_tensorflow(0, 2)
    from adtransfer.learning.model import add_head, build_backbone
    from adtransfer.learning.predict_scans import GradCam
    from adtransfer.results.explain import gradcam

    net = add_head(build_backbone(76, "random"), "classify", 8)
    x = np.random.default_rng(0).normal(size=(3, 76, 76, 1)).astype(np.float32)
    expected = gradcam(net, x, "mixed7", class_index=1)
    maps = GradCam(net, "mixed7")(x)
    assert maps.shape == expected.shape and expected.max() > 0
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-6 * float(expected.max()))
