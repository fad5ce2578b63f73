"""Benchmark: reading a .nii.gz scan, nibabel's own route against adtransfer.io.read_nifti. Prints figures; checks
only that both routes read the same voxels.

nibabel reads a .nii.gz through GzipFile, in 8 KiB pieces; read_nifti decompresses the whole file in one call with
ISA-L and lets nibabel parse the bytes. The workflow reads each scan twice (validation, its preprocessing job) and
each preprocessed volume once (the cache), one process per subject: what a read costs is paid per scan.
CPU milliseconds per read (header, voxels as float32), median of --repeats, the two routes interleaved.

    python bench/read_nifti.py                    # a 91x109x91 float32 scan (the SPM 2 mm grid)
    python bench/read_nifti.py --shape 128x128x90 --dtype int16
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from adtransfer.io import read_nifti


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="91x109x91")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeats", type=int, default=40)
    args = ap.parse_args()
    shape = tuple(int(s) for s in args.shape.split("x"))
    # a smooth synthetic volume: real scans compress like this (a random one would not compress at all)
    grid = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    data = (1000 * np.exp(-sum(g**2 for g in grid) * 3)).astype(args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scan.nii.gz"
        nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
        routes = {
            "nibabel (nib.load)": lambda: np.asarray(nib.load(str(path)).dataobj, dtype=np.float32),
            "read_nifti (ISA-L)": lambda: np.asarray(read_nifti(path).dataobj, dtype=np.float32),
        }
        assert np.array_equal(*(f() for f in routes.values()))
        times: dict[str, list[float]] = {name: [] for name in routes}
        for i in range(args.repeats):
            for name in list(routes) if i % 2 == 0 else list(routes)[::-1]:
                t0 = time.process_time()
                routes[name]()
                times[name].append(1000 * (time.process_time() - t0))
        size_mb = path.stat().st_size / 1e6
    print(f"{args.shape} {args.dtype}, {size_mb:.2f} MB compressed; CPU ms per read, median of {args.repeats}:")
    medians = {name: statistics.median(v) for name, v in times.items()}
    for name, ms in medians.items():
        print(f"  {name:20s} {ms:6.2f}")
    base, ours = medians.values()
    print(f"read_nifti / nib.load: {ours / base:.2f}")


if __name__ == "__main__":
    main()
