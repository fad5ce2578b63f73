"""Bootstrap AUC CIs: the vectorized rank formula (adtransfer.results.evaluate) vs a loop of scikit-learn calls.

The evaluation stage computes 4 CIs (ensemble + 3 mosaics) of 1000 resamples per model; this prints the time
of one CI both ways on a test set of the paper's size (267 subjects) and the demo's (40), and checks that both
give the same interval. Prints figures, asserts nothing about time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.utils import resample

from adtransfer.results.evaluate import bootstrap_auc


def loop_ci(y, s, n_boot, seed):
    rng = np.random.RandomState(seed)
    idx = np.arange(len(y))
    aucs = [roc_auc_score(y[b], s[b]) for b in (resample(idx, stratify=y, random_state=rng) for _ in range(n_boot))]
    return np.quantile(aucs, [0.025, 0.975])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for n_ad, n_nc in ((118, 149), (20, 20)):
        y = np.r_[np.ones(n_ad, int), np.zeros(n_nc, int)]
        s = y + rng.normal(0, 1, len(y))
        t0 = time.perf_counter()
        _, lo, hi = bootstrap_auc(y, s, args.n_boot, seed=0)
        t1 = time.perf_counter()
        lo2, hi2 = loop_ci(y, s, args.n_boot, seed=0)
        t2 = time.perf_counter()
        print(
            f"test set {n_ad} AD + {n_nc} NC, {args.n_boot} resamples: vectorized {t1 - t0:.3f} s "
            f"(CI {lo:.3f}-{hi:.3f}), scikit-learn loop {t2 - t1:.2f} s (CI {lo2:.3f}-{hi2:.3f}); "
            f"speed-up x{(t2 - t1) / (t1 - t0):.0f}"
        )


if __name__ == "__main__":
    main()
