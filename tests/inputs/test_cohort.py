"""Participants tables and whole cohorts against the input contract (read_participants, validate_cohort)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from adtransfer.errors import InputError
from adtransfer.inputs.cohort import read_participants, read_validated, validate_cohort

AFFINE_2MM = np.diag([2.0, 2.0, 2.0, 1.0])
SHAPE = (10, 12, 8)
HEADER = ("subject_id", "diagnosis", "mmse", "path")


def random_volume(shape=SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1.0, 100.0, shape).astype(np.float32)


def write_volume(path: Path, data: np.ndarray | None = None, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(random_volume(seed=seed) if data is None else data, AFFINE_2MM), str(path))
    return path


def write_table(path: Path, rows: list[tuple], header: tuple = HEADER, sep: str = "\t") -> Path:
    """A table as plain text: exactly the cells given, no quoting or type conversion."""
    lines = [sep.join(header)] + [sep.join(str(c) for c in row) for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def valid_rows() -> list[tuple]:
    return [
        ("sub-01", "AD", "21", "scans/sub-01.nii.gz"),
        ("sub-02", "NC", "29", "scans/sub-02.nii.gz"),
        ("sub-03", "MCI", "", "scans/sub-03.nii.gz"),
    ]


def with_cell(rows: list[tuple], row: int, column: str, value: str) -> list[tuple]:
    """`rows` with one cell replaced (`row` counts data rows from 0)."""
    i = HEADER.index(column)
    return [r[:i] + (value,) + r[i + 1 :] if n == row else r for n, r in enumerate(rows)]


def table_with(tmp_path: Path, row: int, column: str, value: str) -> Path:
    """The valid table with one cell replaced."""
    return write_table(tmp_path / "participants.tsv", with_cell(valid_rows(), row, column, value))


def cell_error(tmp_path: Path, row: int, column: str, value: str) -> str:
    """The message for one bad cell of the valid table, checked to name the table, the row as the file counts
    it (the header is row 1) and the subject."""
    table = table_with(tmp_path, row, column, value)
    msg = table_error(table)
    assert f"{table} row {row + 2} (subject {valid_rows()[row][0]})" in msg
    return msg


def make_cohort(folder: Path, rows: list[tuple] | None = None, name: str = "participants.tsv") -> Path:
    """Write the table and a valid random scan for every relative .nii/.nii.gz path in it."""
    rows = valid_rows() if rows is None else rows
    for i, row in enumerate(rows):
        rel = row[3]
        if rel.endswith((".nii", ".nii.gz")) and not Path(rel).is_absolute():
            write_volume(folder / rel, seed=i)
    return write_table(folder / name, rows, sep="," if name.endswith(".csv") else "\t")


def table_error(source: Path, **kwargs) -> str:
    """The single-defect message of read_participants (or validate_cohort when kwargs are given)."""
    with pytest.raises(InputError) as excinfo:
        if kwargs:
            validate_cohort(source, progress=False, **kwargs)
        else:
            read_participants(source)
    msg = str(excinfo.value)
    assert len(msg.splitlines()) == 1, f"one defect should give one line: {msg!r}"
    return msg


# --- table defects -------------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["subject_id", "diagnosis", "path"])
def test_missing_required_column(tmp_path, column):
    keep = [i for i, c in enumerate(HEADER) if c != column]
    rows = [tuple(r[i] for i in keep) for r in valid_rows()]
    table = write_table(tmp_path / "participants.tsv", rows, header=tuple(HEADER[i] for i in keep))
    msg = table_error(table)
    assert str(table) in msg
    assert "missing required column" in msg
    assert column in msg.split("(found")[0]


def test_duplicate_subject_id(tmp_path):
    table = table_with(tmp_path, 2, "subject_id", "sub-01")
    msg = table_error(table)
    assert str(table) in msg
    assert "duplicate" in msg
    assert "'sub-01'" in msg
    assert "rows 2, 4" in msg


def test_duplicate_subject_id_after_stripping_spaces(tmp_path):
    msg = table_error(table_with(tmp_path, 1, "subject_id", " sub-01 "))
    assert "duplicate subject_id 'sub-01' in rows 2, 3" in msg


@pytest.mark.parametrize("bad_id", ["sub 01", "sub/01", "sub.01", "../sub01", "sub-é1"])
def test_subject_id_with_forbidden_characters(tmp_path, bad_id):
    table = table_with(tmp_path, 1, "subject_id", bad_id)
    msg = table_error(table)
    assert f"{table} row 3" in msg
    assert f"'{bad_id}'" in msg
    assert "may contain only letters, digits" in msg


@pytest.mark.parametrize("label", ["Alzheimer", "dementia", "AD?", "1"])
def test_unknown_diagnosis(tmp_path, label):
    assert f"unknown diagnosis '{label}'" in cell_error(tmp_path, 0, "diagnosis", label)


def test_empty_diagnosis(tmp_path):
    assert "diagnosis is empty" in cell_error(tmp_path, 1, "diagnosis", "")


@pytest.mark.parametrize(("value", "shown"), [("31", "31"), ("-1", "-1"), ("30.5", "30.5"), ("100", "100")])
def test_mmse_out_of_range(tmp_path, value, shown):
    assert f"mmse {shown} is outside 0-30" in cell_error(tmp_path, 1, "mmse", value)


@pytest.mark.parametrize("value", ["0", "30", "", "NA", "n/a", "27.5"])
def test_mmse_in_range_or_empty_is_accepted(tmp_path, value):
    df = read_participants(table_with(tmp_path, 1, "mmse", value))
    got = df.loc[df["subject_id"] == "sub-02", "mmse"].item()
    if value in ("", "NA", "n/a"):
        assert np.isnan(got)
    else:
        assert got == float(value)


@pytest.mark.parametrize("value", ["abc", "twenty", "2O", "27,5"])
def test_mmse_not_a_number(tmp_path, value):
    assert f"mmse '{value}' is not a number" in cell_error(tmp_path, 0, "mmse", value)


def test_mmse_infinite(tmp_path):
    assert "not a finite number" in cell_error(tmp_path, 0, "mmse", "inf")


def test_header_only_table(tmp_path):
    table = write_table(tmp_path / "participants.tsv", [])
    msg = table_error(table)
    assert str(table) in msg
    assert "no rows" in msg


def test_completely_empty_file(tmp_path):
    table = tmp_path / "participants.tsv"
    table.write_text("")
    msg = table_error(table)
    assert str(table) in msg
    assert "empty" in msg


def test_table_does_not_exist(tmp_path):
    table = tmp_path / "nowhere.tsv"
    msg = table_error(table)
    assert str(table) in msg
    assert "does not exist" in msg


def test_several_defects_are_reported_together(tmp_path):
    rows = with_cell(with_cell(valid_rows(), 0, "mmse", "31"), 2, "diagnosis", "Alzheimer")
    with pytest.raises(InputError) as excinfo:
        read_participants(write_table(tmp_path / "participants.tsv", rows))
    msg = str(excinfo.value)
    assert msg.startswith("2 problems")
    assert "row 2 (subject sub-01): mmse 31 is outside 0-30" in msg
    assert "row 4 (subject sub-03): unknown diagnosis 'Alzheimer'" in msg


# --- classification needs both classes -----------------------------------------------------------------


def single_class_cohort(folder: Path) -> Path:
    rows = [
        ("sub-01", "AD", "20", "scans/sub-01.nii.gz"),
        ("sub-02", "AD", "18", "scans/sub-02.nii.gz"),
        ("sub-03", "MCI", "25", "scans/sub-03.nii.gz"),
    ]
    return make_cohort(folder, rows)


def test_single_class_cohort_rejected_when_classifying(tmp_path):
    table = single_class_cohort(tmp_path)
    msg = table_error(table, classify=True)
    assert str(table) in msg
    assert "needs AD and NC" in msg
    assert "AD 2" in msg


def test_single_class_cohort_accepted_without_classification(tmp_path):
    table = single_class_cohort(tmp_path)
    df = validate_cohort(table, classify=False, progress=False)
    assert list(df["subject_id"]) == ["sub-01", "sub-02", "sub-03"]
    assert set(df["diagnosis"]) == {"AD", "MCI"}


# --- scan defects through validate_cohort --------------------------------------------------------------


def _nan(path: Path) -> None:
    data = random_volume()
    data[0, 0, 0] = np.nan
    write_volume(path, data)


def _inf(path: Path) -> None:
    data = random_volume()
    data[5, 5, 5] = np.inf
    write_volume(path, data)


def _zero(path: Path) -> None:
    write_volume(path, np.zeros(SHAPE, np.float32))


def _three_frames(path: Path) -> None:
    write_volume(path, random_volume(SHAPE + (3,)))


def _truncated(path: Path) -> None:
    write_volume(path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


SCAN_DEFECTS = {
    "missing": ("scans/sub-02.nii.gz", lambda p: p.unlink(), "does not exist"),
    "txt": ("scans/sub-02.txt", lambda p: p.write_text("not an image\n"), "not a NIfTI"),
    "png": ("scans/sub-02.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32), "not a NIfTI"),
    "garbage": ("scans/sub-02.nii.gz", lambda p: p.write_bytes(b"garbage" * 50), "cannot read NIfTI header"),
    "truncated": ("scans/sub-02.nii.gz", _truncated, "truncated"),
    "nan": ("scans/sub-02.nii.gz", _nan, "NaN or Inf"),
    "inf": ("scans/sub-02.nii.gz", _inf, "NaN or Inf"),
    "zero": ("scans/sub-02.nii.gz", _zero, "all voxels are zero"),
    "2d": ("scans/sub-02.nii.gz", lambda p: write_volume(p, random_volume((10, 12))), "2D"),
    "4d": ("scans/sub-02.nii.gz", _three_frames, "4D image with 3 volumes"),
}


@pytest.mark.parametrize("kind", list(SCAN_DEFECTS))
def test_scan_defect_names_subject_row_file_and_defect(tmp_path, kind):
    rel, writer, words = SCAN_DEFECTS[kind]
    table = make_cohort(tmp_path, with_cell(valid_rows(), 1, "path", rel))
    scan = tmp_path / rel
    writer(scan)
    msg = table_error(table, classify=True)
    assert str(scan.resolve()) in msg
    assert "subject sub-02" in msg
    assert "row 3" in msg
    assert words in msg


def test_every_bad_scan_is_reported(tmp_path):
    table = make_cohort(tmp_path)
    write_volume(tmp_path / "scans/sub-01.nii.gz", np.zeros(SHAPE, np.float32))
    (tmp_path / "scans/sub-03.nii.gz").unlink()
    with pytest.raises(InputError) as excinfo:
        validate_cohort(table, progress=False)
    msg = str(excinfo.value)
    assert msg.startswith("2 problems")
    assert "subject sub-01" in msg and "all voxels are zero" in msg
    assert "subject sub-03" in msg and "does not exist" in msg
    assert "sub-02" not in msg


def test_table_only_does_not_open_scans(tmp_path):
    table = make_cohort(tmp_path)
    (tmp_path / "scans/sub-02.nii.gz").write_bytes(b"garbage")
    df = validate_cohort(table, check_scans=False, progress=False)
    assert len(df) == 3
    with pytest.raises(InputError, match="sub-02"):
        validate_cohort(table, progress=False)


# --- valid variants ------------------------------------------------------------------------------------


def test_valid_cohort_is_normalized_with_checksums(tmp_path):
    table = make_cohort(tmp_path)
    df = validate_cohort(table, progress=False)
    assert list(df["subject_id"]) == ["sub-01", "sub-02", "sub-03"]
    assert list(df["diagnosis"]) == ["AD", "NC", "MCI"]
    assert df["mmse"].iloc[0] == 21.0 and np.isnan(df["mmse"].iloc[2])
    for rec in df.itertuples():
        assert Path(rec.path).is_absolute()
        assert rec.sha256 == hashlib.sha256(Path(rec.path).read_bytes()).hexdigest()
        assert rec.shape == "10x12x8"
        assert rec.voxel_mm == "2x2x2"
    assert list(df["row"]) == [2, 3, 4]


def test_csv_table(tmp_path):
    table = make_cohort(tmp_path, name="participants.csv")
    assert "," in table.read_text().splitlines()[0]
    df = validate_cohort(table, progress=False)
    assert list(df["subject_id"]) == ["sub-01", "sub-02", "sub-03"]
    assert list(df["diagnosis"]) == ["AD", "NC", "MCI"]


def test_optional_columns_are_parsed(tmp_path):
    header = ("subject_id", "diagnosis", "mmse", "path", "age", "sex", "site")
    extra = zip(("71", "68.5", ""), ("female", "M", "f"), strict=True)
    rows = [r + (age, sex, "S1") for r, (age, sex) in zip(valid_rows(), extra, strict=True)]
    df = read_participants(write_table(tmp_path / "participants.tsv", rows, header=header))
    assert list(df["sex"]) == ["F", "M", "F"]
    assert list(df["age"].iloc[:2]) == [71.0, 68.5] and np.isnan(df["age"].iloc[2])
    assert list(df["site"]) == ["S1"] * 3


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (("ad", "cn", "mci"), ["AD", "NC", "MCI"]),
        (("Ad", "Nc", "Mci"), ["AD", "NC", "MCI"]),
        (("AD", "CN", "CN"), ["AD", "NC", "NC"]),
    ],
)
def test_diagnosis_labels_are_case_insensitive_and_cn_is_nc(tmp_path, labels, expected):
    rows = [(r[0], lab) + r[2:] for r, lab in zip(valid_rows(), labels, strict=True)]
    df = read_participants(write_table(tmp_path / "participants.tsv", rows))
    assert list(df["diagnosis"]) == expected


def test_relative_paths_are_resolved_against_the_table_folder(tmp_path, monkeypatch):
    folder = tmp_path / "study"
    make_cohort(folder)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    df = validate_cohort(Path("..") / "study" / "participants.tsv", progress=False)
    assert list(df["path"]) == [str((folder / r[3]).resolve()) for r in valid_rows()]


def test_absolute_paths_are_kept(tmp_path):
    scans = tmp_path / "elsewhere"
    rows = [
        (sid, dx, mmse, str(write_volume(scans / f"{sid}.nii", seed=i)))
        for i, (sid, dx, mmse, _) in enumerate(valid_rows())
    ]
    table = write_table(tmp_path / "tables" / "participants.tsv", rows)
    df = validate_cohort(table, progress=False)
    assert list(df["path"]) == [str((scans / f"{r[0]}.nii").resolve()) for r in valid_rows()]


def test_bids_root(tmp_path):
    root = tmp_path / "bids"
    write_table(
        root / "participants.tsv",
        [("sub-01", "AD", "22"), ("sub-02", "CN", "29"), ("sub-03", "mci", "26")],
        header=("participant_id", "diagnosis", "mmse"),
    )
    for i, sid in enumerate(("sub-01", "sub-02", "sub-03")):
        write_volume(root / sid / "pet" / f"{sid}_trc-FDG_pet.nii.gz", seed=i)
    df = validate_cohort(root, progress=False)
    assert list(df["subject_id"]) == ["sub-01", "sub-02", "sub-03"]
    assert list(df["diagnosis"]) == ["AD", "NC", "MCI"]
    assert list(df["path"]) == [
        str((root / s / "pet" / f"{s}_trc-FDG_pet.nii.gz").resolve()) for s in ("sub-01", "sub-02", "sub-03")
    ]
    assert df.attrs["table"] == str(root / "participants.tsv")


def test_bids_root_missing_scan_names_expected_file(tmp_path):
    root = tmp_path / "bids"
    write_table(
        root / "participants.tsv",
        [("sub-01", "AD"), ("sub-02", "NC")],
        header=("participant_id", "diagnosis"),
    )
    write_volume(root / "sub-01" / "pet" / "sub-01_pet.nii.gz")
    msg = table_error(root, classify=True)
    assert "sub-02/pet/sub-02_pet.nii.gz" in msg
    assert "subject sub-02" in msg
    assert "does not exist" in msg


def test_bids_root_without_participants_tsv(tmp_path):
    (tmp_path / "bids").mkdir()
    msg = table_error(tmp_path / "bids")
    assert str(tmp_path / "bids") in msg
    assert "participants.tsv" in msg


def test_fixture_cohort_validates(fdg_cohort):
    df = validate_cohort(fdg_cohort / "participants.tsv", progress=False)
    assert len(df) == 7
    assert df["diagnosis"].value_counts().to_dict() == {"AD": 3, "NC": 3, "MCI": 1}
    assert (df["sha256"].str.len() == 64).all()


def test_table_is_a_dataframe_with_fixed_columns(tmp_path):
    df = read_participants(make_cohort(tmp_path))
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["subject_id", "diagnosis", "mmse", "age", "sex", "site", "path", "row"]


def test_read_validated_keeps_ids_like_na_and_only_empty_cells_are_missing(tmp_path):
    """The one reader of a validated table (split, cache and registration QC read it the same way)."""
    table = tmp_path / "fdg.tsv"
    table.write_text("subject_id\tdiagnosis\tmmse\tage\tsex\tsite\nNA\tAD\t\t70\tF\tNA\nnull\tNC\t29\t\t\t\n")
    df = read_validated(table)
    assert df["subject_id"].tolist() == ["NA", "null"] and df["site"].iloc[0] == "NA"
    assert np.isnan(df["mmse"].iloc[0]) and df["mmse"].iloc[1] == 29 and np.isnan(df["age"].iloc[1])
    assert df[["sex", "site"]].iloc[1].isna().all()
