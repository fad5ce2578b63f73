"""Benchmark: `adtransfer predict` on new scans. Prints figures; asserts nothing.

For each mosaic size (the demo's 96 px and the paper's 380 px) an untrained Inception v3 classifier (random
init; the cost does not depend on the weights) is saved as a bundle with a manifest, then:
  load     seconds to load model.keras (TensorFlow already imported; its import is reported once)
  scan     seconds per scan after the load: preprocessing (the workflow's nipype steps), mosaics, prediction,
           JSON; with Grad-CAM (PNG + 3D NIfTI) and without. The first scan (tracing) is reported apart.
Goal (issue 15): <= 3 s per scan including Grad-CAM at the demo size, on this CPU.

    python bench/predict.py                      # 96 and 380 px, 4 scans each
    python bench/predict.py --sizes 96 --scans 8 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from adtransfer.imaging.grid import Grid
from adtransfer.imaging.preprocess import PreprocParams
from adtransfer.results.bundle import SCHEMA_VERSION, validate_manifest

CROP = Grid((95, 95, 48), 2.0, (-94.0, -112.0, -36.0))


def manifest_for(size: int, model_sha: str, layer: str) -> dict:
    """A valid manifest for an untrained model (the training and test sections are placeholders)."""
    params = PreprocParams("fdg_pet", CROP)
    part = {"n": 0, "by_diagnosis": {}, "by_site": {}, "mmse_range": None}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "model": f"bench/untrained_{size}",
        "task": "classify",
        "modality": "fdg_pet",
        "space": "mni",
        "preprocessing": {"params": {**asdict(params), "crop_grid": asdict(CROP)}, "params_hash": params.digest()},
        "mosaic": {"size": size, "n_sets": 3, "tiles": 4, "dtype": "float16"},
        "intensity": {"range": [0.0, 3.0]},
        "classes": ["NC", "AD"],
        "thresholds": {"default": 0.5, "validation_youden": 0.5},
        "training": {
            "cohort": "none",
            "set": "none",
            "n_train": 0,
            "n_val": 0,
            "counts": {"train": part, "val": part},
            "settings": {"batch_size": 8},
        },
        "test_metrics": {},
        "parent_model": None,
        "gradcam_layer": layer,
        "model_file": {"name": "model.keras", "sha256": model_sha},
        "cache": {"cohort": "none", "sha256": "0" * 64},
        "versions": {},
        "synthetic_data": True,
    }
    manifest = json.loads(json.dumps(manifest))  # tuples -> lists, as read from the file
    validate_manifest(manifest, "bench manifest")
    return manifest


def bench_size(size: int, layer: str, scans: list, work: Path) -> dict:
    from adtransfer.io import sha256_file
    from adtransfer.learning.model import add_head, build_backbone
    from adtransfer.learning.predict_scans import Bundle, predict_scan

    folder = work / f"model_{size}"
    folder.mkdir()
    net = add_head(build_backbone(size, "random"), "classify", 256)
    net.save(folder / "model.keras")
    del net
    manifest = manifest_for(size, sha256_file(folder / "model.keras"), layer)
    (folder / "manifest.json").write_text(json.dumps(manifest))

    bundle = Bundle.open(folder, "classify", "--model")
    start = time.perf_counter()
    bundle.check_model_file()
    bundle.load()
    load_s = time.perf_counter() - start
    out: dict = {"size": size, "layer": layer, "load_s": load_s}
    for gradcam in (True, False):
        times = []
        for scan in scans:
            start = time.perf_counter()
            predict_scan(scan, bundle, None, work / f"out_{size}", gradcam, {})
            times.append(time.perf_counter() - start)
        key = "with_gradcam" if gradcam else "without_gradcam"
        out[key] = {"first_s": times[0], "median_after_first_s": statistics.median(times[1:] or times)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=[96, 380])
    ap.add_argument("--scans", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from adtransfer.inputs.synth import CohortSpec, generate_cohort
    from adtransfer.learning.predict_scans import Scan

    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        work = Path(tmp)
        n_ad = args.scans // 2
        people = generate_cohort(
            CohortSpec(name="b", modality="fdg_pet", n_ad=n_ad, n_nc=args.scans - n_ad, seed=5),
            work / "data",
            progress=False,
        )
        scans = [Scan(r.subject_id, str(work / "data" / r.path), r.path) for r in people.itertuples()]

        start = time.perf_counter()
        from adtransfer.learning.train import configure_tensorflow

        configure_tensorflow(0, args.threads)
        print(f"TensorFlow import and set-up: {time.perf_counter() - start:.1f} s (once per command)")
        for size in args.sizes:
            layer = "mixed7" if size < 128 else "mixed10"  # as config.yaml and paper.yaml choose
            r = bench_size(size, layer, scans, work)
            w, wo = r["with_gradcam"], r["without_gradcam"]
            print(
                f"{size} px ({layer}): model load {r['load_s']:.1f} s; per scan with Grad-CAM "
                f"{w['median_after_first_s']:.2f} s (first {w['first_s']:.2f} s), without "
                f"{wo['median_after_first_s']:.2f} s (first {wo['first_s']:.2f} s); {len(scans)} scans, "
                f"{args.threads} threads"
            )
    print("goal: <= 3 s per scan with Grad-CAM at the demo size")


if __name__ == "__main__":
    main()
