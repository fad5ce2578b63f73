"""DICOM series input: a participants row's `path` may be a folder holding one DICOM series.

The folder is converted with dcm2niix (the PyPI wheel's binary, run through nipype's `Dcm2niix` interface) into
a temporary folder; only a complete, single-volume result is moved to its final name. A folder with several
series, no DICOM file, or files that are not DICOM gets one InputError naming the folder.
"""

from __future__ import annotations

import hashlib
import os
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


def convert_series(folder: str | os.PathLike, out_file: str | os.PathLike, who: str = "") -> Path:
    """Convert the one DICOM series in `folder` to the NIfTI `out_file` (.nii or .nii.gz), atomically."""
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
        made = sorted(p for p in Path(tmp).iterdir() if p.name.endswith((".nii", ".nii.gz")))
        if not made:
            raise InputError(f"{where}: no image series found in the DICOM files")
        if len(made) > 1:
            raise InputError(
                f"{where}: {len(made)} image series found ({', '.join(p.name for p in made)}); "
                "the folder must hold exactly one series"
            )
        os.replace(made[0], out_file)  # the scratch folder is beside out_file: same file system, atomic
    return out_file


def load_series(folder: str | os.PathLike, who: str = ""):
    """Convert a DICOM series folder in a scratch folder and load it with the scan checks of `io.load_volume`."""
    from adtransfer.io import load_volume

    with tempfile.TemporaryDirectory(prefix="adtransfer-dicom-") as tmp:
        nii = convert_series(folder, Path(tmp) / "series.nii", who)
        return load_volume(nii, who=f"converted from DICOM folder {folder}" + (f", {who}" if who else ""))
