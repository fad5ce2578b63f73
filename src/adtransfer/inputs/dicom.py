"""DICOM series input: a participants row's `path` may be a folder holding one DICOM series.

The folder is converted with dcm2niix (the PyPI wheel's binary, run through nipype's `Dcm2niix` interface) into
a temporary folder; only a complete, single-volume result is moved to its final name. A folder with several
series, no DICOM file, or files that are not DICOM gets one InputError naming the folder.

For a series with gantry tilt or unequal slice spacing, dcm2niix writes the volume as acquired and beside it a
corrected one, named with `_Tilt_1`, `_Eq_1` or `_Tilt_Eq_1` after the first's name: that is still one series,
and the corrected volume is the one used (`choose_output`); which one, of which files, goes into the sidecar.
(On the pydicom-written tilted series of tests/inputs/test_dicom.py, dcm2niix's `_Tilt_1` volume has the right
shape, no shear and slices along their normal, but lies about 20 mm lower than the scan, for 40 slices at 15 degrees;
the volume as acquired keeps the shear in its affine with slices 3.5 % too close. Registration, space native,
absorbs either.)
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from adtransfer.errors import InputError

DICOM_MAGIC_OFFSET = 128  # "DICM" follows the 128-byte preamble of a DICOM Part 10 file
IGNORED_NAMES = {"DICOMDIR", ".DS_Store", "Thumbs.db"}


def is_dicom_file(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(DICOM_MAGIC_OFFSET)
        return fh.read(4) == b"DICM"


def series_files(folder: str | os.PathLike) -> list[Path]:
    """The DICOM files of a series folder (sorted), checking that every file in it is DICOM."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in IGNORED_NAMES)
    if not files:
        raise InputError(f"{folder}: DICOM folder is empty (no series found)")
    others = [p for p in files if not is_dicom_file(p)]
    if others:
        shown = ", ".join(str(p.relative_to(folder)) for p in others[:3]) + (" ..." if len(others) > 3 else "")
        raise InputError(
            f"{folder}: {len(others)} of {len(files)} files are not DICOM ({shown}); the folder must hold one "
            "DICOM series and nothing else"
        )
    return files


def sha256_folder(folder: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """A digest of a folder's files (relative names and contents, in sorted order), without the files the series
    ignores (an operating system's .DS_Store must not make the scan a new one)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in IGNORED_NAMES):
        h.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


# dcm2niix's corrected copies of a series: the name of the volume as acquired, then what was corrected
CORRECTED = re.compile(r"^(?P<base>.*?)_(?P<kind>Tilt_Eq|Tilt|Eq)_(?P<n>\d+)$")
CORRECTIONS = {
    "Tilt_Eq": "gantry tilt and unequal slice spacing",
    "Tilt": "gantry tilt",
    "Eq": "unequal slice spacing",
}


def _stem(name: str) -> str:
    return name.removesuffix(".gz").removesuffix(".nii")


def choose_output(names: list[str], where: str) -> tuple[str, dict]:
    """Of the NIfTI files dcm2niix wrote for one folder: the one volume to use, and the record of the choice (for
    the sidecar). One volume, or a volume as acquired with dcm2niix's corrected copy of it (`X_Tilt_1`, `X_Eq_1`,
    `X_Tilt_Eq_1` beside `X`): the corrected one is used. Anything else is several series: an InputError."""
    names = sorted(names)
    if not names:
        raise InputError(f"{where}: no image series found in the DICOM files")
    stems = {_stem(n) for n in names}
    # a corrected copy only beside its volume as acquired: a series whose own name ends in _Eq_1 is not one
    corrected = {n: m if (m := CORRECTED.match(_stem(n))) and m["base"] in stems else None for n in names}
    bases = {m["base"] if m else _stem(n) for n, m in corrected.items()}
    fixed = [n for n, m in corrected.items() if m]
    if len(bases) > 1 or len(fixed) > 1 or len(names) - len(fixed) > 1:
        raise InputError(
            f"{where}: {len(bases) if len(bases) > 1 else len(names)} image series found ({', '.join(names)}); "
            "the folder must hold exactly one series"
        )
    used = fixed[0] if fixed else names[0]
    correction = CORRECTIONS[corrected[used]["kind"]] if fixed else None
    return used, {"dcm2niix_outputs": names, "used": used, "corrected_for": correction}


def convert_series(folder: str | os.PathLike, out_file: str | os.PathLike, who: str = "") -> tuple[Path, dict]:
    """Convert the one DICOM series in `folder` to the NIfTI `out_file` (.nii or .nii.gz), atomically. Returns
    the file and the record of the conversion: dcm2niix's outputs and the one used (`choose_output`)."""
    import dcm2niix
    from nipype.interfaces.dcm2nii import Dcm2niix

    folder, out_file = Path(folder), Path(out_file)
    where = f"{folder}" + (f" ({who})" if who else "")
    try:
        series_files(folder)
    except InputError as exc:
        raise InputError(str(exc).replace(str(folder), where, 1)) from None
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".dcm2niix-", dir=out_file.parent) as tmp:
        conv = Dcm2niix(
            command=dcm2niix.bin,
            source_dir=str(folder),
            output_dir=tmp,
            out_filename="%s_%d",
            compress="y" if out_file.name.endswith(".gz") else "n",
            bids_format=False,
            terminal_output="allatonce",
        )
        try:
            conv.run(cwd=tmp)
        except Exception as exc:  # nipype raises RuntimeError/IOError with the tool's output
            text = " ".join(str(exc).split())[-300:]
            raise InputError(f"{where}: dcm2niix could not convert the DICOM folder ({text})") from None
        made = [p.name for p in Path(tmp).iterdir() if p.name.endswith((".nii", ".nii.gz"))]
        used, record = choose_output(made, where)
        os.replace(Path(tmp) / used, out_file)  # the scratch folder is beside out_file: same file system, atomic
    return out_file, record


def load_series(folder: str | os.PathLike, who: str = ""):
    """Convert a DICOM series folder in a scratch folder and load it with the scan checks of `io.load_volume`."""
    from adtransfer.io import load_volume

    with tempfile.TemporaryDirectory(prefix="adtransfer-dicom-") as tmp:
        nii, _ = convert_series(folder, Path(tmp) / "series.nii", who)
        return load_volume(nii, who=f"converted from DICOM folder {folder}" + (f", {who}" if who else ""))
