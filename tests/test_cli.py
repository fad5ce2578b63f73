"""`adtransfer validate` as a user runs it: exit status, one message on stderr, never a traceback."""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_command_importing, run_importing, run_steps_without

AFFINE_2MM = np.diag([2.0, 2.0, 2.0, 1.0])
SHAPE = (10, 12, 8)
HEADER = ("subject_id", "diagnosis", "mmse", "path")


def write_volume(path: Path, data: np.ndarray | None = None, seed: int = 0) -> Path:
    if data is None:
        data = np.random.default_rng(seed).uniform(1.0, 100.0, SHAPE).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, AFFINE_2MM), str(path))
    return path


def write_table(path: Path, rows: list[tuple], header: tuple = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(map(str, r)) for r in [header, *rows]) + "\n")
    return path


def make_cohort(folder: Path, rows: list[tuple] | None = None) -> Path:
    rows = rows or [
        ("sub-01", "AD", "21", "scans/sub-01.nii.gz"),
        ("sub-02", "NC", "29", "scans/sub-02.nii.gz"),
        ("sub-03", "NC", "28", "scans/sub-03.nii.gz"),
    ]
    for i, row in enumerate(rows):
        write_volume(folder / row[3], seed=i)
    return write_table(folder / "participants.tsv", rows)


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "adtransfer", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def assert_clean_failure(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Traceback" not in proc.stdout
    for word in words:
        assert word in proc.stderr, f"{word!r} not in stderr:\n{proc.stderr}"


# --- valid cohorts -------------------------------------------------------------------------------------


def test_validate_fixture_cohort_writes_checksums(fdg_cohort, tmp_path):
    table = fdg_cohort / "participants.tsv"
    out = tmp_path / "out" / "cohort.tsv"
    proc = run_cli("validate", table, "--modality", "fdg", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "valid cohort (fdg_pet): 7 subjects" in proc.stdout
    df = pd.read_csv(out, sep="\t", dtype={"sha256": str})
    assert len(df) == 7
    assert "row" not in df.columns
    for rec in df.itertuples():
        path = Path(rec.path)
        assert path.is_absolute()
        assert path.parent == (fdg_cohort / "scans").resolve()
        assert rec.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sorted(p.name for p in out.parent.iterdir()) == ["cohort.tsv"]  # no temporary file left


def test_validate_relative_table_from_another_folder(tmp_path):
    make_cohort(tmp_path / "study")
    (tmp_path / "cwd").mkdir()
    proc = run_cli("validate", "../study/participants.tsv", cwd=tmp_path / "cwd")
    assert proc.returncode == 0, proc.stderr
    assert "3 subjects (NC 2, AD 1)" in proc.stdout


def test_validate_main_does_not_import_tensorflow(tmp_path):
    table = make_cohort(tmp_path)
    proc = run_steps_without([["validate", table]], timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "valid cohort" in proc.stdout


def test_preprocess_job_imports_neither_pandas_nor_plotting_nor_tensorflow(fdg_cohort, tmp_path):
    """One preprocessing job per subject, as the workflow's rule runs it (MNI space, both QC images, sidecar):
    every import it does not need is paid once per scan. nipype, scipy.ndimage and pydicom (which nibabel imports
    unless hidden) included: an MNI-space scan runs the steps as plain functions; numpy.ma (np.median's and
    interpolated percentiles' import) too."""
    scan = sorted((fdg_cohort / "scans").glob("*.nii.gz"))[0]
    args = ["preprocess", "--input", str(scan), "--output", str(tmp_path / "out.nii.gz"), "--modality", "fdg"]
    args += ["--qc", str(tmp_path / "qc.png"), "--sidecar", str(tmp_path / "out.json")]
    args += ["--registration-qc", str(tmp_path / "reg.png"), "--space", "mni", "--registration", "{}"]
    heavy = {"pandas", "matplotlib", "sklearn", "tensorflow", "nipype", "networkx", "traits", "scipy.ndimage"}
    heavy |= {"yaml", "jsonschema", "h5py", "SimpleITK", "numpy.ma"}
    proc = run_steps_without([args], heavy)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "out.json").read_text())["roi_means"]
    assert (tmp_path / "reg.png").exists()


@pytest.mark.parametrize("entry", ["module", "script"])
def test_preprocess_command_does_not_import_pydicom_nor_http(fdg_cohort, tmp_path, entry):
    """The per-subject command as the rule starts it (`python -m adtransfer preprocess`; and the console script):
    nibabel imports pydicom whenever it is installed (~0.2 s CPU per job) unless the command's entry hides it, and
    urllib.request with http.client, email and ssl (~0.03 s) unless the entry defers it."""
    scan = sorted((fdg_cohort / "scans").glob("*.nii.gz"))[0]
    args = ["preprocess", "--input", scan, "--output", tmp_path / "out.nii.gz", "--modality", "fdg_pet"]
    args += ["--space", "mni", "--registration", "{}", "--subject", "s1", "--sidecar", tmp_path / "s.json"]
    proc, modules = run_command_importing(entry, args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert nib.load(tmp_path / "out.nii.gz").shape == (95, 95, 48)
    assert not {m for m in modules if m.startswith("pydicom.")}  # a refused import shows as a bare `pydicom` line
    assert not modules & {"http.client", "email.parser", "ssl"}
    # the check can see both: nibabel imports them in a plain interpreter of this environment
    plain = run_importing(["-c", "import nibabel.nifti1"])[1]
    assert {m for m in plain if m.startswith("pydicom.")} and {"http.client", "email.parser", "ssl"} <= plain


@pytest.mark.parametrize(
    "use",
    [
        "from urllib import request as m; m.Request",
        "import urllib.request as m",
        "from urllib.request import urlopen; import urllib; m = urllib.request",
        "import importlib; m = importlib.import_module('urllib.request')",
    ],
)
def test_the_deferred_urllib_request_works_when_used(use):
    """The command's entry defers urllib.request (adtransfer.__main__): nibabel's import does not load it, and code
    that uses it, by each import form, gets the whole module."""
    code = (
        "import sys, types; from adtransfer.__main__ import _defer_urllib_request; sys.modules['pydicom'] = None; "
        "_defer_urllib_request(); import nibabel; assert 'http.client' not in sys.modules; "
        f"{use}; assert 'http.client' in sys.modules and type(m) is types.ModuleType; "
        "assert m.Request('http://example.org/x').host == 'example.org' and callable(m.urlopen); print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_main_builds_the_invoked_steps_parser_only(monkeypatch, capsys):
    """main passes the step's name to build_parser (any other first word gets the whole parser, so a main that
    passed nothing would still work, only slower: this checks what it passes)."""
    from adtransfer import cli

    asked = []
    real = cli.build_parser

    def recording(only=None):
        asked.append(only)
        return real(only)

    monkeypatch.setattr(cli, "build_parser", recording)
    monkeypatch.setattr(sys, "argv", ["adtransfer", "figure", "roc", "--role", "ecd", "--out", "x.png"])
    assert cli.main() == 2  # refused: no --grid (as test_a_grid_figure_without_the_grid_is_refused)
    assert asked == ["figure"]
    with pytest.raises(SystemExit):
        cli.main(["-h"])
    assert asked[1:] == ["-h", None] and "predict-cohort" in capsys.readouterr().out  # then the whole parser


def test_preprocess_job_reads_a_scan_with_a_dicom_header_extension(fdg_cohort, tmp_path):
    """A NIfTI carrying a DICOM header extension (ecode 2, here not even valid DICOM) preprocesses: the step reads
    the data and affine only."""
    img = nib.load(sorted((fdg_cohort / "scans").glob("*.nii.gz"))[0])
    scan = nib.Nifti1Image(np.asarray(img.dataobj), img.affine)
    scan.header.extensions.append(nib.nifti1.Nifti1Extension(2, b"not a DICOM data set"))
    nib.save(scan, tmp_path / "ext.nii.gz")
    proc = run_cli(
        "preprocess", "--input", tmp_path / "ext.nii.gz", "--output", tmp_path / "out.nii.gz", "--modality", "fdg"
    )
    assert proc.returncode == 0, proc.stderr
    assert nib.load(tmp_path / "out.nii.gz").shape == (95, 95, 48)


def test_cli_import_is_light():
    """`adtransfer <step>` parses its arguments before any step imports its libraries."""
    code = "import sys, adtransfer.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in sys.argv[1:]))"
    heavy = ["numpy", "nibabel", "nipype", "scipy", "pandas", "PIL", "matplotlib", "yaml", "jsonschema", "tensorflow"]
    proc = subprocess.run([sys.executable, "-c", code, *heavy], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --- defects: exit 2, one message, no traceback --------------------------------------------------------


def test_duplicate_subject(tmp_path):
    rows = [
        ("sub-01", "AD", "", "a.nii.gz"),
        ("sub-02", "NC", "", "b.nii.gz"),
        ("sub-01", "NC", "", "c.nii.gz"),
    ]
    table = make_cohort(tmp_path, rows)
    assert_clean_failure(run_cli("validate", table), str(table), "duplicate subject_id 'sub-01'", "rows 2, 4")


def test_mmse_out_of_range(tmp_path):
    rows = [("sub-01", "AD", "31", "a.nii.gz"), ("sub-02", "NC", "29", "b.nii.gz")]
    table = make_cohort(tmp_path, rows)
    assert_clean_failure(run_cli("validate", table), f"{table} row 2 (subject sub-01)", "outside 0-30")


def test_truncated_scan(tmp_path):
    table = make_cohort(tmp_path)
    scan = tmp_path / "scans" / "sub-02.nii.gz"
    blob = scan.read_bytes()
    scan.write_bytes(blob[: len(blob) // 2])
    out = tmp_path / "validated.tsv"
    proc = run_cli("validate", table, "--out", out)
    assert_clean_failure(proc, str(scan.resolve()), "subject sub-02", "row 3", "truncated")
    assert not out.exists()  # no output table for an invalid cohort


def test_nan_scan(tmp_path):
    table = make_cohort(tmp_path)
    data = np.ones(SHAPE, np.float32)
    data[2, 2, 2] = np.nan
    write_volume(tmp_path / "scans" / "sub-03.nii.gz", data)
    assert_clean_failure(run_cli("validate", table), "subject sub-03", "sub-03.nii.gz", "NaN or Inf")


def test_missing_scan(tmp_path):
    table = make_cohort(tmp_path)
    (tmp_path / "scans" / "sub-01.nii.gz").unlink()
    assert_clean_failure(run_cli("validate", table), "subject sub-01", "sub-01.nii.gz", "does not exist")


def test_empty_table_file(tmp_path):
    table = tmp_path / "participants.tsv"
    table.write_text("")
    assert_clean_failure(run_cli("validate", table), str(table), "empty")


def test_missing_table(tmp_path):
    table = tmp_path / "absent.csv"
    assert_clean_failure(run_cli("validate", table), str(table), "does not exist")


@pytest.mark.parametrize("classify", [True, False])
def test_single_class_cohort(tmp_path, classify):
    rows = [("sub-01", "AD", "", "a.nii.gz"), ("sub-02", "AD", "", "b.nii.gz")]
    table = make_cohort(tmp_path, rows)
    if classify:
        assert_clean_failure(run_cli("validate", table), str(table), "needs AD and NC")
    else:
        proc = run_cli("validate", table, "--no-classify")
        assert proc.returncode == 0, proc.stderr
        assert "2 subjects (AD 2)" in proc.stdout


def _train_args(tmp_path: Path, work: Path) -> list[str | Path]:
    return [
        "train",
        "--cache",
        tmp_path / "cache.h5",
        "--splits",
        tmp_path / "splits.tsv",
        "--set",
        "n12",
        "--model-out",
        tmp_path / "m.keras",
        "--history-out",
        tmp_path / "h.tsv",
        "--metrics-out",
        tmp_path / "j.json",
        "--work-dir",
        work,
        "--settings",
        "{}",
        "--threads",
        "1",
    ]


def test_train_takes_output_files_not_a_folder(tmp_path):
    proc = run_cli(
        "train", "--cache", "c.h5", "--splits", "s.tsv", "--set", "n12", "--out", tmp_path, "--settings", "{}"
    )
    assert proc.returncode == 2 and "--model-out" in proc.stderr and "Traceback" not in proc.stderr


def test_train_refuses_a_work_dir_it_did_not_make(tmp_path):
    """The work folder is deleted after success: a folder holding anything else is refused before training."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    assert_clean_failure(run_cli(*_train_args(tmp_path, work)), str(work), "not made by a training run")
    assert (work / "notes.txt").exists()
    assert_clean_failure(run_cli(*_train_args(tmp_path, tmp_path)), "m.keras", "lies in the work folder")


def test_train_refuses_the_current_folder_as_its_work_dir(tmp_path):
    """The work folder is renamed and removed after training: `--work-dir .` is refused, not a traceback."""
    proc = run_cli(*_train_args(tmp_path, Path(".")), cwd=tmp_path)
    assert_clean_failure(proc, "give a folder of its own")
    assert tmp_path.is_dir()


def test_backup_schedule_comes_from_the_option_or_the_environment(monkeypatch):
    """--backup-every, else $ADTRANSFER_BACKUP_EVERY (unset or empty: 60 s); a bad value names where it came from."""
    from adtransfer.cli import BACKUP_EVERY_ENV, _backup_every, _seconds
    from adtransfer.errors import InputError

    monkeypatch.delenv(BACKUP_EVERY_ENV, raising=False)
    assert _backup_every(None) == 60.0
    monkeypatch.setenv(BACKUP_EVERY_ENV, "")
    assert _backup_every(None) == 60.0
    monkeypatch.setenv(BACKUP_EVERY_ENV, " 0 ")
    assert _backup_every(None) == 0.0 and _backup_every(7.0) == 7.0
    monkeypatch.setenv(BACKUP_EVERY_ENV, "abc")
    with pytest.raises(InputError, match=r"^\$ADTRANSFER_BACKUP_EVERY: .*'abc'"):
        _backup_every(None)
    assert _backup_every(5.0) == 5.0  # the option, when given, wins
    for bad in ("-1", "inf", "nan", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="finite number of seconds >= 0"):
            _seconds(bad)


def test_train_writes_predictions_and_features_together_outside_its_work_dir(tmp_path):
    """--predictions-out and --features-out (the workflow's predictions, written by the training job) go together,
    and like every output they must not lie in the work folder that is deleted after training; both checked
    before training."""
    work = tmp_path / "work"
    alone = run_cli(*_train_args(tmp_path, work), "--predictions-out", tmp_path / "p.tsv")
    assert_clean_failure(alone, "--predictions-out and --features-out go together")
    inside = ["--predictions-out", work / "p.tsv", "--features-out", tmp_path / "f.h5"]
    assert_clean_failure(run_cli(*_train_args(tmp_path, work), *inside), "p.tsv", "lies in the work folder")
    assert not work.exists()


def test_unknown_modality_is_a_usage_error(tmp_path):
    table = make_cohort(tmp_path)
    proc = run_cli("validate", table, "--modality", "mri")
    assert_clean_failure(proc, "unknown modality 'mri'")


def test_baseline_evaluate_and_explain_steps_do_not_import_tensorflow(tiny_cache, tmp_path):
    """The ROI baseline, evaluation and its explanation run in the data environment: no TensorFlow import."""
    model, pred, metrics = tmp_path / "m.json", tmp_path / "p.tsv", tmp_path / "metrics.json"
    steps = [
        [
            "baseline",
            "--cache",
            str(tiny_cache["cache"]),
            "--splits",
            str(tiny_cache["splits"]),
            "--set",
            "n12",
            "--task",
            "classify",
            "--out",
            str(model),
            "--predictions",
            str(pred),
        ],
        ["evaluate", "--predictions", str(pred), "--task", "classify", "--out", str(metrics), "--n-boot", "200"],
        [
            "explain-baseline",
            "--model",
            str(model),
            "--cache",
            str(tiny_cache["cache"]),
            "--summary",
            str(tmp_path / "explain" / "explain_summary.json"),
            "--table",
            str(tmp_path / "explain" / "coefficients.tsv"),
            "--nifti",
            str(tmp_path / "explain" / "coefficients.nii.gz"),
            "--png",
            str(tmp_path / "coef.png"),
        ],
    ]
    proc = run_steps_without(steps)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(metrics.read_text())["n_test"] == 4
    assert (tmp_path / "explain" / "coefficients.nii.gz").exists()


def test_library_output_on_fd2_goes_to_the_log_and_ours_to_the_console(tmp_path):
    """What libraries write to file descriptor 2 (TensorFlow's C++ logging, Python warnings) lands in the step's
    log; our own messages still reach the console, and fd 2 is restored afterwards."""
    logfile = tmp_path / "logs" / "step.log"
    code = (
        "import logging, os, sys, warnings\n"
        "from adtransfer import cli\n"
        "def noisy(args):\n"
        "    os.write(2, b'NATIVE-NOISE\\n')\n"
        "    warnings.warn('PY-WARNING')\n"
        "    logging.getLogger('adtransfer').info('OUR-MESSAGE')\n"
        "cli.cmd_validate = noisy\n"
        "rc = cli.main(['validate', 'x', '--log', sys.argv[1]])\n"
        "os.write(2, b'AFTER\\n')\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(logfile)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    log_text = logfile.read_text()
    assert "NATIVE-NOISE" in log_text and "PY-WARNING" in log_text and "OUR-MESSAGE" in log_text
    assert "NATIVE-NOISE" not in proc.stderr and "PY-WARNING" not in proc.stderr
    assert "OUR-MESSAGE" in proc.stderr and "AFTER" in proc.stderr


def _steps(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands' parsers of the command line's parser, by step name."""
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_steps_take_files_and_the_grid_not_folders_or_grid_pieces():
    """Every step is given the files it writes (no --out-dir, --model-dir, --tables-dir) and the steps that read
    the model grid take it whole (--grid: catalog.grid_spec), not --sizes/--replicates/--init."""
    from adtransfer.cli import build_parser

    for name, sub in _steps(build_parser()).items():
        flags = {flag for action in sub._actions for flag in action.option_strings}
        assert not flags & {"--out-dir", "--model-dir", "--tables-dir"}, name
        if name in ("tables", "explanations", "explain-figure", "figure"):
            assert "--grid" in flags and not flags & {"--sizes", "--replicates", "--init"}, name


def test_a_step_alone_parses_as_in_the_whole_parser():
    """main builds only the invoked step's parser (build_parser(only=...)): each step's arguments must be the same
    as in the whole parser, and a name that is not a step gets the whole parser (its error lists every step)."""
    from adtransfer.cli import build_parser

    def kind(action):  # `type` closures such as _triple's are made per parser: compare them by name
        return getattr(action.type, "__qualname__", action.type)

    def signature(sub):
        return [(a.dest, tuple(a.option_strings), a.required, a.default, a.nargs, kind(a)) for a in sub._actions]

    whole = _steps(build_parser())
    assert len(whole) > 10
    for name, sub in whole.items():
        alone = _steps(build_parser(only=name))
        assert list(alone) == [name]
        assert signature(alone[name]) == signature(sub), name
        assert alone[name].get_default("func") is sub.get_default("func")
    assert list(_steps(build_parser(only="prepocess"))) == list(whole)


def test_a_grid_figure_without_the_grid_is_refused(tmp_path):
    from adtransfer.cli import main

    assert main(["figure", "roc", "--role", "ecd", "--out", str(tmp_path / "roc.png")]) == 2
