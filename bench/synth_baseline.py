"""How hard are the synthetic cohorts? Regional-mean logistic regression, 5-fold CV, AD vs NC. Prints AUCs.

Reads the `roi` features (AAL3 regional means of the preprocessed volumes) from the workflow's caches, so run the
workflow first (`snakemake --cores 2 results/cache/fdg.h5 results/cache/ecd.h5`). The issue's aim for the default
cohorts: 0.85-0.95 (hard enough that a CNN has something to show, not 1.0).

    python bench/synth_baseline.py [results/cache/fdg.h5 results/cache/ecd.h5]
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from adtransfer.cache import read_cache


def main() -> None:
    paths = sys.argv[1:] or ["results/cache/fdg.h5", "results/cache/ecd.h5"]
    warnings.filterwarnings("ignore", category=FutureWarning)
    for path in paths:
        data = read_cache(path, with_mosaics=False)
        keep = data["label"] >= 0
        x, y = data["roi"][keep], data["label"][keep]
        clf = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=10, max_iter=5000, scoring="roc_auc"))
        cv = StratifiedKFold(5, shuffle=True, random_state=0)
        p = cross_val_predict(clf, x, y, cv=cv, method="predict_proba")[:, 1]
        print(
            f"{path}: {data['attrs']['modality']}, {int(y.sum())} AD / {int((1 - y).sum())} NC, "
            f"{x.shape[1]} AAL3 regions: regional-mean logistic regression 5-fold CV AUC {roc_auc_score(y, p):.3f}"
        )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
