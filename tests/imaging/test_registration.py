"""Native-space registration to the modality templates (issue 14): conventions, accuracy, cropped FOV, sidecar, QC."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel.processing import resample_from_to

from adtransfer.errors import InputError
from adtransfer.imaging.preprocess import PreprocParams, preprocess_subject
from adtransfer.imaging.registration import (
    RegistrationSettings,
    _to_sitk,
    _transform_to_ras,
    modality_template,
    register_to_template,
    registration_qc,
    resample_scan_to_mni,
)
from adtransfer.imaging.templates import MNI_2MM, load_templates
from adtransfer.inputs.synth import CohortSpec, generate_cohort, native_grid, random_rigid

GOAL_MEAN_MM, GOAL_MAX_MM = 2.0, 4.0


def _brain_points() -> np.ndarray:
    ijk = np.argwhere(load_templates().brain_mask)
    return np.c_[ijk, np.ones(len(ijk))] @ MNI_2MM.affine.T


def registration_error_mm(estimated: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Mean and max distance (mm) over MNI brain voxels between where the estimate and the truth put them."""
    pts = _brain_points()
    moved = pts @ (estimated @ np.linalg.inv(true)).T
    err = np.linalg.norm(moved[:, :3] - pts[:, :3], axis=1)
    return float(err.mean()), float(err.max())


def place_in_scanner(volume: np.ndarray, scanner_to_mni: np.ndarray, voxel=(2.4, 2.4, 3.3)) -> nib.Nifti1Image:
    """An MNI-space volume as a scanner would store it when the head sits at `scanner_to_mni`."""
    shape, affine = native_grid(voxel, (256.0, 256.0, 200.0))
    placed = nib.Nifti1Image(volume.astype(np.float32), np.linalg.inv(scanner_to_mni) @ MNI_2MM.affine)
    out = resample_from_to(placed, (shape, affine), order=1, mode="constant", cval=0.0)
    return nib.Nifti1Image(np.asarray(out.dataobj, np.float32), affine)


@pytest.fixture(scope="module")
def mni_scan(fdg_cohort) -> np.ndarray:
    return np.asarray(nib.load(sorted((fdg_cohort / "scans").glob("*.nii.gz"))[0]).dataobj, np.float32)


# --- conventions: LPS (ITK) <-> RAS (NIfTI) -------------------------------------------------------------


def test_sitk_image_geometry_matches_the_nifti_affine():
    affine = np.array([[-2.4, 0.3, 0, 100.0], [0.2, 2.4, 0.5, -90.0], [0, -0.4, 3.3, -50.0], [0, 0, 0, 1]])
    img = _to_sitk(np.zeros((5, 6, 7), np.float32), affine)
    for ijk in [(0, 0, 0), (4, 0, 0), (1, 5, 2), (4, 5, 6)]:
        ras = affine @ [*ijk, 1.0]
        lps = np.array(img.TransformIndexToPhysicalPoint(ijk))
        np.testing.assert_allclose(lps, [-ras[0], -ras[1], ras[2]], atol=1e-6)


def test_itk_transform_converted_to_scanner_to_mni_ras():
    import SimpleITK as sitk

    scanner_to_mni = random_rigid(np.random.default_rng(0), 10, 15)
    scanner_to_mni[:3, :3] *= [1.05, 0.97, 1.02]
    # ITK's transform maps fixed (MNI) LPS points to moving (scanner) LPS points
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    mni_to_scanner_lps = lps @ np.linalg.inv(scanner_to_mni) @ lps
    tx = sitk.AffineTransform(3)
    tx.SetCenter((10.0, -20.0, 5.0))  # a centre must not change the mapping read off
    tx.SetMatrix(mni_to_scanner_lps[:3, :3].flatten().tolist())
    offset = mni_to_scanner_lps[:3, 3]
    centre = np.array(tx.GetCenter())
    tx.SetTranslation((offset - centre + mni_to_scanner_lps[:3, :3] @ centre).tolist())
    np.testing.assert_allclose(_transform_to_ras(tx), scanner_to_mni, atol=1e-9)


def test_templates_have_each_modality_contrast():
    t = load_templates()
    gm, wm = (t.gm > 0.8) & t.brain_mask, (t.wm > 0.8) & t.brain_mask
    ratio = {m: modality_template(m)[wm].mean() / modality_template(m)[gm].mean() for m in ("fdg_pet", "ecd_spect")}
    assert ratio["fdg_pet"] < ratio["ecd_spect"] < 1.0
    np.testing.assert_array_equal(modality_template("fdg_pet"), modality_template.__wrapped__("fdg_pet"))


# --- accuracy ---------------------------------------------------------------------------------------------


def _known_affine() -> np.ndarray:
    m = random_rigid(np.random.default_rng(5), 10, 15)
    m[:3, :3] = m[:3, :3] @ np.array([[1.06, 0.03, 0.0], [0.0, 0.96, 0.02], [0.0, 0.0, 1.03]])
    return m


def test_registration_recovers_known_rigid_and_affine_transform(mni_scan):
    true = _known_affine()
    img = nib.as_closest_canonical(place_in_scanner(mni_scan, true))
    result = register_to_template(np.asarray(img.dataobj), img.affine, "fdg_pet")
    mean, worst = registration_error_mm(result.affine_scanner_to_mni, true)
    assert mean < GOAL_MEAN_MM and worst < GOAL_MAX_MM, (mean, worst)
    assert result.similarity > 0.85
    start_mean, _ = registration_error_mm(np.eye(4), true)
    assert start_mean > 5 * mean  # the header alone is far off: registration did the work
    # a full field of view: the 12-dof affine (this scan's zooms and shears are recovered only by it)
    assert result.dof == 12 and result.field_of_view["cropped"] is False, result.field_of_view
    assert result.field_of_view["brain_fraction"] > 0.97


def test_registration_is_deterministic(mni_scan):
    img = place_in_scanner(mni_scan, _known_affine())
    a = register_to_template(np.asarray(img.dataobj), img.affine, "fdg_pet").affine_scanner_to_mni
    b = register_to_template(np.asarray(img.dataobj), img.affine, "fdg_pet").affine_scanner_to_mni
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("missing", ["cerebellum", "vertex"])
def test_cropped_field_of_view_still_registers(mni_scan, missing):
    true = random_rigid(np.random.default_rng(8), 10, 15)
    z = (np.indices(MNI_2MM.shape)[2] * MNI_2MM.voxel_mm + MNI_2MM.origin_mm[2]).astype(np.float32)
    cropped = np.where(z > -20, mni_scan, 0) if missing == "cerebellum" else np.where(z < 50, mni_scan, 0)
    img = place_in_scanner(cropped, true)
    result = register_to_template(np.asarray(img.dataobj), img.affine, "fdg_pet")
    mean, worst = registration_error_mm(result.affine_scanner_to_mni, true)
    assert mean < GOAL_MEAN_MM and worst < GOAL_MAX_MM, (missing, mean, worst)
    fov = result.as_dict()["field_of_view"]
    if missing == "cerebellum":  # a cut the detection must see: the 7-dof similarity stage and denser sampling
        assert result.dof == 7 and fov["cropped"] and fov["brain_fraction"] < 0.95, fov
        assert fov["sampling"] == RegistrationSettings().cropped_sampling


def test_cropped_fov_fixes_the_affine_metric_region_to_the_data(ecd_cohort, monkeypatch):
    """ECD (weak grey/white contrast) cut below MNI z = -20 mm. After the rigid stage the metric region is the
    template's head where the scan has data, held fixed: no moving mask, whose sample set changes with the
    transform and let the affine stretch the brain over the cut edge (bench, 20 such scans: max error 7.3 mm
    before, 5.2 mm after)."""
    import SimpleITK as sitk

    from adtransfer.imaging import registration

    masks = []
    method = registration._method

    def recording(settings, fixed_mask, moving_mask, iterations, sampling):
        masks.append((sitk.GetArrayFromImage(fixed_mask).transpose(2, 1, 0).astype(bool), moving_mask))
        return method(settings, fixed_mask, moving_mask, iterations, sampling)

    monkeypatch.setattr(registration, "_method", recording)
    scan = np.asarray(nib.load(sorted((ecd_cohort / "scans").glob("*.nii.gz"))[0]).dataobj, np.float32)
    z = (np.indices(MNI_2MM.shape)[2] * MNI_2MM.voxel_mm + MNI_2MM.origin_mm[2]).astype(np.float32)
    true = random_rigid(np.random.default_rng(8), 10, 15)
    img = place_in_scanner(np.where(z > -20, scan, 0), true)
    result = register_to_template(np.asarray(img.dataobj), img.affine, "ecd_spect")
    (rigid_region, rigid_moving), (affine_region, affine_moving) = masks
    assert rigid_moving is not None and affine_moving is None
    assert rigid_region[z < -30].any() and not affine_region[z < -20].any()  # the cut part left out
    kept = load_templates().brain_mask & (z > -10)
    assert affine_region[kept].mean() > 0.95, affine_region[kept].mean()  # the brain it has kept
    mean, worst = registration_error_mm(result.affine_scanner_to_mni, true)
    assert mean < GOAL_MEAN_MM and worst < GOAL_MAX_MM, (mean, worst)
    # the sidecar's record: a similarity (one zoom: no stretch along the cut axis, which the data do not constrain)
    record = result.as_dict()
    assert record["dof"] == 7 and "7-dof similarity" in record["method"], record["method"]
    assert record["field_of_view"]["cropped"] and record["field_of_view"]["brain_fraction"] < 0.95
    m = result.affine_scanner_to_mni[:3, :3]
    np.testing.assert_allclose(m @ m.T / np.cbrt(np.linalg.det(m)) ** 2, np.eye(3), atol=1e-6)  # rotation x zoom


# --- the optional nonlinear (BSpline) step ------------------------------------------------------------------

WARP_MM, WARP_HALF_WAVE_MM = 5.0, 90.0


def _warp(points: np.ndarray) -> np.ndarray:
    """A smooth displacement (mm) no affine can express: each axis shifted by a sine of another."""
    p = points / WARP_HALF_WAVE_MM * np.pi
    return WARP_MM * np.stack([np.sin(p[..., 1]), np.sin(p[..., 2]), np.sin(p[..., 0])], -1)


def test_resampling_displacement_is_in_mni_ras_mm(mni_scan):
    """A displacement d makes MNI voxel x take the scan's value at affine^-1(x + d): a constant one is a shift."""
    scanner_to_mni = _known_affine()
    img = place_in_scanner(mni_scan, scanner_to_mni)
    data, affine = np.asarray(img.dataobj), img.affine
    shift = np.array([4.0, -2.0, 6.0])
    displacement = np.broadcast_to(shift, (*MNI_2MM.shape, 3)).astype(np.float32)
    moved = np.eye(4)
    moved[:3, 3] = -shift
    expected = resample_scan_to_mni(data, affine, moved @ scanner_to_mni)
    np.testing.assert_allclose(
        resample_scan_to_mni(data, affine, scanner_to_mni, displacement=displacement), expected, atol=1e-4
    )
    zero = np.zeros((*MNI_2MM.shape, 3), np.float32)
    np.testing.assert_allclose(
        resample_scan_to_mni(data, affine, scanner_to_mni, displacement=zero),
        resample_scan_to_mni(data, affine, scanner_to_mni),
        atol=1e-4,
    )


def test_nonlinear_step_undoes_a_smooth_deformation(mni_scan):
    """Scan = the subject's MNI volume bent by `_warp`, then placed under a rigid pose. The registration's full
    mapping, judged by the true one (in mm over the brain), and the registered scan's correlation with the unbent
    volume are better with the nonlinear step than without; the affine part is the affine-only result itself."""
    from scipy import ndimage

    ijk = np.indices(MNI_2MM.shape).reshape(3, -1).T
    mni_mm = ijk @ MNI_2MM.affine[:3, :3].T + MNI_2MM.affine[:3, 3]
    source = (mni_mm + _warp(mni_mm) - MNI_2MM.affine[:3, 3]) / MNI_2MM.voxel_mm  # bent(x) = scan(x + warp(x))
    bent = ndimage.map_coordinates(mni_scan, source.T, order=1).reshape(MNI_2MM.shape)
    rigid = random_rigid(np.random.default_rng(5), 10, 15)
    img = nib.as_closest_canonical(place_in_scanner(bent, rigid))
    data = np.asarray(img.dataobj)
    brain = load_templates().brain_mask
    points = mni_mm[brain.reshape(-1)]

    def judged(result):
        """Error (mm) of MNI point x -> scanner y as estimated, mapped back to MNI by the truth (y -> z -> z + warp)."""
        d = 0 if result.displacement_mni is None else result.displacement_mni.reshape(-1, 3)[brain.reshape(-1)]
        to_scanner = np.linalg.inv(result.affine_scanner_to_mni)
        z = ((points + d) @ to_scanner[:3, :3].T + to_scanner[:3, 3]) @ rigid[:3, :3].T + rigid[:3, 3]
        on_mni = resample_scan_to_mni(
            data, img.affine, result.affine_scanner_to_mni, displacement=result.displacement_mni
        )
        err = np.linalg.norm(z + _warp(z) - points, axis=1)
        return err.mean(), np.corrcoef(on_mni[brain], mni_scan[brain])[0, 1]

    affine_only = register_to_template(data, img.affine, "fdg_pet")
    bspline = register_to_template(data, img.affine, "fdg_pet", RegistrationSettings(nonlinear=True))
    (err_affine, corr_affine), (err_bspline, corr_bspline) = judged(affine_only), judged(bspline)
    assert err_bspline < 0.75 * err_affine and err_bspline < GOAL_MEAN_MM, (err_affine, err_bspline)
    assert corr_bspline > corr_affine + 0.03, (corr_affine, corr_bspline)
    assert bspline.similarity > affine_only.similarity
    np.testing.assert_array_equal(bspline.affine_scanner_to_mni, affine_only.affine_scanner_to_mni)
    assert affine_only.nonlinear is None and affine_only.displacement_mni is None
    record = bspline.as_dict()["nonlinear"]
    assert record["mesh"] == [4, 4, 4] and WARP_MM / 2 < record["max_displacement_mm"] < 4 * WARP_MM


def test_nonlinear_step_is_off_by_default_and_its_settings_then_change_nothing(crop_grid):
    assert RegistrationSettings.from_config({}) == RegistrationSettings() and not RegistrationSettings().nonlinear
    assert RegistrationSettings.from_config({"nonlinear_mesh": [3, 5, 4]}).nonlinear_mesh == (3, 5, 4)
    default = PreprocParams("ecd_spect", crop_grid, space="native")
    unused = PreprocParams(
        "ecd_spect", crop_grid, space="native", registration=RegistrationSettings(nonlinear_mesh=(8, 8, 8))
    )
    assert unused.digest() == default.digest()
    used = PreprocParams("ecd_spect", crop_grid, space="native", registration=RegistrationSettings(nonlinear=True))
    assert used.digest() != default.digest()
    with pytest.raises(ValueError, match="nonlinear_mesh"):
        RegistrationSettings(nonlinear_mesh=(4, 4))


# --- synthetic native-space cohorts and the preprocessing node --------------------------------------------


@pytest.fixture(scope="module")
def twin_cohorts(tmp_path_factory):
    """The same two subjects written in MNI space and in native space."""
    out = tmp_path_factory.mktemp("twins")
    for space in ("mni", "native"):
        spec = CohortSpec(name="tw", modality="ecd_spect", n_ad=1, n_nc=1, seed=9, space=space)
        generate_cohort(spec, out / space, progress=False)
    return out


def test_native_synthetic_scans_have_site_geometry_and_true_transform(twin_cohorts):
    truth = json.loads((twin_cohorts / "native" / "ground_truth.json").read_text())
    assert truth["space"] == "native" and set(truth["affine_scanner_to_mni"]) == {"tw0001", "tw0002"}
    assert "affine_scanner_to_mni" not in json.loads((twin_cohorts / "mni" / "ground_truth.json").read_text())
    for sid, m in truth["affine_scanner_to_mni"].items():
        m = np.array(m)
        np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-6)  # rigid
        angle = np.degrees(np.arccos(np.clip((np.trace(m[:3, :3]) - 1) / 2, -1, 1)))
        assert 0.5 < angle <= np.sqrt(3) * 10 and np.all(np.abs(m[:3, 3]) <= 15) and np.any(np.abs(m[:3, 3]) > 1)
        native = nib.load(twin_cohorts / "native" / "scans" / f"{sid}.nii.gz")
        np.testing.assert_allclose(native.header.get_zooms()[:3], (2.4, 2.4, 3.3), atol=1e-5)
        mni = np.asarray(nib.load(twin_cohorts / "mni" / "scans" / f"{sid}.nii.gz").dataobj)
        back = resample_scan_to_mni(np.asarray(native.dataobj), native.affine, m)
        brain = load_templates().brain_mask
        assert np.corrcoef(back[brain], mni[brain])[0, 1] > 0.97  # the true transform takes it back to MNI


def test_native_preprocessing_writes_affine_and_matches_mni_twin(twin_cohorts, crop_grid, tmp_path):
    truth = json.loads((twin_cohorts / "native" / "ground_truth.json").read_text())["affine_scanner_to_mni"]
    sid = "tw0001"
    out = {}
    for space in ("mni", "native"):
        out[space] = preprocess_subject(
            twin_cohorts / space / "scans" / f"{sid}.nii.gz",
            tmp_path / f"{space}.nii.gz",
            PreprocParams("ecd_spect", crop_grid, space=space),
            sid,
            sidecar=tmp_path / f"{space}.json",
            registration_png=tmp_path / f"{space}_registration.png",
        )
    reg = json.loads((tmp_path / "native.json").read_text())["registration"]
    assert reg["registered"] and reg["seconds"] > 0 and 0.8 < reg["similarity"] <= 1
    estimated = np.array(reg["affine_scanner_to_mni"])
    # known points: where MNI landmarks sit in the scanner, mapped back by the sidecar's affine
    landmarks = np.array([[0.0, 0.0, 0.0, 1], [40, -60, 30, 1], [-30, 20, -10, 1], [0, -40, 60, 1]])
    in_scanner = landmarks @ np.linalg.inv(np.array(truth[sid])).T
    np.testing.assert_allclose((in_scanner @ estimated.T)[:, :3], landmarks[:, :3], atol=3.0)
    assert json.loads((tmp_path / "mni.json").read_text())["registration"] == {"space": "mni", "registered": False}
    inside = out["mni"] != 0
    assert np.corrcoef(out["mni"][inside], out["native"][inside])[0, 1] >= 0.95
    assert (tmp_path / "native_registration.png").stat().st_size > 0
    assert "nonlinear" not in reg
    assert reg["dof"] == 12 and reg["field_of_view"]["cropped"] is False  # a full field of view: the affine


def test_native_preprocessing_with_nonlinear_step(twin_cohorts, crop_grid, tmp_path):
    """The register node resamples through affine and BSpline; the sidecar keeps the affine part (the same as
    without the step) and records the step; the output differs from the affine-only one and matches the twin."""
    sid, out = "tw0001", {}
    for name, settings in (("affine", RegistrationSettings()), ("bspline", RegistrationSettings(nonlinear=True))):
        out[name] = preprocess_subject(
            twin_cohorts / "native" / "scans" / f"{sid}.nii.gz",
            tmp_path / f"{name}.nii.gz",
            PreprocParams("ecd_spect", crop_grid, space="native", registration=settings),
            sid,
            sidecar=tmp_path / f"{name}.json",
        )
    reg = {name: json.loads((tmp_path / f"{name}.json").read_text())["registration"] for name in out}
    assert reg["bspline"]["affine_scanner_to_mni"] == reg["affine"]["affine_scanner_to_mni"]
    assert reg["bspline"]["nonlinear"]["mesh"] == [4, 4, 4] and reg["bspline"]["nonlinear"]["max_displacement_mm"] > 0
    assert "nonlinear" not in reg["affine"]
    assert not np.array_equal(out["bspline"], out["affine"])
    twin = preprocess_subject(
        twin_cohorts / "mni" / "scans" / f"{sid}.nii.gz", tmp_path / "mni.nii.gz", PreprocParams("ecd_spect", crop_grid)
    )
    inside = twin != 0
    assert np.corrcoef(twin[inside], out["bspline"][inside])[0, 1] >= 0.95


# --- QC: flag below the similarity threshold; exclude or keep by config -------------------------------------


def _fake_preproc(tmp_path, similarities: dict[str, float]):
    table = tmp_path / "cohort.tsv"
    pd.DataFrame({"subject_id": list(similarities), "diagnosis": "AD", "sex": "F", "site": "S1"}).to_csv(
        table, sep="\t", index=False
    )
    for sid, sim in similarities.items():
        reg = {"space": "native", "registered": True, "similarity": sim, "seconds": 1.0, "dof": 12}
        if sid == "a1":  # a cropped field of view
            reg.update(dof=7, field_of_view={"brain_fraction": 0.85, "cropped": True})
        (tmp_path / f"{sid}.json").write_text(json.dumps({"registration": reg}))
    return table


@pytest.mark.parametrize("on_fail", ["exclude", "keep"])
def test_registration_qc_flags_and_excludes_or_keeps(tmp_path, on_fail):
    table = _fake_preproc(tmp_path, {"a1": 0.9, "a2": 0.3, "a3": 0.61})
    qc, included = registration_qc(table, tmp_path, 0.6, on_fail)
    assert qc.set_index("subject_id")["flagged"].to_dict() == {"a1": False, "a2": True, "a3": False}
    assert qc.set_index("subject_id").loc["a1", "dof"] == 7 and qc.set_index("subject_id").loc["a1", "cropped_fov"]
    expected = ["a1", "a3"] if on_fail == "exclude" else ["a1", "a2", "a3"]
    assert included["subject_id"].tolist() == expected
    assert qc.set_index("subject_id").loc["a2", "decision"] == (
        "excluded" if on_fail == "exclude" else "kept (flagged)"
    )


def test_registration_qc_refuses_to_exclude_everyone(tmp_path):
    table = _fake_preproc(tmp_path, {"c1": 0.2, "c2": 0.3})
    with pytest.raises(InputError, match="all 2 subjects"):
        registration_qc(table, tmp_path, 0.6, "exclude")


def test_registration_qc_cli_writes_tables(tmp_path):
    from adtransfer.cli import main

    table = _fake_preproc(tmp_path, {"b1": 0.2, "b2": 0.95})
    main(
        [
            "registration-qc",
            "--table",
            str(table),
            "--preproc-dir",
            str(tmp_path),
            "--min-similarity",
            "0.6",
            "--on-fail",
            "exclude",
            "--out",
            str(tmp_path / "q c.tsv"),
            "--included",
            str(tmp_path / "inc.tsv"),
        ]
    )
    assert pd.read_csv(tmp_path / "inc.tsv", sep="\t")["subject_id"].tolist() == ["b2"]
    assert pd.read_csv(tmp_path / "q c.tsv", sep="\t").set_index("subject_id").loc["b1", "decision"] == "excluded"


@pytest.mark.slow
def test_preprocess_command_native_standalone(twin_cohorts, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out dir"
    cmd = [
        sys.executable,
        "-m",
        "adtransfer",
        "preprocess",
        "--input",
        str(twin_cohorts / "native/scans/tw0002.nii.gz"),
        "--output",
        str(out / "s.nii.gz"),
        "--sidecar",
        str(out / "s.json"),
        "--subject",
        "tw0002",
        "--modality",
        "ecd_spect",
        "--space",
        "native",
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    reg = json.loads((out / "s.json").read_text())["registration"]
    assert np.array(reg["affine_scanner_to_mni"]).shape == (4, 4)
    assert nib.load(out / "s.nii.gz").shape == (95, 95, 48)


def test_intensity_normalization_ignores_what_a_cropped_field_of_view_misses(mni_scan):
    from adtransfer.imaging.preprocess import normalize_intensity

    brain = load_templates().brain_mask
    z = np.indices(MNI_2MM.shape)[2] * MNI_2MM.voxel_mm + MNI_2MM.origin_mm[2]
    cropped = np.where(z > -20, mni_scan, 0).astype(np.float32)
    seen = brain & (cropped != 0)
    assert seen.sum() < 0.95 * brain.sum()
    assert normalize_intensity(cropped, "fdg_pet")[seen].mean() == pytest.approx(1.0, abs=1e-4)
    ecd = normalize_intensity(cropped, "ecd_spect")[seen]
    assert ecd.mean() == pytest.approx(0.0, abs=1e-4) and ecd.std() == pytest.approx(1.0, abs=1e-3)
