"""Reading scans with the checks of the input contract, and writing outputs atomically."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from adtransfer.errors import InputError

if TYPE_CHECKING:  # nibabel is imported where a scan is read or written: the workflow's parse reads none
    import nibabel as nib

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def load_volume(path: str | os.PathLike, who: str = "") -> nib.Nifti1Image:
    """Load a 3D NIfTI scan (a 4D file with one volume is squeezed), checking the input contract.

    Returns an image with float32 data (scl_slope/scl_inter honoured) and the file's affine.
    Raises InputError naming the file (and `who`, e.g. "subject sub-01") for every defect.
    """
    import nibabel as nib

    path = Path(path)
    where = f"{path}" + (f" ({who})" if who else "")
    if not path.exists():
        raise InputError(f"{where}: scan file does not exist")
    if not path.is_file():
        raise InputError(f"{where}: scan path is not a file")
    if not is_nifti_path(path):
        raise InputError(f"{where}: not a NIfTI file (expected .nii or .nii.gz)")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for broken files
        raise InputError(f"{where}: cannot read NIfTI header ({type(exc).__name__}: {_one_line(exc)})") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(f"{where}: not a NIfTI-1/2 image ({type(img).__name__})")
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    elif len(shape) == 4:
        raise InputError(f"{where}: 4D image with {shape[3]} volumes; expected one 3D volume")
    if len(shape) != 3:
        raise InputError(f"{where}: {len(img.shape)}D image of shape {img.shape}; expected a 3D volume")
    if min(shape) < 2:
        raise InputError(f"{where}: image of shape {img.shape} is not a 3D volume (a dimension of size 1)")
    try:
        data = np.asarray(data_in_memory(img, path).dataobj, dtype=np.float32).reshape(shape)
    except Exception as exc:  # truncated gzip, short file, ...
        raise InputError(
            f"{where}: cannot read image data, file truncated or corrupt ({type(exc).__name__}: {_one_line(exc)})"
        ) from None
    check_voxels(data, where)
    affine = img.affine
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise InputError(f"{where}: invalid (singular or non-finite) voxel-to-world affine")
    out = nib.Nifti1Image(data, affine)
    out.header.set_xyzt_units("mm")
    return out


def read_nifti(path: str | os.PathLike) -> nib.spatialimages.SpatialImage:
    """`nib.load`, then `data_in_memory`: for files written by this package or already checked by `load_volume`
    (templates, preprocessed volumes); a scan from a user goes through `load_volume`."""
    import nibabel as nib

    return data_in_memory(nib.load(str(path)), path)


def data_in_memory(img: nib.spatialimages.SpatialImage, path: str | os.PathLike) -> nib.spatialimages.SpatialImage:
    """`img` (as `nib.load(path)` returned it: the header read, the data not yet) with a .nii.gz file's data
    decompressed in one call by ISA-L, instead of through GzipFile's 8 KiB reads: a 91x109x91 float32 scan reads in
    ~6.5 CPU ms instead of ~9.6 (`bench/read_nifti.py`). The workflow reads each scan twice (validation, then its
    preprocessing job) and each preprocessed volume once (the cache). The same header and voxels: nibabel parses
    the decompressed bytes as it parses the file (`from_bytes`); other formats are returned as they are.

    The whole gzip stream is read, as `gzip.decompress` reads it: its CRC and length are checked, zero padding and
    further gzip members are taken, anything else after the stream is an error. (nibabel stops once it has the
    voxels, so a changed byte gave wrong voxels, and a damaged end went unnoticed.) The image keeps the decompressed
    file in memory while it lives: about twice the raw data at the peak of a read."""
    import nibabel as nib

    if not (str(path).lower().endswith(".nii.gz") and isinstance(img, nib.Nifti1Image)):  # Nifti2Image included
        return img
    from isal import igzip

    with open(path, "rb") as fh:
        return type(img).from_bytes(igzip.decompress(fh.read()))


def _one_line(exc: Exception) -> str:
    """An exception's text on one line (nibabel's messages may contain newlines)."""
    return " ".join(str(exc).split())


def check_voxels(data: np.ndarray, where: str) -> None:
    n_bad = int(np.count_nonzero(~np.isfinite(data)))
    if n_bad:
        raise InputError(f"{where}: {n_bad} voxels are NaN or Inf")
    if not np.any(data):
        raise InputError(f"{where}: all voxels are zero (empty image)")


def load_scan(path: str | os.PathLike, who: str = "") -> nib.Nifti1Image:
    """A scan as `load_volume` checks it; a folder is taken as one DICOM series and converted first."""
    if Path(path).is_dir():
        from adtransfer.inputs.dicom import load_series

        return load_series(path, who)
    return load_volume(path, who)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The sha256 of a file (of a DICOM folder: of its files' names and contents)."""
    if Path(path).is_dir():
        from adtransfer.inputs.dicom import sha256_folder

        return sha256_folder(path, chunk)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _new_file_beside(path: Path, suffix: str) -> Path:
    """A new empty file `.<name>.<random>.tmp<suffix>` in `path`'s folder, created as open() creates files (mode 0666
    under the umask and the folder's default ACL: a lab group reads a shared results folder), not mkstemp's 0600."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    A crash or an error leaves no half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the full suffix (.nii.gz, .h5) so libraries infer the format from the temporary name
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    tmp_path = _new_file_beside(path, suffix)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def save_nifti(img: nib.Nifti1Image, path: str | os.PathLike) -> None:
    """Write `img` atomically; .nii.gz through ISA-L's gzip (the isal package): ~3 ms instead of zlib's ~28 ms for a
    preprocessed volume (of a ~0.35 CPU s preprocessing job), about the same size. The file decompresses to exactly
    the bytes `nib.save` writes for .nii; the compressed bytes are ISA-L's (gzip mtime 0: the same image gives the
    same file with the same isal build, as zlib's output depended on its build too)."""
    import nibabel as nib

    with atomic_output(path) as tmp:
        if str(path).lower().endswith(".gz"):
            from isal import igzip

            tmp.write_bytes(igzip.compress(img.to_bytes(), compresslevel=1, mtime=0))
        else:
            nib.save(img, str(tmp))


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text)
