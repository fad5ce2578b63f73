"""Subject-level splits (adtransfer.learning.splits, `adtransfer split`): test set, nested subsets, train/val, MMSE."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adtransfer.catalog import POOL_SET, size_set
from adtransfer.cli import main
from adtransfer.configuration import mmse_min_for
from adtransfer.errors import InputError
from adtransfer.learning import splits as sp

N_AD, N_NC, N_MCI = 300, 320, 80
TEST_COUNTS = {"AD": 118, "NC": 149}
SIZES = [100, 200, 300]
MMSE_MIN = 18.0


def make_cohort(n_ad: int = N_AD, n_nc: int = N_NC, n_mci: int = N_MCI, seed: int = 0) -> pd.DataFrame:
    """AD/NC/MCI subjects in a shuffled order, with every 7th MMSE missing and some MMSE below MMSE_MIN."""
    rng = np.random.default_rng(seed)
    rows = []
    for prefix, diag, n, (lo, hi) in (
        ("A", "AD", n_ad, (8, 26)),
        ("C", "NC", n_nc, (26, 30)),
        ("M", "MCI", n_mci, (12, 29)),
    ):
        for i in range(n):
            rows.append((f"{prefix}{i:04d}", diag, float(rng.integers(lo, hi + 1))))
    df = pd.DataFrame(rows, columns=["subject_id", "diagnosis", "mmse"])
    df = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    df.loc[df.index % 7 == 3, "mmse"] = np.nan
    return df


def split_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if re.fullmatch(r"n(\d+|all)", c)]


def members(df: pd.DataFrame, col: str, value: str | None = None) -> set[str]:
    mask = df[col] != "" if value is None else df[col] == value
    return set(df.loc[mask, "subject_id"])


def diag_of(df: pd.DataFrame) -> dict[str, str]:
    return dict(zip(df["subject_id"], df["diagnosis"], strict=True))


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return make_cohort()


@pytest.fixture(scope="module")
def fdg(cohort) -> pd.DataFrame:
    """FDG-like: test counts, nested sizes, MCI in MMSE regression."""
    return sp.make_splits(cohort, TEST_COUNTS, SIZES, 0.2, seed=3, mmse_include_mci=True, mmse_min=MMSE_MIN)


@pytest.fixture(scope="module")
def ecd(cohort) -> pd.DataFrame:
    """ECD-like: a held-out test set, the rest one training set."""
    return sp.make_splits(cohort, {"AD": 20, "NC": 20}, None, 0.2, seed=5)


# --- the held-out test set ----------------------------------------------------------------------------


def test_one_row_per_input_subject_in_input_order(cohort, fdg):
    assert list(fdg["subject_id"]) == list(cohort["subject_id"])
    assert list(fdg["diagnosis"]) == list(cohort["diagnosis"])
    pd.testing.assert_series_equal(fdg["mmse"], cohort["mmse"])
    assert set(split_columns(fdg)) == {"n100", "n200", "n300"}


def test_exact_test_counts_per_class(fdg, ecd):
    for frame, counts in ((fdg, TEST_COUNTS), (ecd, {"AD": 20, "NC": 20})):
        got = frame.loc[frame["test"], "diagnosis"].value_counts().to_dict()
        assert got == counts


def test_no_subject_in_two_of_train_val_test(fdg, ecd):
    for frame in (fdg, ecd):
        test = set(frame.loc[frame["test"], "subject_id"])
        for col in split_columns(frame):
            train, val = members(frame, col, "train"), members(frame, col, "val")
            assert set(frame[col]) <= {"", "train", "val"}
            assert train and val
            assert not train & val, col
            assert not train & test, col
            assert not val & test, col
        assert not members(frame, "mmse_set", "train") & test
        assert not members(frame, "mmse_set", "val") & test


def test_mci_never_in_classification(fdg, ecd):
    for frame in (fdg, ecd):
        mci = frame["diagnosis"] == "MCI"
        assert not frame.loc[mci, "test"].any()
        for col in split_columns(frame):
            assert (frame.loc[mci, col] == "").all(), col


# --- nested pre-training subsets --------------------------------------------------------------------------


def test_subset_sizes_and_nesting(fdg):
    used = {size: members(fdg, size_set(size)) for size in SIZES}
    for size in SIZES:
        assert len(used[size]) == size
    assert used[100] < used[200] < used[300]


def test_subsets_keep_the_pool_class_balance(fdg):
    pool = fdg[~fdg["test"] & fdg["diagnosis"].isin(sp.CLASSES)]
    fraction_ad = (pool["diagnosis"] == "AD").mean()
    assert fraction_ad == pytest.approx((N_AD - 118) / (N_AD + N_NC - 118 - 149))
    for size in SIZES:
        chosen = fdg[fdg[size_set(size)] != ""]
        n_ad = int((chosen["diagnosis"] == "AD").sum())
        assert abs(n_ad - size * fraction_ad) <= 1, (size, n_ad, size * fraction_ad)


@pytest.mark.parametrize("val_fraction", [0.2, 0.3])
def test_validation_fraction_and_stratification(cohort, val_fraction):
    df = sp.make_splits(cohort, TEST_COUNTS, SIZES, val_fraction, seed=11)
    for size in SIZES:
        col = df[size_set(size)]
        val = df[col == "val"]
        assert math.floor(size * val_fraction) <= len(val) <= math.ceil(size * val_fraction), (size, len(val))
        assert (col == "train").sum() == size - len(val)
        subset_ad = (df.loc[col != "", "diagnosis"] == "AD").mean()
        val_ad = int((val["diagnosis"] == "AD").sum())
        assert abs(val_ad - len(val) * subset_ad) <= 1, (size, val_ad, len(val) * subset_ad)


def test_default_val_fraction_is_one_fifth(cohort):
    df = sp.make_splits(cohort, TEST_COUNTS, [100], 0.2, seed=0)
    assert (df["n100"] == "val").sum() == 20
    assert (df["n100"] == "train").sum() == 80


def test_ecd_one_training_set_is_the_whole_pool(ecd):
    cols = split_columns(ecd)
    pool = set(ecd.loc[~ecd["test"] & ecd["diagnosis"].isin(sp.CLASSES), "subject_id"])
    assert cols == [POOL_SET]
    assert members(ecd, cols[0]) == pool
    # subjects without an MMSE still enter classification
    assert ecd.loc[ecd["subject_id"].isin(pool), "mmse"].isna().any()


def test_sizes_given_unsorted_are_sorted(cohort):
    df = sp.make_splits(cohort, TEST_COUNTS, [300, 100], 0.2, seed=3)
    assert members(df, "n100") < members(df, "n300")


# --- determinism -----------------------------------------------------------------------------------------


def test_same_seed_gives_identical_frame(cohort, fdg):
    again = sp.make_splits(cohort.copy(), TEST_COUNTS, SIZES, 0.2, seed=3, mmse_include_mci=True, mmse_min=MMSE_MIN)
    pd.testing.assert_frame_equal(fdg, again)


def test_different_seed_gives_different_test_set(cohort, fdg):
    other = sp.make_splits(cohort, TEST_COUNTS, SIZES, 0.2, seed=4, mmse_include_mci=True, mmse_min=MMSE_MIN)
    assert set(other.loc[other["test"], "subject_id"]) != set(fdg.loc[fdg["test"], "subject_id"])
    assert other.loc[other["test"], "diagnosis"].value_counts().to_dict() == TEST_COUNTS


def test_test_set_is_the_same_for_every_size(cohort, fdg):
    """One config with different size lists keeps the same test subjects (the test set is drawn first)."""
    small = sp.make_splits(cohort, TEST_COUNTS, [100], 0.2, seed=3)
    whole = sp.make_splits(cohort, TEST_COUNTS, None, 0.2, seed=3)
    expected = list(fdg["test"])
    assert list(small["test"]) == expected
    assert list(whole["test"]) == expected


# --- a fixed test set ----------------------------------------------------------------------------------


def fixed_ids(cohort: pd.DataFrame) -> set[str]:
    ad = cohort.loc[cohort["diagnosis"] == "AD", "subject_id"].iloc[:7]
    nc = cohort.loc[cohort["diagnosis"] == "NC", "subject_id"].iloc[:11]
    return set(ad) | set(nc)


def test_read_fixed_test_text_file(tmp_path):
    path = tmp_path / "test_ids.txt"
    path.write_text("A0001\n  C0002  \n\nM0003\n")
    assert sp.read_fixed_test(path) == {"A0001", "C0002", "M0003"}
    headed = tmp_path / "headed.txt"
    headed.write_text("subject_id\nA0001\nC0002\n")
    assert sp.read_fixed_test(headed) == {"A0001", "C0002"}


@pytest.mark.parametrize("sep, name", [("\t", "test.tsv"), (",", "test.csv")])
def test_read_fixed_test_table(tmp_path, sep, name):
    path = tmp_path / name
    path.write_text(
        sep.join(["diagnosis", "subject_id"])
        + "\n"
        + "\n".join(sep.join(r) for r in [("AD", "A0001"), ("NC", "C0002"), ("NC", "00042")])
        + "\n"
    )
    assert sp.read_fixed_test(path) == {"A0001", "C0002", "00042"}  # ids stay strings, leading zeros kept


def test_read_fixed_test_table_without_subject_id(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("id\tdiagnosis\nA0001\tAD\n")
    with pytest.raises(InputError, match="subject_id"):
        sp.read_fixed_test(path)


@pytest.mark.parametrize("fmt", ["txt", "tsv"])
def test_fixed_test_file_used_verbatim(tmp_path, cohort, fmt):
    ids = fixed_ids(cohort)
    path = tmp_path / f"fixed.{fmt}"
    if fmt == "txt":
        path.write_text("\n".join(sorted(ids)) + "\n")
    else:
        path.write_text("subject_id\tsite\n" + "".join(f"{s}\tX\n" for s in sorted(ids)))
    fixed = sp.read_fixed_test(path)
    assert fixed == ids
    # test_counts are ignored when a fixed test set is given
    df = sp.make_splits(cohort, TEST_COUNTS, [100, 200], 0.2, seed=2, fixed_test=fixed)
    assert set(df.loc[df["test"], "subject_id"]) == ids
    for col in ("n100", "n200"):
        assert not members(df, col) & ids
    pool = cohort[~cohort["subject_id"].isin(ids) & cohort["diagnosis"].isin(sp.CLASSES)]
    whole = sp.make_splits(cohort, None, None, 0.2, seed=2, fixed_test=fixed)
    assert set(whole.loc[whole["test"], "subject_id"]) == ids
    assert members(whole, POOL_SET) == set(pool["subject_id"])


def test_fixed_test_with_unknown_ids_names_them(cohort):
    fixed = {"A0001", "C0002", "ZZ999", "NOPE1"}
    with pytest.raises(InputError) as excinfo:
        sp.make_splits(cohort, None, None, 0.2, seed=0, fixed_test=fixed)
    msg = str(excinfo.value)
    assert "ZZ999" in msg and "NOPE1" in msg
    assert "A0001" not in msg and "C0002" not in msg


# --- bad configurations -----------------------------------------------------------------------------------


def test_size_larger_than_pool(cohort):
    pool = N_AD + N_NC - 118 - 149
    with pytest.raises(InputError) as excinfo:
        sp.make_splits(cohort, TEST_COUNTS, [100, pool + 1], 0.2, seed=0)
    msg = str(excinfo.value)
    assert str(pool + 1) in msg and str(pool) in msg and "test" in msg
    # the whole pool is allowed
    df = sp.make_splits(cohort, TEST_COUNTS, [pool], 0.2, seed=0)
    assert len(members(df, size_set(pool))) == pool


@pytest.mark.parametrize(
    "counts, cls, have", [({"AD": N_AD + 1, "NC": 10}, "AD", N_AD), ({"AD": 10, "NC": N_NC + 5}, "NC", N_NC)]
)
def test_test_counts_larger_than_available(cohort, counts, cls, have):
    with pytest.raises(InputError) as excinfo:
        sp.make_splits(cohort, counts, None, 0.2, seed=0)
    msg = str(excinfo.value)
    assert "test set" in msg and cls in msg and str(counts[cls]) in msg and str(have) in msg


def test_mci_are_not_available_for_the_classification_test_set(cohort):
    with pytest.raises(InputError, match="MCI"):
        sp.make_splits(cohort, {"AD": 5, "NC": 5, "MCI": 5}, None, 0.2, seed=0)


# --- MMSE regression -------------------------------------------------------------------------------------


def test_mmse_set_with_mci_and_minimum(fdg):
    mmse_set = fdg["mmse_set"]
    assert set(mmse_set) == {"", "train", "val", "test"}
    missing = fdg["mmse"].isna()
    low = fdg["mmse"] < MMSE_MIN
    assert missing.any() and low.any()
    assert (mmse_set[missing | low] == "").all()
    eligible = ~missing & ~low
    assert (mmse_set[eligible] != "").all()  # every eligible subject (AD, NC and MCI) is used
    mci = fdg["diagnosis"] == "MCI"
    assert set(mmse_set[mci & eligible]) == {"train", "val", "test"}
    # the classification test set is the MMSE test set (for subjects with a usable score)
    assert (mmse_set[fdg["test"] & eligible] == "test").all()
    assert not (mmse_set[~fdg["test"] & ~mci] == "test").any()
    # MCI test subjects in about the proportion of the AD/NC test set
    n_mci = int((mci & eligible).sum())
    expected = round(n_mci * (118 + 149) / (N_AD + N_NC))
    assert int((mmse_set[mci] == "test").sum()) == expected
    fit = mmse_set.isin(["train", "val"])
    assert abs((mmse_set == "val").sum() - fit.sum() * 0.2) <= 1


def test_mmse_set_without_mci(cohort, ecd):
    mci = ecd["diagnosis"] == "MCI"
    assert (ecd.loc[mci, "mmse_set"] == "").all()
    scored = ecd["mmse"].notna() & ~mci
    assert (ecd.loc[scored, "mmse_set"] != "").all()  # mmse_min defaults to 0: every score counts
    assert (ecd.loc[ecd["mmse"].isna(), "mmse_set"] == "").all()
    assert (ecd.loc[ecd["test"] & scored, "mmse_set"] == "test").all()


def test_mmse_min_boundary_is_inclusive(cohort):
    df = sp.make_splits(cohort, {"AD": 10, "NC": 10}, None, 0.2, seed=1, mmse_min=20.0)
    labelled = df[df["diagnosis"].isin(sp.CLASSES)]
    at, below = labelled[labelled["mmse"] == 20.0], labelled[labelled["mmse"] == 19.0]
    assert len(at) > 0 and len(below) > 0
    assert (at["mmse_set"] != "").all()
    assert (below["mmse_set"] == "").all()
    assert (df.loc[df["diagnosis"] == "MCI", "mmse_set"] == "").all()  # mmse_include_mci defaults to False


def test_mmse_set_is_the_only_source_of_the_regression_test_set(fdg):
    """A classification test subject below the MMSE floor is not scored by the MMSE models (today's defect: the
    classification test column overrode mmse_set, scoring subjects the MMSE set had dropped)."""
    below = fdg["test"] & (fdg["mmse"] < MMSE_MIN)
    assert below.any()
    member = sp.split_membership(fdg, "mmse_set")
    scored = set(member.index[member == "test"])
    assert scored == set(fdg.loc[fdg["mmse_set"] == "test", "subject_id"])
    assert not scored & set(fdg.loc[below, "subject_id"])
    # classification sets still take the cohort's test column
    member = sp.split_membership(fdg, "n100")
    assert set(member.index[member == "test"]) == set(fdg.loc[fdg["test"], "subject_id"])


def test_paper_config_scores_every_ecd_test_subject_in_mmse():
    """Paper-like config: MMSE >= 15 for the FDG pre-training only, so the ECD MMSE test set is every ECD test
    subject with a score, and the scored subjects are exactly mmse_set's test subjects."""
    import yaml

    cfg = yaml.safe_load((Path(__file__).parents[2] / "config" / "paper.yaml").read_text())["splits"]
    assert mmse_min_for(cfg, "fdg") == 15 and mmse_min_for(cfg, "ecd") == 0
    assert mmse_min_for({"mmse_min": 12}, "ecd") == 12  # a number still applies to every cohort
    cohort = make_cohort(113, 134, 0, seed=4)
    cohort.loc[cohort.index[:30], "mmse"] = 10.0  # some ECD subjects below 15
    ecd = sp.make_splits(cohort, cfg["ecd_test"], None, 0.2, seed=1, mmse_min=mmse_min_for(cfg, "ecd"))
    member = sp.split_membership(ecd, "mmse_set")
    scored = set(member.index[member == "test"])
    assert scored == set(ecd.loc[ecd["mmse_set"] == "test", "subject_id"])
    assert scored == set(ecd.loc[ecd["test"] & ecd["mmse"].notna(), "subject_id"])
    assert (ecd.loc[ecd["test"], "mmse"] < 15).any()


# --- check_splits ----------------------------------------------------------------------------------------


def test_check_splits_accepts_good_tables(fdg, ecd):
    sp.check_splits(fdg)
    sp.check_splits(ecd.rename(columns={split_columns(ecd)[0]: "nall"}))


def test_check_splits_catches_a_leak(fdg):
    bad = fdg.copy()
    bad.loc[bad.index[bad["test"]][0], "n200"] = "train"
    with pytest.raises(AssertionError, match="test subject"):
        sp.check_splits(bad)


def test_check_splits_catches_a_leak_in_nall(ecd):
    bad = ecd.rename(columns={split_columns(ecd)[0]: "nall"})
    bad.loc[bad.index[bad["test"]][0], "nall"] = "val"
    with pytest.raises(AssertionError, match="test subject"):
        sp.check_splits(bad)


def test_check_splits_catches_non_nested_subsets(fdg):
    bad = fdg.copy()
    in_small = bad.index[bad["n100"] != ""][0]
    bad.loc[in_small, "n200"] = ""
    with pytest.raises(AssertionError, match="nest"):
        sp.check_splits(bad)


def test_check_splits_catches_mci_in_classification(fdg):
    bad = fdg.copy()
    mci = bad.index[(bad["diagnosis"] == "MCI") & ~bad["test"]][0]
    bad.loc[mci, "n300"] = "train"
    with pytest.raises(AssertionError, match="MCI"):
        sp.check_splits(bad)


def test_check_splits_catches_mmse_training_on_test_subjects(fdg):
    bad = fdg.copy()
    bad.loc[bad.index[bad["test"]][0], "mmse_set"] = "train"
    with pytest.raises(AssertionError, match="MMSE"):
        sp.check_splits(bad)


# --- command line ----------------------------------------------------------------------------------------


@pytest.fixture()
def table(tmp_path) -> Path:
    df = make_cohort(n_ad=30, n_nc=30, n_mci=6, seed=9)
    df.loc[0, "subject_id"] = "007"  # ids are strings: leading zeros survive the round trip
    path = tmp_path / "cohort.tsv"
    df.to_csv(path, sep="\t", index=False)
    return path


def run_split(table: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "split",
            "--table",
            str(table),
            "--out",
            str(out),
            "--test-counts",
            json.dumps({"AD": 5, "NC": 5}),
            "--seed",
            "1",
            *extra,
        ]
    )


def test_cli_round_trip_one_training_set(tmp_path, table):
    out = tmp_path / "splits" / "cohort.tsv"
    assert run_split(table, out) == 0
    df = sp.read_splits(out)
    assert split_columns(df) == ["nall"]
    assert df["test"].dtype == bool
    assert "007" in set(df["subject_id"])
    assert df.loc[df["test"], "diagnosis"].value_counts().to_dict() == {"AD": 5, "NC": 5}
    pool = set(df.loc[~df["test"] & df["diagnosis"].isin(sp.CLASSES), "subject_id"])
    assert members(df, "nall") == pool and len(pool) == 50
    assert df["mmse"].isna().any() and df["mmse"].dtype == float
    assert set(df["mmse_set"]) <= {"", "train", "val", "test"}
    assert (df.loc[df["mmse"].isna(), "mmse_set"] == "").all()
    sp.check_splits(df)
    # the file matches what make_splits returns for the same arguments
    source = pd.read_csv(table, sep="\t", dtype={"subject_id": str})
    direct = sp.make_splits(source, {"AD": 5, "NC": 5}, None, 0.2, 1).rename(columns={"n50": "nall"})
    pd.testing.assert_frame_equal(df, direct)


def test_cli_round_trip_sizes(tmp_path, table):
    out = tmp_path / "sized.tsv"
    assert run_split(table, out, "--sizes", "10,20") == 0
    df = sp.read_splits(out)
    assert split_columns(df) == ["n10", "n20"]
    assert len(members(df, "n10")) == 10 and len(members(df, "n20")) == 20
    assert members(df, "n10") < members(df, "n20")
    sp.check_splits(df)


def test_cli_test_file_and_mmse_options(tmp_path, table):
    source = pd.read_csv(table, sep="\t", dtype={"subject_id": str})
    ids = sorted(source.loc[source["diagnosis"].isin(sp.CLASSES), "subject_id"])[:6]
    test_file = tmp_path / "test_ids.txt"
    test_file.write_text("\n".join(ids) + "\n")
    out = tmp_path / "fixed.tsv"
    rc = main(
        [
            "split",
            "--table",
            str(table),
            "--out",
            str(out),
            "--test-file",
            str(test_file),
            "--mmse-include-mci",
            "--mmse-min",
            "20",
        ]
    )
    assert rc == 0
    df = sp.read_splits(out)
    assert set(df.loc[df["test"], "subject_id"]) == set(ids)
    eligible = df["mmse"] >= 20
    assert (df.loc[eligible, "mmse_set"] != "").all()
    assert (df.loc[~eligible, "mmse_set"] == "").all()
    assert ((df["diagnosis"] == "MCI") & eligible).any() and (df["mmse"] < 20).any()


def test_cli_bad_input_exits_2_without_output(tmp_path, table, capsys):
    out = tmp_path / "never.tsv"
    rc = main(["split", "--table", str(table), "--out", str(out), "--test-counts", '{"AD": 500, "NC": 5}'])
    assert rc == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "500" in err and "Traceback" not in err
    rc = run_split(table, out, "--sizes", "10,1000")
    assert rc == 2
    assert not out.exists()
    assert "1000" in capsys.readouterr().err


def test_splits_of_the_validated_table_file_are_byte_for_byte_those_of_the_table(tiny_cache, tmp_path):
    """The split step reads the validated table with the one reader (inputs.cohort.read_validated)."""
    from adtransfer.inputs.cohort import read_validated

    df = read_validated(tiny_cache["dir"] / "cohort.tsv")
    splits = sp.make_splits(df, {"AD": 2, "NC": 2}, [12], 0.25, seed=3, mmse_include_mci=True)
    sp.write_splits(splits, tmp_path / "splits.tsv")
    assert (tmp_path / "splits.tsv").read_bytes() == tiny_cache["splits"].read_bytes()


def test_fixed_test_table_keeps_ids_like_na(tmp_path):
    """A subject called NA in a fixed test-set table stays in the test set (pandas would read it as missing)."""
    path = tmp_path / "test.tsv"
    path.write_text("subject_id\tnote\nNA\tx\nsub-2\ty\n")
    assert sp.read_fixed_test(path) == {"NA", "sub-2"}
