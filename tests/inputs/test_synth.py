"""The synthetic cohorts: deterministic, seed-dependent, and carrying the intended AD signal."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from adtransfer.imaging.preprocess import normalize_intensity
from adtransfer.imaging.templates import MNI_2MM, load_templates
from adtransfer.inputs import synth
from adtransfer.inputs.cohort import read_participants
from adtransfer.inputs.synth import AD_REGIONS, CohortSpec, ad_pattern, draw_participants, generate_cohort

SPEC = CohortSpec(name="det", modality="fdg_pet", n_ad=2, n_nc=1, seed=3)


def _scan_arrays(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(nib.load(p).dataobj) for p in sorted((folder / "scans").glob("*.nii.gz"))}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for key, spec, workers in [
        ("a", SPEC, 1),
        ("b", SPEC, 1),
        ("parallel", SPEC, 2),
        ("other_seed", CohortSpec(name="det", modality="fdg_pet", n_ad=2, n_nc=1, seed=4), 1),
    ]:
        folder = tmp_path_factory.mktemp(f"synth_{key}")
        generate_cohort(spec, folder, workers=workers, progress=False)
        out[key] = folder
    return out


def test_same_spec_gives_identical_cohort(generated):
    a, b = generated["a"], generated["b"]
    for name in ("participants.tsv", "ground_truth.tsv", "ground_truth.json"):
        assert (a / name).read_text() == (b / name).read_text()
    scans_a, scans_b = _scan_arrays(a), _scan_arrays(b)
    assert list(scans_a) == ["det0001.nii.gz", "det0002.nii.gz", "det0003.nii.gz"]
    assert list(scans_a) == list(scans_b)
    for name in scans_a:
        np.testing.assert_array_equal(scans_a[name], scans_b[name])


def test_worker_count_does_not_change_scans(generated):
    a, par = generated["a"], generated["parallel"]
    assert (a / "participants.tsv").read_text() == (par / "participants.tsv").read_text()
    scans_a, scans_p = _scan_arrays(a), _scan_arrays(par)
    assert list(scans_a) == list(scans_p)
    for name in scans_a:
        np.testing.assert_array_equal(scans_a[name], scans_p[name])


def test_subjects_differ_from_each_other(generated):
    scans = list(_scan_arrays(generated["a"]).values())
    assert not np.array_equal(scans[0], scans[1])


def test_different_seed_gives_different_data(generated):
    a, other = generated["a"], generated["other_seed"]
    ta = pd.read_csv(a / "ground_truth.tsv", sep="\t")
    tb = pd.read_csv(other / "ground_truth.tsv", sep="\t")
    assert not np.array_equal(ta["severity"], tb["severity"])
    pa = pd.read_csv(a / "participants.tsv", sep="\t")
    pb = pd.read_csv(other / "participants.tsv", sep="\t")
    assert not np.array_equal(pa["age"], pb["age"])
    for (name, x), y in zip(_scan_arrays(a).items(), _scan_arrays(other).values(), strict=True):
        assert not np.allclose(x, y), name


def test_scans_are_on_the_mni_grid_and_plausible(generated):
    for p in sorted((generated["a"] / "scans").glob("*.nii.gz")):
        img = nib.load(p)
        assert MNI_2MM.matches(img.shape, img.affine)
        data = np.asarray(img.dataobj)
        assert np.isfinite(data).all() and data.min() >= 0
        brain = load_templates().brain_mask
        # FDG in the file's units (thousands), signal concentrated in the brain
        assert 500 < data[brain].mean() < 50000
        assert data[brain].mean() > 5 * data[~brain].mean()


def test_ad_lowers_uptake_in_pattern(fdg_cohort, ecd_cohort):
    pattern = ad_pattern()
    assert pattern.max() > 0.8
    assert not pattern[~load_templates().brain_mask].any()
    for cohort, modality in ((fdg_cohort, "fdg_pet"), (ecd_cohort, "ecd_spect")):
        truth = pd.read_csv(cohort / "ground_truth.tsv", sep="\t", dtype={"subject_id": str})
        uptake = []
        for sid in truth["subject_id"]:
            raw = np.asarray(nib.load(cohort / "scans" / f"{sid}.nii.gz").dataobj, dtype=np.float32)
            norm = normalize_intensity(raw, modality)
            uptake.append(float((pattern * norm).sum() / pattern.sum()))
        uptake = np.array(uptake)
        r = np.corrcoef(truth["severity"], uptake)[0, 1]
        assert r < -0.5, (modality, r)
        dx = truth["diagnosis"].to_numpy()
        assert uptake[dx == "AD"].mean() < uptake[dx == "NC"].mean(), modality


def test_ad_pattern_file_matches_function(fdg_cohort):
    img = nib.load(fdg_cohort / "ad_pattern.nii.gz")
    assert MNI_2MM.matches(img.shape, img.affine)
    np.testing.assert_allclose(np.asarray(img.dataobj), ad_pattern(), atol=1e-6)


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    return draw_participants(CohortSpec(name="big", modality="fdg_pet", n_ad=80, n_nc=80, n_mci=40, seed=1))


def test_mmse_falls_with_severity(big):
    assert len(big) == 200
    r = np.corrcoef(big["mmse"], big["severity"])[0, 1]
    assert r < -0.5
    assert big.loc[big.diagnosis == "AD", "mmse"].mean() < big.loc[big.diagnosis == "NC", "mmse"].mean() - 3
    assert big["mmse"].between(0, 30).all()


def test_draw_participants_groups_and_severity(big):
    assert big["diagnosis"].value_counts().to_dict() == {"AD": 80, "NC": 80, "MCI": 40}
    assert big["subject_id"].is_unique
    sev = big.set_index("diagnosis")["severity"]
    assert sev["AD"].between(0.25, 1.0).all()
    assert sev["MCI"].between(0.0, 0.5).all()
    assert sev["NC"].max() < 0.25
    assert sev["AD"].mean() > sev["MCI"].mean() > sev["NC"].mean()
    # diagnoses are shuffled, not blocked
    assert set(big["diagnosis"].head(40)) == {"AD", "NC", "MCI"}


def test_demographics_columns(big):
    assert {"subject_id", "diagnosis", "mmse", "age", "sex", "site", "path", "severity"} <= set(big.columns)
    assert set(big["sex"]) == {"F", "M"}
    assert big["age"].between(50, 95).all()
    assert set(big["site"]) <= {f"S{i:02d}" for i in range(1, 6)}
    assert len(set(big["site"])) > 1


def test_written_table_passes_read_participants(fdg_cohort, ecd_cohort):
    for cohort, n in ((fdg_cohort, 7), (ecd_cohort, 4)):
        raw = pd.read_csv(cohort / "participants.tsv", sep="\t")
        assert "severity" not in raw.columns  # the answer is kept apart from the input
        df = read_participants(cohort / "participants.tsv")
        assert len(df) == n
        assert set(df["diagnosis"]) <= {"AD", "NC", "MCI"}
        assert df["mmse"].notna().all() and df["age"].notna().all()
        assert set(df["sex"]) <= {"F", "M"}
        for path in df["path"]:
            assert Path(path).is_file()


def test_ground_truth_json_lists_altered_regions(fdg_cohort):
    truth = json.loads((fdg_cohort / "ground_truth.json").read_text())
    assert truth["modality"] == "fdg_pet"
    assert truth["seed"] == 7
    assert set(truth["altered_regions"]) == set(AD_REGIONS)
    assert {"Cingulate_Post", "Precuneus", "Hippocampus"} <= set(truth["altered_regions"])
    assert truth["effect"] == synth.MODALITIES["fdg_pet"].effect
    assert (fdg_cohort / truth["pattern_map"]).is_file()
    # every listed region exists in the atlas (a misspelt prefix would paint nothing)
    t = load_templates()
    for prefix in truth["altered_regions"]:
        assert t.region_mask([prefix]).sum() > 50, prefix


def test_unknown_modality_raises(tmp_path):
    with pytest.raises(ValueError, match="modality"):
        generate_cohort(CohortSpec(name="x", modality="mri", n_ad=1, n_nc=1), tmp_path, progress=False)


# --- the atlas-free ("smooth") effect kind ----------------------------------------------------------------

SMOOTH = CohortSpec(name="sm", modality="fdg_pet", n_ad=3, n_nc=2, seed=5, effect_pattern="smooth")


@pytest.fixture(scope="module")
def smooth_cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smooth")
    generate_cohort(SMOOTH, out, progress=False)
    return out


def _atlas_share(pattern: np.ndarray) -> float:
    """Share of a map's variance inside the brain that AAL3 region labels explain (eta squared)."""
    t = load_templates()
    inside = t.brain_mask & (t.atlas > 0)
    labels, values = t.atlas[inside], pattern[inside].astype(np.float64)
    means = np.bincount(labels, weights=values) / np.maximum(np.bincount(labels), 1)
    return float(((means[labels] - values.mean()) ** 2).sum() / ((values - values.mean()) ** 2).sum())


def test_smooth_effect_does_not_follow_atlas_boundaries():
    """The regional kind is (up to edge smoothing) constant within each AAL3 region; the smooth kind varies within
    regions (blobs centred between regions, gradients across them): region labels explain far less of it."""
    regional, smooth = synth.effect_pattern_map("regional"), synth.effect_pattern_map("smooth")
    assert smooth.max() == pytest.approx(1.0) and not smooth[~load_templates().brain_mask].any()
    assert _atlas_share(regional) > 0.8
    assert _atlas_share(smooth) < 0.6


def test_smooth_pattern_is_jittered_per_subject():
    sim = synth._Simulator(SMOOTH)
    (_, a), (_, b) = sim._atlas_free(np.random.default_rng(1)), sim._atlas_free(np.random.default_rng(2))
    assert not np.allclose(a, b)
    r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert 0.3 < r < 0.99  # the same pattern, shifted and re-weighted
    variation, _ = sim._atlas_free(np.random.default_rng(1))
    assert _atlas_share(variation) < 0.5  # normal variation is not painted per region either


def test_smooth_cohort_is_deterministic_and_lowers_uptake(smooth_cohort, tmp_path):
    again = tmp_path / "again"
    generate_cohort(SMOOTH, again, progress=False)
    for name, x in _scan_arrays(smooth_cohort).items():
        np.testing.assert_array_equal(x, _scan_arrays(again)[name])
    pattern = np.asarray(nib.load(smooth_cohort / "ad_pattern.nii.gz").dataobj)
    np.testing.assert_allclose(pattern, synth.effect_pattern_map("smooth"), atol=1e-6)
    truth = pd.read_csv(smooth_cohort / "ground_truth.tsv", sep="\t")
    uptake = []
    for sid in truth["subject_id"]:
        raw = np.asarray(nib.load(smooth_cohort / "scans" / f"{sid}.nii.gz").dataobj, dtype=np.float32)
        uptake.append(float((pattern * normalize_intensity(raw, "fdg_pet")).sum() / pattern.sum()))
    assert np.corrcoef(truth["severity"], uptake)[0, 1] < -0.5


def test_smooth_ground_truth_records_kind_map_and_covered_regions(smooth_cohort, fdg_cohort):
    truth = json.loads((smooth_cohort / "ground_truth.json").read_text())
    assert truth["effect_pattern"] == "smooth" and truth["jitter_mm"] == SMOOTH.jitter_mm
    assert synth.synthetic_kind(truth) == ("smooth", truth["effect_pattern_implication"])
    assert "no built-in advantage" in truth["effect_pattern_implication"]
    # the regions it mostly covers: real AAL3 names, holding 80 % of the voxel-level map's mass
    t = load_templates()
    pattern = np.asarray(nib.load(smooth_cohort / truth["pattern_map"]).dataobj)
    mask = t.region_mask(list(truth["altered_regions"]))
    assert set(truth["altered_regions"]) <= set(t.labels.values())
    assert pattern[mask].sum() >= 0.8 * pattern[t.atlas > 0].sum()
    assert {"Angular_L", "Angular_R"} <= set(truth["altered_regions"])
    regional = json.loads((fdg_cohort / "ground_truth.json").read_text())
    assert synth.synthetic_kind(regional)[0] == "regional" and regional["effect_pattern"] == "regional"
    assert "favours the regional-mean baseline" in synth.synthetic_kind(regional)[1]
    assert synth.synthetic_kind({})[0] == "regional"  # a ground truth written before the kinds existed


def test_unknown_effect_pattern_raises(tmp_path):
    with pytest.raises(ValueError, match="effect pattern"):
        generate_cohort(CohortSpec(name="x", modality="fdg_pet", n_ad=1, n_nc=1, effect_pattern="x"), tmp_path)


def test_smooth_field_upsampling_equals_ndimage_zoom():
    """The per-axis matrices the simulator uses reproduce ndimage's 3-D cubic-spline zoom onto the MNI grid."""
    from scipy import ndimage

    coarse = np.random.default_rng(0).normal(0.0, 1.0, synth.COARSE_FIELD)
    got = synth.upsample(coarse, synth.zoom_matrices(synth.COARSE_FIELD, MNI_2MM.shape))
    want = ndimage.zoom(coarse, np.array(MNI_2MM.shape) / synth.COARSE_FIELD, order=3)
    assert got.shape == want.shape == tuple(MNI_2MM.shape)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
