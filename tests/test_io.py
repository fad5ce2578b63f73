"""Scans against the input contract (io.load_volume) and atomic output writing."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from adtransfer.errors import InputError
from adtransfer.io import atomic_output, is_nifti_path, load_volume, read_nifti, save_nifti, sha256_file

AFFINE_2MM = np.diag([2.0, 2.0, 2.0, 1.0])
SHAPE = (10, 12, 8)


def random_volume(shape=SHAPE, seed: int = 0) -> np.ndarray:
    """Strictly positive float32 voxels, like a small PET scan."""
    return np.random.default_rng(seed).uniform(1.0, 100.0, shape).astype(np.float32)


def write_volume(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE_2MM) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def write_scaled_int16(path: Path, raw: np.ndarray, slope: float, inter: float) -> Path:
    """Write an int16 NIfTI with the given scl_slope/scl_inter in its header.

    nibabel recomputes scaling when it saves an image, so the file is assembled by hand: header, the 4-byte
    extension flag, then the raw int16 voxels in Fortran order.
    """
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(raw.shape)
    hdr.set_data_dtype(np.int16)
    hdr.set_qform(AFFINE_2MM, code=1)
    hdr.set_sform(AFFINE_2MM, code=1)
    hdr["scl_slope"] = slope
    hdr["scl_inter"] = inter
    hdr["vox_offset"] = 352
    payload = hdr.binaryblock + b"\0" * 4 + raw.astype("<i2").tobytes(order="F")
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def load_error(path: Path, who: str = "") -> str:
    with pytest.raises(InputError) as excinfo:
        load_volume(path, who=who)
    msg = str(excinfo.value)
    assert str(path) in msg, f"message does not name the file: {msg}"
    assert len(msg.splitlines()) == 1, f"expected one line: {msg!r}"
    return msg


# --- accepted scans ------------------------------------------------------------------------------------


def test_valid_volume_loads_as_float32_3d(tmp_path):
    data = random_volume()
    path = write_volume(tmp_path / "scan.nii.gz", data)
    img = load_volume(path)
    assert img.shape == SHAPE
    out = np.asarray(img.dataobj)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, data)
    np.testing.assert_allclose(img.affine, AFFINE_2MM)
    np.testing.assert_allclose(img.header.get_zooms()[:3], (2.0, 2.0, 2.0))


@pytest.mark.parametrize(
    ("dtype", "affine"),
    [
        (np.uint8, np.diag([-1.5, 1.5, 3.0, 1.0])),  # LAS, anisotropic
        (np.int16, np.array([[0, 0, 2.0, -20], [-2.0, 0, 0, 30], [0, 2.5, 0, -10], [0, 0, 0, 1]])),  # oblique
        (np.float64, np.diag([1.0, 1.0, 1.0, 1.0])),
    ],
)
def test_any_orientation_voxel_size_and_dtype(tmp_path, dtype, affine):
    data = (random_volume() * 2).astype(dtype)
    path = write_volume(tmp_path / "scan.nii", data, affine)
    img = load_volume(path)
    np.testing.assert_allclose(img.affine, affine)
    np.testing.assert_allclose(np.asarray(img.dataobj), data.astype(np.float32))
    assert np.asarray(img.dataobj).dtype == np.float32


def test_4d_with_one_volume_is_squeezed(tmp_path):
    data = random_volume(SHAPE + (1,))
    path = write_volume(tmp_path / "one_frame.nii.gz", data)
    img = load_volume(path)
    assert img.shape == SHAPE
    np.testing.assert_array_equal(np.asarray(img.dataobj), data[..., 0])


@pytest.mark.parametrize("name", ["scaled.nii", "scaled.nii.gz"])
def test_int16_scl_slope_and_inter_are_applied(tmp_path, name):
    raw = np.random.default_rng(3).integers(1, 3000, SHAPE).astype(np.int16)
    slope, inter = 0.25, 7.0
    path = write_scaled_int16(tmp_path / name, raw, slope, inter)
    # the file really holds scaled int16 (guards the hand-written header)
    on_disk = nib.load(str(path))
    assert on_disk.get_data_dtype() == np.int16
    assert on_disk.dataobj.slope == pytest.approx(slope)
    img = load_volume(path)
    out = np.asarray(img.dataobj)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, raw.astype(np.float64) * slope + inter, rtol=1e-6)
    assert not np.allclose(out, raw)


# --- defects -------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    msg = load_error(tmp_path / "absent.nii.gz", who="subject sub-01")
    assert "does not exist" in msg
    assert "subject sub-01" in msg


def test_directory_instead_of_file(tmp_path):
    d = tmp_path / "dir.nii.gz"
    d.mkdir()
    assert "not a file" in load_error(d)


@pytest.mark.parametrize("name", ["scan.txt", "scan.png", "scan.nii.zip"])
def test_not_a_nifti_by_name(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    msg = load_error(path, who="subject sub-02")
    assert "not a NIfTI" in msg
    assert "subject sub-02" in msg


@pytest.mark.parametrize("name", ["garbage.nii.gz", "garbage.nii"])
def test_garbage_named_nifti(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not an image at all\n" * 40)
    msg = load_error(path)
    assert "cannot read NIfTI header" in msg


@pytest.mark.parametrize("name", ["cut.nii.gz", "cut.nii"])
def test_truncated_file(tmp_path, name):
    path = write_volume(tmp_path / name, random_volume())
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    msg = load_error(path, who="subject sub-03")
    assert "truncated" in msg
    assert "subject sub-03" in msg


def test_voxels_that_do_not_match_the_gzip_crc(tmp_path):
    """A .nii.gz whose deflate data are valid but whose voxels are not those its CRC was computed from (a changed
    byte, as a damaged disk or transfer leaves it) fails gzip's CRC check. nibabel's own route reads only up to
    the voxels it needs and, for a volume this size, returned the changed voxels without a word."""
    path = write_volume(tmp_path / "changed.nii.gz", random_volume((40, 40, 40)))
    raw = gzip.decompress(path.read_bytes())
    changed = bytearray(raw)
    changed[400] ^= 0xFF  # the lowest byte of voxel 12: a small change, still finite
    blob = gzip.compress(bytes(changed), mtime=0)
    path.write_bytes(blob[:-8] + struct.pack("<II", zlib.crc32(raw), len(raw)))
    msg = load_error(path, who="subject sub-04")
    assert "corrupt" in msg
    assert "CRC" in msg
    assert "subject sub-04" in msg


@pytest.mark.parametrize("how", ["zero padding", "a second member"])
def test_gzip_stream_endings_that_gzip_accepts(tmp_path, how):
    """What gzip.decompress reads, a scan is read from: zero padding after the stream, a file of two members."""
    data = random_volume()
    path = write_volume(tmp_path / "scan.nii.gz", data)
    raw = gzip.decompress(path.read_bytes())
    blob = gzip.compress(raw[:500]) + gzip.compress(raw[500:]) if how == "a second member" else path.read_bytes()
    path.write_bytes(blob + b"\0" * 64 if how == "zero padding" else blob)
    np.testing.assert_array_equal(np.asarray(load_volume(path).dataobj), data)


@pytest.mark.parametrize("how", ["garbage after the stream", "no trailer"])
def test_gzip_stream_endings_that_are_corrupt(tmp_path, how):
    """Bytes after the gzip stream that are not gzip, or a stream without its CRC and length: the file is damaged,
    even though the voxels may all be there."""
    path = write_volume(tmp_path / "scan.nii.gz", random_volume())
    blob = path.read_bytes()
    path.write_bytes(blob + b"garbage!" if how == "garbage after the stream" else blob[:-8])
    assert "corrupt" in load_error(path, who="subject sub-05")


@pytest.mark.parametrize("name", ["scan.nii.gz", "scan.nii"])
@pytest.mark.parametrize("klass", [nib.Nifti1Image, nib.Nifti2Image])
def test_read_nifti_gives_what_nib_load_gives(tmp_path, name, klass):
    """The in-memory read of a .nii.gz (ISA-L, one call) against nibabel's own: the same class, header bytes, affine
    and voxels, scaling included; a .nii is nibabel's image as it is."""
    data = np.random.default_rng(1).integers(-300, 3000, SHAPE).astype(np.int16)
    img = klass(data, np.diag([-2.0, 2.5, 3.0, 1.0]))
    img.header.set_slope_inter(0.5, 10.0)
    path = tmp_path / name
    nib.save(img, str(path))
    ours, theirs = read_nifti(path), nib.load(str(path))
    # the route taken: an image parsed from bytes has no file name
    assert ours.get_filename() == (None if name.endswith(".gz") else str(path))
    assert type(ours) is type(theirs)
    assert ours.header.binaryblock == theirs.header.binaryblock
    np.testing.assert_array_equal(ours.affine, theirs.affine)
    a, b = np.asarray(ours.dataobj), np.asarray(theirs.dataobj)
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels(tmp_path, bad):
    data = random_volume()
    data[1, 2, 3] = bad
    data[4, 5, 6] = bad
    msg = load_error(write_volume(tmp_path / "nonfinite.nii.gz", data))
    assert "NaN or Inf" in msg
    assert "2 voxels" in msg


def test_all_zero_volume(tmp_path):
    msg = load_error(write_volume(tmp_path / "zeros.nii.gz", np.zeros(SHAPE, np.float32)))
    assert "all voxels are zero" in msg


def test_2d_image(tmp_path):
    msg = load_error(write_volume(tmp_path / "slice.nii.gz", random_volume((10, 12))))
    assert "2D" in msg
    assert "3D" in msg


def test_flat_3d_image(tmp_path):
    msg = load_error(write_volume(tmp_path / "flat.nii.gz", random_volume((10, 12, 1))))
    assert "size 1" in msg


def test_4d_with_three_volumes(tmp_path):
    msg = load_error(write_volume(tmp_path / "dynamic.nii.gz", random_volume(SHAPE + (3,))))
    assert "4D" in msg
    assert "3 volumes" in msg


def test_singular_affine(tmp_path):
    # nibabel refuses to save a singular affine, so write a valid file and zero one sform row by hand
    path = write_scaled_int16(tmp_path / "singular.nii", np.ones(SHAPE, np.int16), slope=1.0, inter=0.0)
    blob = path.read_bytes()
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(blob))
    hdr["qform_code"] = 0
    hdr["srow_y"] = [0.0, 0.0, 0.0, 0.0]
    path.write_bytes(hdr.binaryblock + blob[348:])
    assert abs(np.linalg.det(nib.load(str(path)).affine[:3, :3])) < 1e-9
    msg = load_error(path)
    assert "singular" in msg
    assert "affine" in msg


def test_is_nifti_path():
    assert is_nifti_path("a/b.nii")
    assert is_nifti_path("a/B.NII.GZ")
    assert not is_nifti_path("a/b.nii.gz.bak")
    assert not is_nifti_path("a/b.png")


# --- outputs -------------------------------------------------------------------------------------------


def test_sha256_file_matches_hashlib(tmp_path):
    path = tmp_path / "blob.bin"
    blob = np.random.default_rng(0).bytes(3 * 1024 + 17)
    path.write_bytes(blob)
    assert sha256_file(path, chunk=1024) == hashlib.sha256(blob).hexdigest()


def test_atomic_output_success_renames_onto_final_name(tmp_path):
    final = tmp_path / "sub" / "table.tsv"
    with atomic_output(final) as tmp:
        assert tmp != final
        assert tmp.parent == final.parent
        assert not final.exists()
        tmp.write_text("a\tb\n")
    assert final.read_text() == "a\tb\n"
    assert sorted(p.name for p in final.parent.iterdir()) == ["table.tsv"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_output_gets_the_permissions_of_a_new_file(tmp_path, umask):
    """Not mkstemp's owner-only 0600: what open() gives a new file under the umask (0644 under 022)."""
    old = os.umask(umask)
    try:
        with atomic_output(tmp_path / "table.tsv") as tmp:
            tmp.write_text("a\n")
        (tmp_path / "plain.tsv").write_text("a\n")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "table.tsv").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.tsv").stat().st_mode) == 0o666 & ~umask, oct(mode)


def test_atomic_output_keeps_nifti_suffix(tmp_path):
    with atomic_output(tmp_path / "vol.nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz")
        nib.save(nib.Nifti1Image(random_volume(), AFFINE_2MM), str(tmp))
    # written gzip-compressed, as the final name promises
    assert (tmp_path / "vol.nii.gz").read_bytes()[:2] == b"\x1f\x8b"


def test_save_nifti_gz_is_the_gzip_of_what_nibabel_writes(tmp_path):
    """The .nii.gz save_nifti writes (ISA-L) holds the bytes of nibabel's own .nii of the image, in a gzip stream
    any reader takes, with header mtime 0 (the same image gives the same file) and a real compression."""
    img = nib.Nifti1Image(np.round(random_volume((40, 48, 36)), 1), AFFINE_2MM)
    img.header["descrip"] = "test"
    save_nifti(img, tmp_path / "vol.nii.gz")
    save_nifti(img, tmp_path / "vol.nii")
    packed = (tmp_path / "vol.nii.gz").read_bytes()
    assert packed[:2] == b"\x1f\x8b" and packed[4:8] == b"\0\0\0\0"  # gzip magic; mtime 0
    assert gzip.decompress(packed) == (tmp_path / "vol.nii").read_bytes()
    assert len(packed) < 0.8 * (tmp_path / "vol.nii").stat().st_size
    back = nib.load(tmp_path / "vol.nii.gz")
    np.testing.assert_array_equal(back.get_fdata(dtype=np.float32), img.get_fdata(dtype=np.float32))
    np.testing.assert_array_equal(back.affine, AFFINE_2MM)
    assert back.header["descrip"].tobytes().rstrip(b"\0") == b"test"


def test_atomic_output_leaves_nothing_when_block_raises(tmp_path):
    final = tmp_path / "out.tsv"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(final) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("boom")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_keeps_previous_file_when_block_raises(tmp_path):
    final = tmp_path / "out.tsv"
    final.write_text("old complete content")
    with pytest.raises(InputError):
        with atomic_output(final) as tmp:
            tmp.write_text("new partial")
            raise InputError("bad input")
    assert final.read_text() == "old complete content"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tsv"]
