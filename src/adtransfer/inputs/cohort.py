"""Participants tables: read (TSV, CSV or a BIDS root), check against the input contract, normalize.

A table row becomes: subject_id, diagnosis (AD | NC | MCI), mmse (float or NaN), age, sex, site and the
absolute scan path. Every defect is collected and reported as one InputError whose lines name the table,
the row (as numbered in the file, header = line 1) or subject, and the defect.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd

from adtransfer.errors import InputError
from adtransfer.io import is_nifti_path, load_scan, sha256_file
from adtransfer.schemas import load_schema

REQUIRED = ("subject_id", "diagnosis", "path")
OPTIONAL = ("mmse", "age", "sex", "site")
NUMERIC = ("mmse", "age")
DIAGNOSES = {"AD": "AD", "NC": "NC", "CN": "NC", "MCI": "MCI"}
SEXES = {"F": "F", "FEMALE": "F", "M": "M", "MALE": "M"}
MAX_REPORTED = 20


def read_participants(source: str | os.PathLike) -> pd.DataFrame:
    """Read and check a participants table (no scan is opened). Raises InputError on any defect."""
    source = Path(source)
    if source.is_dir():
        raw, table_path = _read_bids(source)
    else:
        table_path = source
        raw = _read_table_file(source)
    return _normalize(raw, table_path)


def _read_table_file(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise InputError(f"{path}: participants table does not exist")
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    if path.suffix.lower() not in (".csv", ".tsv", ".txt"):
        try:
            sep = csv.Sniffer().sniff(path.read_text(errors="replace")[:4096], delimiters=",\t").delimiter
        except csv.Error:
            raise InputError(f"{path}: cannot tell whether the table is TSV or CSV; name it .tsv or .csv") from None
    try:
        # blank lines are kept while reading so that row numbers match the file, then dropped
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: participants table is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise InputError(f"{path}: cannot parse the table ({exc})") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    df.index = df.index + 2  # line number in the file (header = line 1)
    return df[df.apply(lambda row: any(str(v).strip() for v in row), axis=1)] if len(df) else df


def _read_bids(root: Path) -> tuple[pd.DataFrame, Path]:
    table = root / "participants.tsv"
    if not table.exists():
        raise InputError(f"{root}: a BIDS dataset root needs participants.tsv")
    df = _read_table_file(table)
    if "participant_id" not in df.columns:
        raise InputError(f"{table}: BIDS participants.tsv has no 'participant_id' column")
    df = df.rename(columns={"participant_id": "subject_id"})
    if "path" not in df.columns:
        paths = []
        for sid in df["subject_id"].str.strip():
            sub = sid if sid.startswith("sub-") else f"sub-{sid}"
            found = sorted(
                p
                for pattern in ("pet/*_pet.nii*", "ses-*/pet/*_pet.nii*")
                for p in (root / sub).glob(pattern)
                if is_nifti_path(p)
            )
            if len(found) > 1:
                raise InputError(
                    f"{root / sub}: {len(found)} PET scans found "
                    f"({', '.join(p.name for p in found)}); give a 'path' column to choose one"
                )
            paths.append(str(found[0].relative_to(root)) if found else f"{sub}/pet/{sub}_pet.nii.gz")
        df["path"] = paths
    return df, table


def _normalize(raw: pd.DataFrame, table: Path) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise InputError(
            f"{table}: missing required column(s) {', '.join(missing)} (found: {', '.join(raw.columns) or 'none'})"
        )
    if raw.empty:
        raise InputError(f"{table}: participants table has no rows")
    schema = load_schema("participants")
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems: list[str] = []
    records: list[dict] = []
    for line, row in zip(raw.index, raw.to_dict("records"), strict=True):
        sid = str(row.get("subject_id", "")).strip()
        where = f"{table} row {line}" + (f" (subject {sid})" if sid else "")
        rec: dict = {}
        n_before = len(problems)
        for col in REQUIRED + OPTIONAL:
            value = str(row.get(col, "")).strip()
            if value == "" or value.lower() in ("na", "n/a", "nan"):
                continue
            if col in NUMERIC:
                try:
                    number = float(value)
                except ValueError:
                    problems.append(f"{where}: {col} '{value}' is not a number")
                    continue
                if not np.isfinite(number):
                    problems.append(f"{where}: {col} '{value}' is not a finite number")
                    continue
                rec[col] = number
            elif col == "diagnosis":
                if value.upper() not in DIAGNOSES:
                    problems.append(
                        f"{where}: unknown diagnosis '{value}' (expected AD, NC or MCI; CN is accepted as NC)"
                    )
                    continue
                rec[col] = DIAGNOSES[value.upper()]
            elif col == "sex":
                if value.upper() not in SEXES:
                    problems.append(f"{where}: sex '{value}' is not F or M")
                    continue
                rec[col] = SEXES[value.upper()]
            else:
                rec[col] = value
        unparsed = " ".join(problems[n_before:])  # cells already reported are not "empty" as well
        for err in validator.iter_errors(rec):
            field = err.path[0] if err.path else None
            if err.validator == "required":
                missing = err.message.split("'")[1]
                if f": {missing} '" not in unparsed and f"unknown {missing} '" not in unparsed:
                    problems.append(f"{where}: {missing} is empty")
            elif field == "subject_id" and err.validator == "pattern":
                problems.append(
                    f"{where}: subject_id '{rec[field]}' may contain only letters, digits, "
                    "'-' and '_' (it names output files)"
                )
            elif field == "mmse":
                problems.append(f"{where}: mmse {rec[field]:g} is outside 0-30")
            else:
                problems.append(f"{where}: {field}: {err.message}")
        if "path" in rec:
            p = Path(rec["path"])
            rec["path"] = str((p if p.is_absolute() else table.parent / p).resolve())
        rec["row"] = line
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    if "subject_id" in df.columns:
        dup = df[df["subject_id"].notna() & df.duplicated("subject_id", keep=False)]
        for sid, rows in dup.groupby("subject_id")["row"]:
            problems.append(f"{table}: duplicate subject_id '{sid}' in rows {', '.join(str(r) for r in rows)}")
    _raise_if(problems)
    for col in OPTIONAL:
        if col not in df.columns:
            df[col] = np.nan if col in NUMERIC else ""
    df[["sex", "site"]] = df[["sex", "site"]].fillna("")
    df.attrs["table"] = str(table)
    return df[["subject_id", "diagnosis", "mmse", "age", "sex", "site", "path", "row"]]


def _raise_if(problems: list[str]) -> None:
    if not problems:
        return
    shown = problems[:MAX_REPORTED]
    more = len(problems) - len(shown)
    text = "\n".join(shown) + (f"\n... and {more} more problem(s)" if more else "")
    if len(problems) > 1:
        text = f"{len(problems)} problems in the cohort:\n{text}"
    raise InputError(text)


def read_validated(path: str | os.PathLike) -> pd.DataFrame:
    """A validated cohort table as `validate` (or the registration QC) writes it (results/cohort/{cohort}.tsv):
    the one reader of it. Ids such as "NA" or "null" are valid subject ids (and sites): only empty cells are
    missing values."""
    return pd.read_csv(
        path, sep="\t", dtype={"subject_id": str, "sex": str, "site": str}, keep_default_na=False, na_values=[""]
    )


def require_two_classes(df: pd.DataFrame, name: str) -> None:
    """A classifier needs both AD and NC subjects."""
    counts = df["diagnosis"].value_counts()
    have = [d for d in ("AD", "NC") if counts.get(d, 0) > 0]
    if len(have) < 2:
        found = ", ".join(f"{k} {v}" for k, v in counts.items()) or "no subjects"
        raise InputError(f"{name}: a classifier needs AD and NC subjects, the cohort has only: {found}")


def validate_cohort(
    source: str | os.PathLike, classify: bool = True, check_scans: bool = True, progress: bool = True
) -> pd.DataFrame:
    """Check a whole cohort: the table, then every scan (readable, 3D, finite, non-empty).

    Returns the normalized table with each scan's sha256, shape and voxel size.
    """
    df = read_participants(source)
    table = df.attrs["table"]
    if classify:
        require_two_classes(df, table)
    if not check_scans:
        problems = [
            f"{rec.path} (subject {rec.subject_id}, {table} row {rec.row}): "
            + (
                "scan file does not exist"
                if not os.path.isfile(rec.path)
                else "not a NIfTI file (expected .nii or .nii.gz, or a folder with one DICOM series)"
            )
            for rec in df.itertuples(index=False)
            if not (os.path.isfile(rec.path) and is_nifti_path(rec.path)) and not os.path.isdir(rec.path)
        ]
        _raise_if(problems)
        return df
    problems: list[str] = []
    shas, shapes, voxels = [], [], []
    for i, rec in enumerate(df.itertuples(index=False)):
        try:
            img = load_scan(rec.path, who=f"subject {rec.subject_id}, {table} row {rec.row}")
            shapes.append("x".join(str(s) for s in img.shape))
            voxels.append("x".join(f"{z:g}" for z in img.header.get_zooms()[:3]))
            shas.append(sha256_file(rec.path))
        except InputError as exc:
            problems.append(str(exc))
            shas.append("")
            shapes.append("")
            voxels.append("")
        if progress and ((i + 1) % 50 == 0 or i + 1 == len(df)):
            print(f"validate: {i + 1}/{len(df)} scans checked", file=sys.stderr, flush=True)
    _raise_if(problems)
    df = df.assign(sha256=shas, shape=shapes, voxel_mm=voxels)
    df.attrs["table"] = table
    return df
