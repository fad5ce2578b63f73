"""Subject-level splits: a held-out test set, nested pre-training subsets, train/validation within each.

The split table of a cohort (results/splits/{cohort}.tsv) has one row per subject:
    subject_id, diagnosis, mmse
    test        True for the held-out test subjects (the same for every model of the cohort)
    n{size}     "train" | "val" | "" for each classification training set (sizes nest: n100 c n200 c ...)
    mmse_set    "train" | "val" | "test" | "" for MMSE regression: the only source of the regression test set
MCI subjects never enter classification; they enter MMSE regression when `mmse_include_mci` is set.
`mmse_min` is per cohort role (the paper applies MMSE >= 15 to the FDG pre-training only).
Everything is drawn from one seeded generator, so the same config gives the same table.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from adtransfer.catalog import MMSE_SET, POOL_SET, is_classification_set, size_set
from adtransfer.errors import InputError
from adtransfer.io import atomic_output

CLASSES = ("AD", "NC")


def _take_stratified(
    ids_by_class: dict[str, list[str]], counts: dict[str, int], rng: np.random.Generator, what: str
) -> set[str]:
    chosen: set[str] = set()
    for cls, n in counts.items():
        pool = ids_by_class.get(cls, [])
        if n > len(pool):
            raise InputError(f"{what}: needs {n} {cls} subjects, the cohort has {len(pool)}")
        chosen.update(rng.choice(pool, size=n, replace=False).tolist())
    return chosen


def make_splits(
    df: pd.DataFrame,
    test_counts: dict[str, int] | None,
    sizes: list[int] | None,
    val_fraction: float,
    seed: int,
    mmse_include_mci: bool = False,
    mmse_min: float = 0.0,
    fixed_test: set[str] | None = None,
) -> pd.DataFrame:
    """Split one cohort. `sizes` None means one training set: the whole pool (column n{pool size}).

    `fixed_test`: a user-given test set (subject ids), used instead of drawing one.
    """
    # here, not at the top: a step that only reads split tables (the bundle job) need not import sklearn (~0.7 s)
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(seed)
    out = df[["subject_id", "diagnosis", "mmse"]].copy().reset_index(drop=True)
    labelled = out[out["diagnosis"].isin(CLASSES)]
    by_class = {c: sorted(labelled.loc[labelled["diagnosis"] == c, "subject_id"]) for c in CLASSES}
    if fixed_test is not None:
        unknown = fixed_test - set(out["subject_id"])
        if unknown:
            raise InputError(f"test set lists subjects not in the cohort: {', '.join(sorted(unknown)[:10])}")
        test = set(fixed_test)
    else:
        test = _take_stratified(by_class, test_counts or {}, rng, "test set")
    out["test"] = out["subject_id"].isin(test)
    pool = {c: [s for s in ids if s not in test] for c, ids in by_class.items()}
    pool_size = sum(len(v) for v in pool.values())
    size_study = bool(sizes)
    sizes = sorted(sizes) if sizes else [pool_size]
    if sizes[-1] > pool_size:
        raise InputError(f"pre-training size {sizes[-1]} exceeds the {pool_size} AD/NC subjects outside the test set")
    # nested subsets keeping the pool's class balance: a random order per class, each size takes a prefix
    order = {c: rng.permutation(ids).tolist() for c, ids in pool.items()}
    fraction_ad = len(pool["AD"]) / pool_size
    for size in sizes:
        n_ad = int(round(size * fraction_ad))
        members = order["AD"][:n_ad] + order["NC"][: size - n_ad]
        labels = ["AD"] * n_ad + ["NC"] * (size - n_ad)
        try:
            train, val = train_test_split(
                members, test_size=val_fraction, stratify=labels, random_state=int(rng.integers(2**31))
            )
        except ValueError as exc:  # too few subjects per class to stratify
            raise InputError(
                f"training-set size {size}: cannot split {n_ad} AD / {size - n_ad} NC subjects "
                f"into train and validation (val_fraction {val_fraction}): {exc}"
            ) from None
        col = pd.Series("", index=out.index)
        col[out["subject_id"].isin(train)] = "train"
        col[out["subject_id"].isin(val)] = "val"
        out[size_set(size) if size_study else POOL_SET] = col
    # MMSE regression: subjects with a score (>= mmse_min), MCI optional; test subjects stay test
    eligible = out["mmse"].notna() & (out["mmse"] >= mmse_min)
    eligible &= out["diagnosis"].isin(CLASSES + (("MCI",) if mmse_include_mci else ()))
    mci = out["diagnosis"] == "MCI"
    n_labelled = max(len(labelled), 1)
    mci_ids = out.loc[eligible & mci, "subject_id"].tolist()
    mci_test = (
        set(rng.choice(mci_ids, size=int(round(len(mci_ids) * len(test) / n_labelled)), replace=False).tolist())
        if mci_ids
        else set()
    )
    is_test = out["test"] | out["subject_id"].isin(mci_test)
    mmse_set = pd.Series("", index=out.index)
    mmse_set[eligible & is_test] = "test"
    fit = out.loc[eligible & ~is_test, "subject_id"].tolist()
    if len(fit) >= 5:
        train, val = train_test_split(fit, test_size=val_fraction, random_state=int(rng.integers(2**31)))
        mmse_set[out["subject_id"].isin(train)] = "train"
        mmse_set[out["subject_id"].isin(val)] = "val"
    out[MMSE_SET] = mmse_set
    check_splits(out)
    return out


def split_membership(splits: pd.DataFrame, set_column: str) -> pd.Series:
    """Per subject: "test", "train", "val" or "" (not used by a model trained on `set_column`).

    Classification sets (n{size}, nall) take their test subjects from the cohort's `test` column; the MMSE set
    holds its own test subjects (those with a score >= the cohort's mmse_min), which is the only source of the
    regression test set: a classification test subject below the MMSE floor is not scored.
    """
    if set_column not in splits.columns:
        raise InputError(f"split table has no column {set_column!r}")
    member = splits[set_column].fillna("").astype(str)
    member = member.where(member.isin(["train", "val", "test"]), "")
    if set_column != MMSE_SET:
        member[splits["test"].astype(bool)] = "test"
    return pd.Series(member.to_numpy(), index=splits["subject_id"].to_numpy())


def check_splits(splits: pd.DataFrame) -> None:
    """The invariants every consumer relies on; raised at run time, not only in tests."""
    cols = [c for c in splits.columns if is_classification_set(c)]
    test = splits["test"].astype(bool)
    for col in cols:
        if (splits.loc[test, col] != "").any():
            raise AssertionError(f"split {col}: a test subject is in training or validation")
        if (splits.loc[splits["diagnosis"] == "MCI", col] != "").any():
            raise AssertionError(f"split {col}: an MCI subject is in AD/NC classification")
    sized = sorted((c for c in cols if c[1:].isdigit()), key=lambda c: int(c[1:]))
    used = [set(splits.index[splits[c] != ""]) for c in sized]
    for small, large in zip(used, used[1:], strict=False):
        if not small <= large:
            raise AssertionError("pre-training subsets do not nest")
    if (splits.loc[test, MMSE_SET].isin(["train", "val"])).any():
        raise AssertionError("an MMSE training subject is in the classification test set")


def read_fixed_test(path: str | os.PathLike) -> set[str]:
    """A user-given test set: a TSV/CSV with a `subject_id` column, or a text file with one id per line."""
    lines = [ln.strip() for ln in open(path).read().splitlines() if ln.strip()]
    if lines and ("\t" in lines[0] or "," in lines[0]):
        # ids such as "NA" stay ids (as in the validated table), never missing values
        df = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False, na_values=[""])
        if "subject_id" not in df.columns:
            raise InputError(f"{path}: a test-set table needs a subject_id column")
        return set(df["subject_id"].dropna().str.strip()) - {""}
    return {ln for ln in lines if ln != "subject_id"}


def write_splits(splits: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_output(path) as tmp:
        splits.to_csv(tmp, sep="\t", index=False)


def read_splits(path: str | os.PathLike) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", dtype={"subject_id": str}, keep_default_na=False, na_values={"mmse": [""]})
    df["test"] = df["test"].astype(str).str.lower() == "true"
    return df
