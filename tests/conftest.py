"""Shared fixtures: small synthetic cohorts written the way a user provides data."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from adtransfer.imaging.grid import Grid
from adtransfer.inputs.synth import CohortSpec, generate_cohort

CROP = Grid((95, 95, 48), 2.0, (-94.0, -112.0, -36.0))

# The longest test files, longest first (pytest --durations on 2 cores: each runs Snakemake or training jobs for
# minutes). They run first and the short files fill in around them: the Makefile's `--dist loadfile
# --no-loadscope-reorder` hands files to the pytest-xdist workers in this order, where xdist's own order (most tests
# first) started the SLURM run last and ended the suite on one worker for minutes.
LONGEST_FIRST = (
    "workflow/test_slurm.py",
    "workflow/test_workflow_full.py",
    "learning/test_resume.py",
    "learning/test_train.py",
    "learning/test_predict_scans.py",
    "workflow/test_workflow.py",
)


def in_xdist_worker(config: pytest.Config) -> bool:
    """Whether this session is one of pytest-xdist's workers (each its own session), not a serial run."""
    return hasattr(config, "workerinput")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not in_xdist_worker(config):  # a serial run keeps the quick tests first
        return
    here = Path(__file__).parent
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    assert all((here / name).is_file() for name in rank), "conftest.LONGEST_FIRST names a test file that is gone"

    def order(item: pytest.Item) -> int:
        inside = item.path.is_relative_to(here)
        return rank.get(item.path.relative_to(here).as_posix(), len(rank)) if inside else len(rank)

    items.sort(key=order)  # stable: within a file, and among the other files, the order of collection


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


def built_once(tmp_path_factory, config: pytest.Config, name: str, build: Callable[[Path], object]) -> Path:
    """A folder `name` that `build` fills once per test run. Under pytest-xdist each worker is its own session, so
    the folder lies in the run's temporary root, shared by the workers, and the first worker to need it builds it
    while the others wait on a lock (they would otherwise each build the same tiny cache and train the same tiny
    models)."""
    if not in_xdist_worker(config):  # one session
        out = tmp_path_factory.mktemp(name)
        build(out)
        return out
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent / "built_once"  # the run's root: popen-gw0's parent
    root.mkdir(exist_ok=True)
    out, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)  # left by a worker that failed while building it
            out.mkdir()
            build(out)
            done.touch()
    return out


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory, pytestconfig) -> dict:
    """A preprocessed, cached and split 8 AD + 8 NC + 2 MCI FDG cohort at 76 px (the smallest mosaic)."""
    from cohort_helpers import preprocess_table

    from adtransfer.imaging.cache import build_cache
    from adtransfer.imaging.preprocess import PreprocParams
    from adtransfer.inputs.cohort import validate_cohort
    from adtransfer.learning.splits import make_splits, write_splits

    def build(out: Path) -> None:
        generate_cohort(
            CohortSpec(name="t", modality="fdg_pet", n_ad=8, n_nc=8, n_mci=2, seed=11, effect=0.35),
            out / "data",
            progress=False,
        )
        table = validate_cohort(out / "data" / "participants.tsv", progress=False)
        preprocess_table(table, PreprocParams("fdg_pet", CROP), out / "preproc")
        table.drop(columns="row").to_csv(out / "cohort.tsv", sep="\t", index=False)
        build_cache(out / "cohort.tsv", out / "preproc", out / "cache.h5", size=76, modality="fdg_pet", cohort="t")
        splits = make_splits(table, {"AD": 2, "NC": 2}, [12], 0.25, seed=3, mmse_include_mci=True)
        write_splits(splits, out / "splits.tsv")

    out = built_once(tmp_path_factory, pytestconfig, "tiny_cache", build)
    return {"cache": out / "cache.h5", "splits": out / "splits.tsv", "dir": out}


@pytest.fixture(scope="session")
def tiny_classifier(tiny_cache, tmp_path_factory, pytestconfig) -> Path:
    """An AD/NC classifier trained on tiny_cache's n12 split with train_helpers.SETTINGS (2 epochs), once per
    test run (built_once): its folder (model.keras, history.tsv, metrics.json), its log beside it (fdg_n12.log), the
    cohort's predictions and features the training job wrote (train_helpers.predictions_of) and the training
    command's console output (console.txt). Tests must not write into it (copy it first)."""
    from train_helpers import train

    def build(root: Path) -> None:
        proc = train(tiny_cache, root / "fdg_n12", predictions=True)
        (root / "console.txt").write_text(proc.stdout + proc.stderr)

    return built_once(tmp_path_factory, pytestconfig, "tiny_classifier", build) / "fdg_n12"


@pytest.fixture(scope="session")
def tiny_mmse(tiny_cache, tiny_classifier, tmp_path_factory, pytestconfig) -> Path:
    """An MMSE regressor fine-tuned for one epoch from tiny_classifier on the mmse_set split, once per test run
    (built_once), with the cohort's predictions and features its training job wrote (train_helpers.predictions_of)."""
    from train_helpers import train

    def build(root: Path) -> None:
        parent = tiny_classifier / "model.keras"
        train(tiny_cache, root / "mmse", column="mmse_set", task="mmse", epochs=1, pretrained=parent, predictions=True)

    return built_once(tmp_path_factory, pytestconfig, "tiny_mmse", build) / "mmse"
