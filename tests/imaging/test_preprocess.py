"""Preprocessing: intensity normalization, the per-subject workflow's outputs and errors, and the
messy-but-valid matrix (the same images stored in other valid ways must give the same cache)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from cohort_helpers import preprocess_table
from nibabel.processing import resample_from_to, resample_to_output
from PIL import Image

from adtransfer.errors import InputError
from adtransfer.imaging.cache import build_cache, read_cache
from adtransfer.imaging.grid import crop
from adtransfer.imaging.preprocess import (
    PreprocParams,
    background_level,
    median,
    normalize_intensity,
    preprocess_subject,
)
from adtransfer.imaging.templates import MNI_2MM, load_templates
from adtransfer.inputs.cohort import validate_cohort

MOSAIC = 380  # full resolution: no resizing that could hide differences


def _scans(cohort: Path) -> list[Path]:
    return sorted((cohort / "scans").glob("*.nii.gz"))


def _load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)


@pytest.fixture(scope="module")
def brain() -> np.ndarray:
    return load_templates().brain_mask


@pytest.fixture(scope="module")
def fdg_params(crop_grid) -> PreprocParams:
    return PreprocParams("fdg_pet", crop_grid)


# --- intensity normalization ---------------------------------------------------------------------------


def test_fdg_normalization_brain_mean_is_one(fdg_cohort, brain):
    for scan in _scans(fdg_cohort):
        raw = _load(scan)
        assert MNI_2MM.matches(nib.load(scan).shape, nib.load(scan).affine)
        out = normalize_intensity(raw, "fdg_pet")
        assert out.dtype == np.float32 and out.shape == raw.shape
        assert abs(float(out[brain].mean(dtype=np.float64)) - 1.0) < 1e-4
        # a pure division: the ratio is the same everywhere, and the raw brain mean is far from 1
        assert abs(float(raw[brain].mean()) - 1.0) > 10
        np.testing.assert_allclose(out * raw[brain].mean(dtype=np.float64), raw, rtol=1e-4, atol=1e-2)


def test_fdg_normalization_removes_global_scale(fdg_cohort):
    raw = _load(_scans(fdg_cohort)[0])
    np.testing.assert_allclose(
        normalize_intensity(raw * 3.7, "fdg_pet"), normalize_intensity(raw, "fdg_pet"), rtol=1e-5, atol=1e-6
    )


def test_fdg_cerebellum_reference(fdg_cohort, brain):
    t = load_templates()
    cereb = t.region_mask(["Cerebellum_", "Vermis_"])
    assert cereb.sum() > 1000
    raw = _load(_scans(fdg_cohort)[0])
    out = normalize_intensity(raw, "fdg_pet", reference="cerebellum")
    assert abs(float(out[cereb].mean(dtype=np.float64)) - 1.0) < 1e-4
    assert abs(float(out[brain].mean()) - 1.0) > 1e-3  # a different reference gives a different scale


def test_ecd_normalization_zscore_in_brain(ecd_cohort, brain):
    for scan in _scans(ecd_cohort):
        raw = _load(scan)
        out = normalize_intensity(raw, "ecd_spect")
        inside = out[brain].astype(np.float64)
        assert abs(inside.mean()) < 1e-4
        assert abs(inside.std() - 1.0) < 1e-4
        # affine in the raw intensities: invariant to gain and offset
        np.testing.assert_allclose(normalize_intensity(2.5 * raw + 40.0, "ecd_spect"), out, atol=1e-4)


def test_normalization_rejects_scan_outside_brain(brain):
    vol = np.zeros(MNI_2MM.shape, np.float32)
    vol[:6, :6, :6] = 100.0
    assert not (vol > 0)[brain].any()
    with pytest.raises(InputError, match="empty brain"):
        normalize_intensity(vol, "fdg_pet", who="x.nii.gz")
    with pytest.raises(ValueError, match="modality"):
        normalize_intensity(np.ones(MNI_2MM.shape, np.float32), "mri")


# --- one subject through the workflow ------------------------------------------------------------------


def test_preprocess_subject_outputs(fdg_cohort, fdg_params, crop_grid, tmp_path):
    scan = _scans(fdg_cohort)[0]
    out, png, side = tmp_path / "s.nii.gz", tmp_path / "s.png", tmp_path / "s.json"
    data = preprocess_subject(scan, out, fdg_params, subject="fdg0001", qc_png=png, sidecar=side)

    img = nib.load(out)
    assert img.shape == (95, 95, 48)
    np.testing.assert_allclose(img.affine, crop_grid.affine)
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    assert img.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asarray(img.dataobj), data)
    # the scan is on the MNI grid: normalize there, then crop, without interpolation
    normalized = normalize_intensity(_load(scan), "fdg_pet")
    expected = crop(normalized, MNI_2MM, crop_grid, fill=background_level(normalized))
    np.testing.assert_allclose(data, expected, rtol=1e-6, atol=1e-6)
    assert abs(data[:2]).max() < 0.05 and abs(data[93:]).max() < 0.05  # FDG background ~0 outside the MNI grid (x)

    with Image.open(png) as im:
        assert im.format == "PNG"
        assert im.size == (3 * 380, 380 + 16)

    meta = json.loads(side.read_text())
    assert meta["input_sha256"] == hashlib.sha256(scan.read_bytes()).hexdigest()
    assert meta["subject_id"] == "fdg0001"
    assert meta["params_hash"] == fdg_params.digest()
    assert meta["params"]["crop_grid"]["origin_mm"] == [-94.0, -112.0, -36.0]
    assert meta["params"]["modality"] == "fdg_pet"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_preprocess_subject_ecd(ecd_cohort, crop_grid, tmp_path):
    scan = _scans(ecd_cohort)[0]
    data = preprocess_subject(scan, tmp_path / "e.nii.gz", PreprocParams("ecd_spect", crop_grid))
    normalized = normalize_intensity(_load(scan), "ecd_spect")
    expected = crop(normalized, MNI_2MM, crop_grid, fill=background_level(normalized))
    np.testing.assert_allclose(data, expected, rtol=1e-5, atol=1e-5)
    assert data.min() < -1 and data.max() > 1  # z-scores, not ratios


@pytest.mark.parametrize("modality", ["ecd_spect", "fdg_pet"])
def test_crop_padding_is_the_background_no_stripes(ecd_cohort, fdg_cohort, crop_grid, tmp_path, modality):
    """The crop reaches 2 voxels past the MNI grid on each side in x. The padding must continue the background
    just inside the grid: a z-scored ECD scan's background is about -5, and padding it with 0 (the brain mean)
    drew two bright stripes on every mosaic tile."""
    scan = _scans(ecd_cohort if modality == "ecd_spect" else fdg_cohort)[0]
    data = preprocess_subject(scan, tmp_path / "p.nii.gz", PreprocParams(modality, crop_grid))
    assert crop_grid.offset_in(MNI_2MM)[0] == -2  # the padded columns are x = 0, 1 and 93, 94
    padded = np.concatenate([data[:2], data[93:]])
    adjacent = np.concatenate([data[2:4], data[91:93]])  # the grid's outermost columns: air outside the head
    assert np.ptp(padded) == 0  # one constant
    assert abs(padded.mean() - np.median(adjacent)) < 0.1 * max(1.0, abs(np.median(adjacent)))
    # no stripe: the padded columns are not brighter than the background beside them
    assert padded.max() <= np.percentile(adjacent, 99) + 1e-3
    if modality == "ecd_spect":
        assert padded.mean() < -2  # the z-scored background, far below the brain mean 0


def test_params_digest_tracks_parameters(crop_grid):
    a = PreprocParams("fdg_pet", crop_grid)
    assert a.digest() == PreprocParams("fdg_pet", crop_grid).digest()
    assert a.digest() != PreprocParams("fdg_pet", crop_grid, reference="cerebellum").digest()
    assert a.digest() != PreprocParams("fdg_pet", crop_grid, interpolation=3).digest()
    assert a.digest() != PreprocParams("ecd_spect", crop_grid).digest()


def test_scan_outside_brain_mask_raises(fdg_params, tmp_path):
    vol = np.zeros(MNI_2MM.shape, np.float32)
    vol[:5, :5, :5] = 100.0  # signal only in a corner, outside the brain
    scan = tmp_path / "corner.nii.gz"
    nib.save(nib.Nifti1Image(vol, MNI_2MM.affine), scan)
    out = tmp_path / "out.nii.gz"
    with pytest.raises(InputError) as info:
        preprocess_subject(scan, out, fdg_params, subject="sub-x", sidecar=tmp_path / "out.json")
    msg = str(info.value)
    assert str(scan) in msg
    assert "sub-x" in msg
    assert "empty brain" in msg
    assert "MNI space" in msg
    assert not out.exists() and not (tmp_path / "out.json").exists()


def test_scan_in_scanner_space_in_an_mni_cohort_is_told_to_use_space_native(fdg_cohort, crop_grid, tmp_path):
    """A scanner-space scan (here an FDG scan whose header puts its first voxel at the scanner's origin, as many
    converters write it) in a `space: mni` cohort leaves the MNI brain nearly empty: the error says to set
    `space: native`, and with it the same scan registers and preprocesses."""
    img = nib.load(_scans(fdg_cohort)[0])
    scanner = np.diag([2.0, 2.0, 2.0, 1.0])  # voxel (0, 0, 0) at 0 mm: the brain about 130 mm from MNI's
    scan = tmp_path / "scanner.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32), scanner), scan)
    out = tmp_path / "out.nii.gz"
    with pytest.raises(InputError) as info:
        preprocess_subject(scan, out, PreprocParams("fdg_pet", crop_grid), subject="sub-s", sidecar=tmp_path / "o.json")
    msg = str(info.value)
    assert str(scan) in msg and "sub-s" in msg and "empty brain" in msg
    assert "evidently not in MNI space" in msg and "set `space: native` for the cohort" in msg
    assert "cohorts.<name>.space" in msg and "--space native" in msg
    assert not out.exists()
    # the suggestion works: registered to the template, the scan preprocesses
    params = PreprocParams("fdg_pet", crop_grid, space="native")
    preprocess_subject(scan, out, params, subject="sub-s", sidecar=tmp_path / "o.json")
    assert json.loads((tmp_path / "o.json").read_text())["registration"]["similarity"] > 0.8


def test_empty_brain_after_registration_blames_the_registration_not_the_space(brain):
    vol = np.zeros(MNI_2MM.shape, np.float32)
    vol[:6, :6, :6] = 100.0
    with pytest.raises(InputError, match="empty brain.*after registration.*registration failed") as info:
        normalize_intensity(vol, "fdg_pet", who="x.nii.gz", space="native")
    assert "space: native" not in str(info.value)


def test_all_zero_scan_raises(fdg_params, tmp_path):
    scan = tmp_path / "zero.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(MNI_2MM.shape, np.float32), MNI_2MM.affine), scan)
    with pytest.raises(InputError, match="zero"):
        preprocess_subject(scan, tmp_path / "o.nii.gz", fdg_params)


# --- other grids: resampling through the affine ---------------------------------------------------------


def _corr_in_brain(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(np.corrcoef(a[mask], b[mask])[0, 1])


@pytest.fixture(scope="module")
def clean_one(fdg_cohort, fdg_params, tmp_path_factory):
    scan = _scans(fdg_cohort)[1]
    d = tmp_path_factory.mktemp("clean_one")
    return scan, preprocess_subject(scan, d / "clean.nii.gz", fdg_params)


def test_3mm_scan_resamples_close_to_clean(clean_one, fdg_params, crop_grid, brain, tmp_path):
    scan, clean = clean_one
    img3 = resample_to_output(nib.load(scan), voxel_sizes=3.0, order=1)
    assert img3.shape != MNI_2MM.shape
    np.testing.assert_allclose(np.diag(img3.affine)[:3], 3.0)
    path = tmp_path / "three_mm.nii.gz"
    nib.save(img3, path)
    out = preprocess_subject(path, tmp_path / "o.nii.gz", fdg_params)
    assert out.shape == (95, 95, 48)
    mask = crop(brain, MNI_2MM, crop_grid)
    assert _corr_in_brain(out, clean, mask) > 0.95
    assert abs(float(out[mask].mean()) - float(clean[mask].mean())) < 0.02


def test_shifted_grid_scan_resamples_close_to_clean(clean_one, fdg_params, crop_grid, brain, tmp_path):
    scan, clean = clean_one
    aff = MNI_2MM.affine.copy()
    aff[:3, 3] += (5.0, -7.0, 3.0)  # not a whole number of voxels: a genuinely different grid
    shifted = resample_from_to(nib.load(scan), (MNI_2MM.shape, aff), order=1)
    path = tmp_path / "shifted.nii.gz"
    nib.save(shifted, path)
    out = preprocess_subject(path, tmp_path / "o.nii.gz", fdg_params)
    mask = crop(brain, MNI_2MM, crop_grid)
    r_affine = _corr_in_brain(out, clean, mask)
    assert r_affine > 0.95

    # control: the same voxels read as if they were on the MNI grid (affine ignored) match clearly worse,
    # so the similarity above comes from resampling through the affine
    naive = tmp_path / "naive.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(shifted.dataobj), MNI_2MM.affine), naive)
    out_naive = preprocess_subject(naive, tmp_path / "n.nii.gz", fdg_params)
    assert _corr_in_brain(out_naive, clean, mask) < r_affine - 0.05


# --- the messy-but-valid matrix ---------------------------------------------------------------------------


def _pick_subjects(fdg_cohort: Path) -> pd.DataFrame:
    table = pd.read_csv(fdg_cohort / "participants.tsv", sep="\t", dtype=str)
    ad = table[table["diagnosis"] == "AD"].head(2)
    nc = table[table["diagnosis"] == "NC"].head(1)
    picked = pd.concat([ad, nc]).sort_values("subject_id").reset_index(drop=True)
    picked["path"] = [str((fdg_cohort / p).resolve()) for p in picked["path"]]
    return picked


def _run_cohort(table: Path, work: Path, params: PreprocParams) -> dict:
    """validate_cohort -> preprocess_subject -> build_cache -> read_cache, as the workflow does."""
    df = validate_cohort(table, progress=False)
    pre = work / "preproc"
    volumes = preprocess_table(df, params, pre)
    validated = work / "validated.tsv"
    df.drop(columns="row").to_csv(validated, sep="\t", index=False)
    build_cache(validated, pre, work / "cache.h5", MOSAIC, params.modality, "twin")
    out = read_cache(work / "cache.h5")
    out["volumes"] = volumes
    out["table"] = df
    return out


@pytest.fixture(scope="module")
def clean_twins(fdg_cohort, fdg_params, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("clean_twins")
    picked = _pick_subjects(fdg_cohort)
    picked.to_csv(work / "participants.tsv", sep="\t", index=False)
    return _run_cohort(work / "participants.tsv", work, fdg_params)


def _to_lps(img: nib.Nifti1Image) -> nib.Nifti1Image:
    # flip data axes 0 and 1; as_reoriented adjusts the affine so every voxel keeps its world position
    return img.as_reoriented(np.array([[0, -1], [1, -1], [2, 1]]))


def _to_int16(img: nib.Nifti1Image) -> nib.Nifti1Image:
    data = np.asarray(img.dataobj, dtype=np.float64)
    lo, hi = data.min(), data.max()
    slope = (hi - lo) / 65000.0
    inter = lo + 32500.0 * slope
    q = np.round((data - inter) / slope).astype(np.int16)
    out = nib.Nifti1Image(q, img.affine)
    out.header.set_slope_inter(slope, inter)
    return out


def _to_4d(img: nib.Nifti1Image) -> nib.Nifti1Image:
    return nib.Nifti1Image(np.asarray(img.dataobj)[..., None], img.affine)


VARIANTS = {
    "lps": dict(lps=True),
    "int16": dict(int16=True),
    "4d": dict(four_d=True),
    "nii": dict(nii=True),
    "all": dict(lps=True, int16=True, four_d=True, nii=True),
}


def _write_messy(src: Path, dst_dir: Path, sid: str, lps=False, int16=False, four_d=False, nii=False) -> Path:
    img = nib.load(src)
    img = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine)
    if lps:
        img = _to_lps(img)
    if four_d:
        img = _to_4d(img)
    if int16:  # last: a new image built from this one would drop the header's scaling
        img = _to_int16(img)
    path = dst_dir / f"{sid}_messy{'.nii' if nii else '.nii.gz'}"
    nib.save(img, path)
    # the messy file really is messy
    back = nib.load(path)
    assert (back.shape == (91, 109, 91, 1)) == four_d
    assert (nib.aff2axcodes(back.affine) == ("L", "P", "S")) == lps
    assert (back.get_data_dtype() == np.int16) == int16
    if int16:
        assert back.dataobj.slope != 1.0 and back.dataobj.inter != 0.0
    assert (path.read_bytes()[:2] == b"\x1f\x8b") != nii  # gzip magic
    return path


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_messy_but_valid_matrix(variant, clean_twins, fdg_params, tmp_path):
    picked = clean_twins["table"]
    scans = tmp_path / "raw"
    scans.mkdir()
    rows = []
    for rec in picked.itertuples():
        messy = _write_messy(Path(rec.path), scans, rec.subject_id, **VARIANTS[variant])
        rows.append(
            {
                "subject_id": rec.subject_id,
                "diagnosis": {"AD": "ad", "NC": "cn"}[rec.diagnosis],
                "mmse": rec.mmse,
                "age": rec.age,
                "sex": rec.sex,
                "site": rec.site,
                "path": f"raw/{messy.name}",  # relative to the table
            }
        )
    table = tmp_path / "participants.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    assert "\t" not in table.read_text() and ",cn," in table.read_text()

    messy = _run_cohort(table, tmp_path, fdg_params)
    clean = clean_twins

    np.testing.assert_array_equal(messy["subject_id"], clean["subject_id"])
    np.testing.assert_array_equal(messy["diagnosis"], clean["diagnosis"])
    np.testing.assert_array_equal(messy["label"], clean["label"])
    assert set(messy["label"].tolist()) == {0, 1}
    np.testing.assert_array_equal(messy["mmse"], clean["mmse"])
    assert messy["attrs"]["params_hash"] == clean["attrs"]["params_hash"]
    # the caches record each cohort's own files
    assert not set(messy["sha256"]) & set(clean["sha256"])
    np.testing.assert_array_equal(messy["sha256"], messy["table"]["sha256"].to_numpy())

    if VARIANTS[variant].get("int16"):
        # int16 quantization: |error| <= slope/2 ~ 0.06 raw units against a brain mean of thousands,
        # i.e. < 1e-4 after normalization. float16 storage: one float16 ulp is <= 2^-10 for values < 2
        # and relative 2^-10 above; both caches round separately, so allow ~1 ulp: atol 1e-3 + rtol 1e-3.
        vol_tol, mos_tol = dict(rtol=1e-4, atol=1e-4), dict(rtol=1e-3, atol=1e-3)
    else:
        # lossless re-storage of voxels already on the MNI grid: copied, never interpolated -> identical
        vol_tol, mos_tol = dict(rtol=0, atol=0), dict(rtol=0, atol=0)
    for sid, vol in clean["volumes"].items():
        np.testing.assert_allclose(messy["volumes"][sid], vol, **vol_tol)
    assert messy["mosaics"].shape == clean["mosaics"].shape == (3, 3, MOSAIC, MOSAIC)
    np.testing.assert_allclose(messy["mosaics"], clean["mosaics"], **mos_tol)
    np.testing.assert_allclose(messy["roi"], clean["roi"], rtol=1e-4, atol=1e-4)


# --- the two ways of running the steps give the same bytes ---------------------------------------------


def _flipped_shifted(scan: Path, path: Path) -> Path:
    """The scan on a shifted grid (resampling through the affine) stored left-right flipped (reorient works)."""
    aff = MNI_2MM.affine.copy()
    aff[:3, 3] += (5.0, -7.0, 3.0)
    shifted = resample_from_to(nib.load(scan), (MNI_2MM.shape, aff), order=1)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = MNI_2MM.shape[0] - 1
    nib.save(nib.Nifti1Image(np.asarray(shifted.dataobj)[::-1], shifted.affine @ flip), path)
    return path


@pytest.mark.parametrize("case", ["fdg", "ecd", "flipped_shifted"])
def test_direct_steps_equal_the_nipype_workflow_bit_for_bit(case, fdg_cohort, ecd_cohort, crop_grid, tmp_path):
    """MNI-space scans skip nipype (`run_steps`); its volumes must be the workflow's to the bit, memory order
    included (it decides the sidecar's float32 mean)."""
    from adtransfer.imaging.nodes import run_workflow
    from adtransfer.imaging.preprocess import run_steps

    scan = _scans(ecd_cohort if case == "ecd" else fdg_cohort)[0]
    if case == "flipped_shifted":
        scan = _flipped_shifted(scan, tmp_path / "flipped.nii.gz")
    params = PreprocParams("ecd_spect" if case == "ecd" else "fdg_pet", crop_grid)
    direct, direct_mni = run_steps(params, str(scan), "who")
    (tmp_path / "work").mkdir()
    nodes, nodes_mni, records = run_workflow(params, str(scan), "who", str(tmp_path / "work"))
    assert records == {"registration": {"space": "mni", "registered": False}}
    for a, b in ((direct, nodes), (direct_mni, nodes_mni)):
        assert a.dtype == b.dtype == np.float32
        assert a.tobytes(order="A") == b.tobytes(order="A")
        assert a.flags.f_contiguous == b.flags.f_contiguous
    assert direct.mean() == nodes.mean()


def test_numpy_dilate_and_erode_equal_scipy(brain):
    from scipy import ndimage

    from adtransfer.imaging.preprocess import dilate, erode

    rng = np.random.default_rng(0)
    for mask in (brain, rng.random((17, 12, 9)) > 0.4, np.ones((5, 6, 7), bool)):
        for n in (1, 4):
            assert np.array_equal(dilate(mask, n), ndimage.binary_dilation(mask, iterations=n))
        assert np.array_equal(erode(mask), ndimage.binary_erosion(mask))


def _bits(x: float) -> bytes:
    return np.float64(x).tobytes()  # == takes -0.0 for 0.0; the crop's fill is written to the file


@pytest.mark.parametrize("n", [1, 2, 7, 10, 100_001, 300_000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_median_is_np_median_to_the_bit(n, dtype):
    """`median` stands in for np.median on the preprocessing path (the crop's fill): the same number, not nearly,
    for odd and even counts; ties and a z-scored scan's negative background included."""
    rng = np.random.default_rng(n)
    values = (rng.normal(-3.0, 2.0, n) * 1000).astype(dtype)
    values[: n // 3] = values[0]  # a run of equal values, as a background
    rng.shuffle(values)
    assert _bits(median(values)) == _bits(np.median(values))
    assert _bits(median(values.reshape(1, -1))) == _bits(np.median(values))


@pytest.mark.parametrize("values", [[-0.0, 1.0, -0.0], [-0.0], [-0.0, -0.0], [-1.0, -0.0, 0.0, 2.0], [0.0, -0.0, 3.0]])
def test_median_signed_zeros_as_np_median(values):
    values = np.array(values, np.float32)
    assert _bits(median(values)) == _bits(np.median(values))
