"""The HDF5 mosaic cache of a cohort: what training and evaluation read.

Layout of results/cache/{cohort}.h5 (N subjects, mosaics of S x S pixels):
    mosaics     (N, 3, S, S) float16, chunked one subject per chunk (per-batch random reads), lzf-compressed
    subject_id, diagnosis, sex, site, sha256   (N,) strings
    label       (N,) int8: AD 1, NC 0, MCI -1
    mmse, age   (N,) float32, NaN where unknown
    roi         (N, R) float32 regional means (AAL3) of the preprocessed volume, from each subject's sidecar
                (computed by its preprocess job); attrs["regions"] names them
attributes: cohort, modality, mosaic_size, params_hash (preprocessing), crop grid, versions (JSON).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd

from adtransfer import __version__
from adtransfer.errors import InputError
from adtransfer.imaging.grid import Grid
from adtransfer.imaging.mosaic import N_SETS, make_mosaics
from adtransfer.inputs.cohort import read_validated
from adtransfer.io import atomic_output, read_nifti

LABELS = {"AD": 1, "NC": 0, "MCI": -1}
STRING_COLUMNS = ("subject_id", "diagnosis", "sex", "site", "sha256")


def _versions() -> dict[str, str]:
    from importlib.metadata import version  # nipype is not imported for its version (~0.2 s)

    return {
        "adtransfer": __version__,
        "numpy": np.__version__,
        "nibabel": nib.__version__,
        "nipype": version("nipype"),
        "scipy": version("scipy"),
        "h5py": h5py.__version__,
        "python": sys.version.split()[0],
    }


def read_preprocessed(nii: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A preprocessed volume (float32) and its affine; a file that cannot be read is one InputError naming it."""
    try:
        img = read_nifti(nii)
        return np.asarray(img.dataobj, dtype=np.float32), img.affine
    except Exception as exc:  # missing, truncated, corrupt: nibabel and gzip raise many types
        raise InputError(
            f"{nii}: cannot read the preprocessed volume ({type(exc).__name__}: {exc}); delete it and rerun"
        ) from None


def _load_subject(args: tuple[str, str, int]) -> tuple[np.ndarray, dict]:
    nii, sidecar, size = args
    volume, affine = read_preprocessed(nii)
    meta = json.loads(Path(sidecar).read_text())
    return make_mosaics(volume, size), {"affine": affine, **meta}


def build_cache(
    table: str | os.PathLike,
    preproc_dir: str | os.PathLike,
    out: str | os.PathLike,
    size: int,
    modality: str,
    cohort: str,
    workers: int = 1,
) -> None:
    df = read_validated(table)
    df[["sex", "site"]] = df[["sex", "site"]].fillna("")
    preproc_dir = Path(preproc_dir)
    jobs = [(str(preproc_dir / f"{s}.nii.gz"), str(preproc_dir / f"{s}.json"), size) for s in df["subject_id"]]
    for nii, sidecar, _ in jobs:
        for path in (nii, sidecar):
            if not Path(path).exists():
                raise InputError(f"{path}: preprocessed file missing for the cohort table {table}")
    n = len(df)
    with atomic_output(out) as tmp, h5py.File(tmp, "w") as h5:
        mosaics = h5.create_dataset(
            "mosaics",
            (n, N_SETS, size, size),
            dtype="float16",
            chunks=(1, N_SETS, size, size),
            compression="lzf",
            shuffle=True,
        )
        roi, regions, hashes, grid = None, None, set(), None
        pool = ProcessPoolExecutor(workers) if workers > 1 else None
        results = pool.map(_load_subject, jobs, chunksize=8) if pool else map(_load_subject, jobs)
        try:
            for i, (mos, meta) in enumerate(results):
                sid = df["subject_id"].iat[i]
                if meta.get("input_sha256") != df["sha256"].iat[i]:
                    raise InputError(
                        f"{jobs[i][0]}: preprocessed from a different scan than the one the "
                        f"table lists for subject {sid} (sha256 mismatch); rerun preprocessing"
                    )
                hashes.add(meta["params_hash"])
                if grid is None:
                    g = meta["params"]["crop_grid"]
                    grid = Grid(tuple(g["shape"]), g["voxel_mm"], tuple(g["origin_mm"]))
                mosaics[i] = mos.astype(np.float16)
                feats = meta.get("roi_means")
                if not feats:
                    raise InputError(f"{jobs[i][1]}: no regional means in the sidecar; rerun preprocessing")
                if roi is None:
                    regions = list(feats)
                    roi = np.empty((n, len(regions)), np.float32)
                if list(feats) != regions:
                    raise InputError(f"{jobs[i][1]}: regional means of other regions than the cohort's first subject")
                roi[i] = list(feats.values())
                if (i + 1) % 100 == 0 or i + 1 == n:
                    print(f"cache {cohort}: {i + 1}/{n} subjects", file=sys.stderr, flush=True)
        finally:
            if pool:
                pool.shutdown()
        if len(hashes) != 1:
            raise InputError(
                f"{preproc_dir}: subjects were preprocessed with different parameters "
                f"({len(hashes)} parameter hashes); rerun preprocessing"
            )
        for col in STRING_COLUMNS:
            h5.create_dataset(col, data=df[col].astype(str).to_numpy(dtype=object), dtype=h5py.string_dtype())
        h5.create_dataset("label", data=df["diagnosis"].map(LABELS).to_numpy(np.int8))
        for col in ("mmse", "age"):
            h5.create_dataset(col, data=pd.to_numeric(df[col], errors="coerce").to_numpy(np.float32))
        ds = h5.create_dataset("roi", data=roi)
        ds.attrs["regions"] = json.dumps(regions)
        h5.attrs.update(
            {
                "cohort": cohort,
                "modality": modality,
                "mosaic_size": size,
                "params_hash": hashes.pop(),
                "crop_shape": list(grid.shape),
                "crop_origin_mm": list(grid.origin_mm),
                "voxel_mm": grid.voxel_mm,
                "versions": json.dumps(_versions()),
                "layout": "mosaic k tile (r,c) = axial slice 3*(4r+c)+k of the crop, caudal->cranial",
            }
        )


def read_cache(path: str | os.PathLike, with_mosaics: bool = True) -> dict:
    """Everything in a cache as numpy arrays (mosaics as float32 unless with_mosaics is False)."""
    with h5py.File(path, "r") as h5:
        out = {k: h5[k][()] for k in h5 if k != "mosaics" or with_mosaics}
        for col in STRING_COLUMNS:
            out[col] = np.array([v.decode() if isinstance(v, bytes) else v for v in out[col]])
        out["regions"] = json.loads(h5["roi"].attrs["regions"])
        out["attrs"] = dict(h5.attrs)
    if with_mosaics:
        out["mosaics"] = out["mosaics"].astype(np.float32)
    return out


def crop_grid_of(cache_attrs: dict) -> Grid:
    """The crop grid a cache was built on, from the attributes `build_cache` writes (crop_shape, voxel_mm,
    crop_origin_mm)."""
    return Grid(
        tuple(int(v) for v in cache_attrs["crop_shape"]),
        float(cache_attrs["voxel_mm"]),
        tuple(float(v) for v in cache_attrs["crop_origin_mm"]),
    )


def cache_rows(cache_ids: Sequence[str], subject_ids: Iterable[str], cache: str | os.PathLike, what: str) -> np.ndarray:
    """The row of each of `subject_ids` in a cache whose subject_id column is `cache_ids`, in the order given.

    Subjects the cache lacks raise InputError: "{cache}: {what} missing from the cache: ids; rebuild it"."""
    index = {s: i for i, s in enumerate(cache_ids)}
    subject_ids = list(subject_ids)
    missing = [s for s in subject_ids if s not in index]
    if missing:
        raise InputError(f"{cache}: {what} missing from the cache: {', '.join(missing[:5])}; rebuild it")
    return np.array([index[s] for s in subject_ids], dtype=np.int64)


def per_cache_row(values: pd.Series, cache_ids: Sequence[str], cache: str | os.PathLike, what: str) -> np.ndarray:
    """A value per subject (a Series indexed by subject_id, e.g. split membership) as one value per cache row,
    "" for cache subjects it does not list; subjects it lists that the cache lacks raise InputError."""
    out = np.full(len(cache_ids), "", dtype=object)
    out[cache_rows(cache_ids, values.index, cache, what)] = values.to_numpy()
    return out
