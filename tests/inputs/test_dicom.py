"""DICOM series folders as input (issue 14): dcm2niix through nipype; geometry survives; clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from nibabel.processing import resample_from_to

pydicom = pytest.importorskip("pydicom")
import nibabel as nib  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from adtransfer.errors import InputError  # noqa: E402
from adtransfer.imaging.preprocess import PreprocParams, preprocess_subject  # noqa: E402
from adtransfer.inputs.cohort import validate_cohort  # noqa: E402
from adtransfer.inputs.dicom import choose_output, convert_series, load_series  # noqa: E402

PT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def tilted_axial_affine(n_slices: int, pixel_mm=2.4, slice_mm=3.3, tilt_deg=15.0) -> np.ndarray:
    """RAS affine of an axial 128x128 series tilted about the left-right axis; rows/cols as DICOM stores them."""
    t = np.deg2rad(tilt_deg)
    row_dir = np.array([1.0, 0.0, 0.0])  # LPS: columns run towards the patient's left
    col_dir = np.array([0.0, np.cos(t), np.sin(t)])  # rows run posterior (and a little up)
    normal = np.cross(row_dir, col_dir)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row_dir * pixel_mm, col_dir * pixel_mm, normal * slice_mm
    centre = np.array([0.0, 18.0, 15.0])  # LPS mm: the MNI brain's middle
    lps[:3, 3] = centre - lps[:3, :3] @ (np.array([128, 128, n_slices]) - 1) / 2
    return LPS @ lps


def gantry_tilted_affine(n_slices: int, slice_mm=3.3, tilt_deg=15.0) -> np.ndarray:
    """A CT-style gantry tilt: image planes tilted about the left-right axis as in `tilted_axial_affine`, but the
    slices stepping along the scanner's z axis (the table), not along their normal: a sheared grid."""
    affine = tilted_axial_affine(n_slices, slice_mm=slice_mm, tilt_deg=tilt_deg)
    affine[:3, 2] = [0.0, 0.0, slice_mm]
    return affine


def write_series(
    volume: np.ndarray, affine_ras: np.ndarray, folder, series_uid=None, slope=0.5, signed=False, **tags
) -> None:
    """One DICOM file per slice of volume[i, j, k] (i = column, j = row), geometry from the RAS affine. signed:
    16-bit signed pixels (dcm2niix corrects tilt and spacing only for those); tags: further DICOM attributes."""
    folder.mkdir(parents=True, exist_ok=True)
    lps = LPS @ affine_ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    iop = np.r_[lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]]
    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()
    pixels = np.clip(np.round(volume / slope), 0, 32767 if signed else 65535).astype(np.int16 if signed else np.uint16)
    for k in range(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = PT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = PT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.PatientName = "PT", "SYNTH", "Synthetic^Subject"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.SeriesTime, ds.SeriesNumber, ds.InstanceNumber = "20260101", "120000", 1, k + 1
        ds.ImageOrientationPatient = [round(float(v), 6) for v in iop]
        ds.ImagePositionPatient = [round(float(v), 4) for v in lps[:3, :3] @ [0, 0, k] + lps[:3, 3]]
        ds.PixelSpacing = [round(float(spacing[1]), 4), round(float(spacing[0]), 4)]  # row spacing, column spacing
        ds.SliceThickness = round(float(spacing[2]), 4)
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, int(signed)
        ds.RescaleSlope, ds.RescaleIntercept = slope, 0
        ds.PixelData = np.ascontiguousarray(pixels[:, :, k].T).tobytes()  # rows (j) by columns (i)
        for key, value in tags.items():
            setattr(ds, key, value)
        ds.save_as(folder / f"IM{k + 1:04d}.dcm", enforce_file_format=True)


@pytest.fixture(scope="module")
def series(fdg_cohort, tmp_path_factory):
    """A synthetic FDG scan on a tilted 128x128 grid with 3.3 mm slices: as DICOM and as its NIfTI twin."""
    out = tmp_path_factory.mktemp("dicom")
    mni = nib.load(sorted((fdg_cohort / "scans").glob("*.nii.gz"))[0])
    affine = tilted_axial_affine(60)
    vol = resample_from_to(mni, ((128, 128, 60), affine), order=1, mode="constant", cval=0.0)
    data = np.round(np.asarray(vol.dataobj, np.float32) / 0.5) * 0.5  # what the 16-bit DICOM can hold
    write_series(data, affine, out / "series one")
    twin = out / "twin.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), twin)
    return {"folder": out / "series one", "twin": twin, "data": data, "affine": affine, "dir": out}


def test_orientation_and_voxel_size_survive_the_round_trip(series, tmp_path):
    out, record = convert_series(series["folder"], tmp_path / "s.nii.gz")
    assert record["corrected_for"] is None and record["dcm2niix_outputs"] == [record["used"]]
    img = nib.load(out)
    assert sorted(np.round(img.header.get_zooms()[:3], 3)) == [2.4, 2.4, 3.3]
    # the same world positions carry the same values: resample the conversion onto the original grid
    back = resample_from_to(img, (series["data"].shape, series["affine"]), order=0)
    inside = series["data"] > series["data"].max() * 0.2
    np.testing.assert_allclose(np.asarray(back.dataobj)[inside], series["data"][inside], rtol=1e-3, atol=0.5)
    np.testing.assert_allclose(img.affine[:3, :3] @ np.linalg.inv(img.affine[:3, :3]), np.eye(3), atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["s.nii.gz"]  # nothing else left behind


def test_converted_scan_preprocesses_like_its_nifti_twin(series, crop_grid, tmp_path):
    params = PreprocParams("fdg_pet", crop_grid)
    from_dicom = preprocess_subject(series["folder"], tmp_path / "d.nii.gz", params, "s1", sidecar=tmp_path / "d.json")
    from_nifti = preprocess_subject(series["twin"], tmp_path / "n.nii.gz", params, "s1")
    np.testing.assert_allclose(from_dicom, from_nifti, atol=1e-3)


def test_the_preprocess_command_converts_a_series_folder_without_pydicom(series, crop_grid, tmp_path):
    """A DICOM folder row goes through `python -m adtransfer preprocess` as well: the command's process hides
    pydicom from nibabel (adtransfer.__main__), and the series still converts (dcm2niix needs no pydicom), to the
    same volume as in a process that has pydicom."""
    from cli_helpers import run_command_importing

    out = tmp_path / "cmd.nii.gz"
    args = ["preprocess", "--input", series["folder"], "--output", out, "--modality", "fdg_pet", "--subject", "s1"]
    proc, modules = run_command_importing("module", [*args, "--sidecar", tmp_path / "cmd.json"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not {m for m in modules if m.startswith("pydicom.")}
    assert json.loads((tmp_path / "cmd.json").read_text())["dicom"]["used"]
    here = preprocess_subject(series["folder"], tmp_path / "here.nii.gz", PreprocParams("fdg_pet", crop_grid), "s1")
    assert np.array_equal(np.asarray(nib.load(out).dataobj), here)


def test_validate_accepts_a_dicom_folder_row(series, tmp_path):
    table = tmp_path / "participants.tsv"
    table.write_text(f"subject_id\tdiagnosis\tpath\nd1\tAD\t{series['folder']}\nd2\tNC\t{series['twin']}\n")
    df = validate_cohort(table, progress=False)
    row = df.set_index("subject_id").loc["d1"]
    np.testing.assert_allclose(sorted(float(v) for v in row["voxel_mm"].split("x")), [2.4, 2.4, 3.3], atol=1e-3)
    assert len(row["sha256"]) == 64


def _copy_series(series, dst):
    import shutil

    shutil.copytree(series["folder"], dst)
    return dst


@pytest.mark.parametrize("case", ["two series", "empty", "not dicom"])
def test_bad_dicom_folder_gives_one_clear_error_and_leaves_nothing(series, tmp_path, case):
    folder = tmp_path / f"bad {case}"
    if case == "two series":
        _copy_series(series, folder)
        write_series(series["data"][:, :, :10], tilted_axial_affine(10), folder / "second", slope=0.5)
        match = "2 image series"
    elif case == "empty":
        folder.mkdir()
        match = "empty"
    else:
        _copy_series(series, folder)
        (folder / "notes.txt").write_text("not an image")
        match = "not DICOM"
    out_dir = tmp_path / "out"
    with pytest.raises(InputError, match=match) as err:
        convert_series(folder, out_dir / "s.nii.gz", who="subject x1")
    assert str(folder) in str(err.value) and "subject x1" in str(err.value)
    assert not out_dir.exists() or not any(out_dir.iterdir())
    with pytest.raises(InputError, match=match):
        load_series(folder)


def test_validate_reports_a_bad_dicom_folder_by_row(series, tmp_path):
    folder = tmp_path / "empty series"
    folder.mkdir()
    table = tmp_path / "participants.tsv"
    table.write_text(f"subject_id\tdiagnosis\tpath\nd1\tAD\t{folder}\nd2\tNC\t{series['twin']}\n")
    with pytest.raises(InputError, match=r"empty series.*subject d1"):
        validate_cohort(table, progress=False)


# --- dcm2niix's corrected copies: gantry tilt (_Tilt_1) and unequal slice spacing (_Eq_1) -------------------


def _on_grid(fdg_cohort, affine, shape):
    mni = nib.load(sorted((fdg_cohort / "scans").glob("*.nii.gz"))[0])
    vol = resample_from_to(mni, (shape, affine), order=1, mode="constant", cval=0.0)
    return np.round(np.asarray(vol.dataobj, np.float32) / 0.5) * 0.5


def test_unequally_spaced_series_uses_the_equidistant_volume(fdg_cohort, tmp_path):
    """A slice missing from the series: dcm2niix writes the series as acquired (slices placed as if equidistant)
    and `_Eq_1`, interpolated onto equidistant slices. That one is used: values sit where they were acquired."""
    affine = tilted_axial_affine(40)
    data = _on_grid(fdg_cohort, affine, (128, 128, 40))
    write_series(data, affine, tmp_path / "gap", signed=True)
    (tmp_path / "gap" / "IM0020.dcm").unlink()
    out, record = convert_series(tmp_path / "gap", tmp_path / "out" / "s.nii.gz", who="subject g1")
    assert record["corrected_for"] == "unequal slice spacing" and record["used"].endswith("_Eq_1.nii.gz")
    assert len(record["dcm2niix_outputs"]) == 2 and record["used"] in record["dcm2niix_outputs"]
    back = np.asarray(resample_from_to(nib.load(out), (data.shape, affine), order=1).dataobj)
    inside = data > data.max() * 0.2
    inside[:, :, 18:21] = False  # around the missing slice: interpolated
    # mean error 3 % of the mean uptake (interpolated twice); the volume as acquired, 7 % (the slices past the gap
    # sit one slice off)
    assert np.abs(back[inside] - data[inside]).mean() < 0.045 * data[inside].mean()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["s.nii.gz"]  # nothing else left behind


def test_gantry_tilted_series_uses_the_tilt_corrected_volume_and_says_so(fdg_cohort, crop_grid, tmp_path):
    """Gantry tilt (slices stepping along the table, planes tilted): dcm2niix writes the sheared volume as acquired
    and `_Tilt_1`, resampled onto slices stacked along their normal. That one is used, and the sidecar says so."""
    affine = gantry_tilted_affine(40)
    data = _on_grid(fdg_cohort, affine, (128, 128, 40))
    write_series(data, affine, tmp_path / "tilted", signed=True, GantryDetectorTilt=15.0)
    out, record = convert_series(tmp_path / "tilted", tmp_path / "s.nii.gz")
    assert record["corrected_for"] == "gantry tilt" and record["used"].endswith("_Tilt_1.nii.gz")
    img = nib.load(out)
    axes = img.affine[:3, :3] / np.linalg.norm(img.affine[:3, :3], axis=0)
    np.testing.assert_allclose(axes.T @ axes, np.eye(3), atol=1e-4)  # no shear left (as acquired: cos 75 deg)
    np.testing.assert_allclose(sorted(img.header.get_zooms()), [2.4, 2.4, 3.3 * np.cos(np.deg2rad(15))], atol=1e-3)
    # native space: registered from the corrected volume; the sidecar records which dcm2niix output was used
    params = PreprocParams("fdg_pet", crop_grid, space="native")
    sidecar = tmp_path / "t.json"
    preprocess_subject(tmp_path / "tilted", tmp_path / "t.nii.gz", params, "t1", sidecar=sidecar)
    meta = json.loads(sidecar.read_text())
    assert meta["dicom"]["corrected_for"] == "gantry tilt" and meta["dicom"]["used"].endswith("_Tilt_1.nii")
    assert meta["registration"]["similarity"] > 0.8


@pytest.mark.parametrize(
    "names, used, corrected_for",
    [
        (["1_.nii.gz"], "1_.nii.gz", None),
        (["1_.nii", "1__Eq_1.nii"], "1__Eq_1.nii", "unequal slice spacing"),
        (["1_.nii", "1__Tilt_1.nii"], "1__Tilt_1.nii", "gantry tilt"),
        (["x_Tilt_Eq_1.nii", "x.nii"], "x_Tilt_Eq_1.nii", "gantry tilt and unequal slice spacing"),
        (["Brain_Eq_1.nii"], "Brain_Eq_1.nii", None),  # a series named so, not a corrected copy (no volume beside)
    ],
)
def test_choose_output_prefers_the_corrected_volume(names, used, corrected_for):
    assert choose_output(names, "f") == (
        used,
        {"dcm2niix_outputs": sorted(names), "used": used, "corrected_for": corrected_for},
    )


@pytest.mark.parametrize(
    "names, match",
    [
        ([], "no image series"),
        (["1_.nii", "2_.nii"], "2 image series"),
        (["1_.nii", "1_a.nii"], "2 image series"),  # dcm2niix's suffix for a second series of the same name
        (["1_.nii", "1__Tilt_1.nii", "2_.nii"], "2 image series"),  # a tilted series beside another one
        (["1_.nii", "2__Eq_1.nii"], "2 image series"),  # a corrected copy of a series that is not the other one
        (["1_.nii", "1__Tilt_1.nii", "1__Eq_1.nii"], "3 image series"),
    ],
)
def test_choose_output_still_refuses_several_series(names, match):
    with pytest.raises(InputError, match=f"folder x: {match}"):
        choose_output(names, "folder x")
