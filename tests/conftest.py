"""Shared fixtures: small synthetic cohorts written the way a user provides data."""

from __future__ import annotations

from pathlib import Path

import pytest

from adtransfer.grid import Grid
from adtransfer.synth import CohortSpec, generate_cohort

CROP = Grid((95, 95, 48), 2.0, (-94.0, -112.0, -36.0))


@pytest.fixture(scope="session")
def crop_grid() -> Grid:
    return CROP


@pytest.fixture(scope="session")
def fdg_cohort(tmp_path_factory) -> Path:
    """A 3 AD + 3 NC + 1 MCI synthetic FDG cohort; returns the folder holding participants.tsv."""
    out = tmp_path_factory.mktemp("fdg_cohort")
    generate_cohort(CohortSpec(name="fdg", modality="fdg_pet", n_ad=3, n_nc=3, n_mci=1, seed=7), out, progress=False)
    return out


@pytest.fixture(scope="session")
def ecd_cohort(tmp_path_factory) -> Path:
    """A 2 AD + 2 NC synthetic ECD cohort."""
    out = tmp_path_factory.mktemp("ecd_cohort")
    generate_cohort(CohortSpec(name="ecd", modality="ecd_spect", n_ad=2, n_nc=2, seed=7), out, progress=False)
    return out
