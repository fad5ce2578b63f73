"""How hard are the synthetic cohorts, and for whom? 5-fold CV AUC (AD vs NC) of two linear baselines. Prints AUCs.

- ROI: regional-mean logistic regression on AAL3 regions (the project's ROI baseline; the features the regional
  effect kind is painted in).
- voxels: logistic regression on the normalized, cropped volume averaged over 3x3x3 blocks (6 mm), brain only: a
  baseline that does not know the atlas, standing in for "the signal is there at voxel level".

Two modes:

    python bench/synth_baseline.py [results/cache/fdg.h5 results/cache/ecd.h5]   # the workflow's caches (ROI only)
    python bench/synth_baseline.py --generate 100 [--modality fdg_pet]          # both effect kinds, generated here

`--generate N` writes N AD + N NC subjects of each effect kind (regional, smooth) to a temporary folder with the
library (no workflow), normalizes and crops them as preprocessing does, and prints both baselines for both kinds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings

import nibabel as nib
import numpy as np
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def cv_auc(x: np.ndarray, y: np.ndarray) -> float:
    clf = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=8, max_iter=5000, scoring="roc_auc"))
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    p = cross_val_predict(clf, x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


def from_caches(paths: list[str]) -> None:
    from adtransfer.imaging.cache import read_cache

    for path in paths:
        data = read_cache(path, with_mosaics=False)
        keep = data["label"] >= 0
        x, y = data["roi"][keep], data["label"][keep]
        print(
            f"{path}: {data['attrs']['modality']}, {int(y.sum())} AD / {int((1 - y).sum())} NC, "
            f"{x.shape[1]} AAL3 regions: regional-mean logistic regression 5-fold CV AUC {cv_auc(x, y):.3f}"
        )


def generated(n: int, modality: str, seed: int, kinds: list[str]) -> None:
    from adtransfer.imaging.grid import Grid
    from adtransfer.imaging.preprocess import crop_to_box, normalize_intensity
    from adtransfer.imaging.roi import regional_means
    from adtransfer.imaging.templates import load_templates
    from adtransfer.inputs.synth import EFFECT_PATTERNS, CohortSpec, generate_cohort

    box = Grid((95, 95, 48), 2.0, (-94.0, -112.0, -36.0))
    brain = crop_to_box(load_templates().brain_mask.astype(np.float32), box) > 0.5
    block = 3
    shape = tuple(s // block for s in box.shape)

    def blocks(v: np.ndarray) -> np.ndarray:
        v = v[: shape[0] * block, : shape[1] * block, : shape[2] * block]
        return v.reshape(shape[0], block, shape[1], block, shape[2], block).mean(axis=(1, 3, 5))

    in_brain = blocks(brain.astype(np.float32)) > 0.5
    for kind in kinds or EFFECT_PATTERNS:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
            spec = CohortSpec(name="b", modality=modality, n_ad=n, n_nc=n, seed=seed, effect_pattern=kind)
            people = generate_cohort(spec, tmp, workers=2, progress=False)
            vols = []
            for path in people["path"]:
                raw = np.asarray(nib.load(f"{tmp}/{path}").dataobj, dtype=np.float32)
                vols.append(crop_to_box(normalize_intensity(raw, modality), box))
        vols = np.stack(vols)
        y = (people["diagnosis"] == "AD").to_numpy(int)
        roi, regions = regional_means(vols, box)
        vox = np.stack([blocks(v)[in_brain] for v in vols])
        print(
            f"{modality}, effect {kind:8s}: {n} AD / {n} NC, seed {seed}: 5-fold CV AUC "
            f"ROI ({len(regions)} AAL3 regions) {cv_auc(roi, y):.3f}, "
            f"voxels ({vox.shape[1]} blocks of 6 mm) {cv_auc(vox, y):.3f}   [{time.perf_counter() - start:.0f} s]",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("caches", nargs="*", default=["results/cache/fdg.h5", "results/cache/ecd.h5"])
    ap.add_argument("--generate", type=int, metavar="N", help="N AD + N NC per effect kind, generated here")
    ap.add_argument("--modality", default="fdg_pet", choices=["fdg_pet", "ecd_spect"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--kind", action="append", choices=["regional", "smooth"], help="effect kind(s); default both")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.generate:
        generated(args.generate, args.modality, args.seed, args.kind)
    else:
        from_caches(args.caches)


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
