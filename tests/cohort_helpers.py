"""Preprocessing a validated cohort table in tests, the way the workflow does subject by subject."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from adtransfer.imaging.preprocess import PreprocParams, preprocess_subject


def preprocess_table(df: pd.DataFrame, params: PreprocParams, out_dir: Path) -> dict[str, np.ndarray]:
    """Preprocess every subject of a validated table into out_dir/{id}.nii.gz + .json; return the volumes."""
    return {
        rec.subject_id: preprocess_subject(
            rec.path,
            out_dir / f"{rec.subject_id}.nii.gz",
            params,
            rec.subject_id,
            sidecar=out_dir / f"{rec.subject_id}.json",
        )
        for rec in df.itertuples()
    }
