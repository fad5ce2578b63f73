"""DICOM series folders as input (issue 14): dcm2niix through nipype; geometry survives; clear errors."""

from __future__ import annotations

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
from adtransfer.inputs.dicom import convert_series, load_series  # noqa: E402

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


def write_series(volume: np.ndarray, affine_ras: np.ndarray, folder, series_uid=None, slope=0.5) -> None:
    """One DICOM file per slice of volume[i, j, k] (i = column, j = row), geometry from the RAS affine."""
    folder.mkdir(parents=True, exist_ok=True)
    lps = LPS @ affine_ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    iop = np.r_[lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]]
    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()
    pixels = np.clip(np.round(volume / slope), 0, 65535).astype(np.uint16)
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
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, 0
        ds.PixelData = np.ascontiguousarray(pixels[:, :, k].T).tobytes()  # rows (j) by columns (i)
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
    out = convert_series(series["folder"], tmp_path / "s.nii.gz")
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
