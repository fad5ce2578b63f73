"""Running CLI steps in a fresh interpreter, to check what a step imports (a job pays every import it makes)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NO_TENSORFLOW = ("tensorflow",)

_CODE = (
    "import json, sys; from adtransfer.cli import main\n"
    "for argv in json.loads(sys.argv[1]):\n"
    "    assert main(argv) == 0, argv\n"
    "imported = sorted(set(json.loads(sys.argv[2])) & set(sys.modules))\n"
    "assert not imported, f'imported {imported}'\n"
)


def run_steps_without(
    steps: Sequence[Sequence[str]], modules: Iterable[str] = NO_TENSORFLOW, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run `adtransfer.cli.main` on each argv of `steps` in one new Python process; it exits non-zero (the reason
    in stderr) when a step fails or when any of `modules` was imported by the end."""
    args = [json.dumps([[str(a) for a in argv] for argv in steps]), json.dumps(sorted(modules))]
    return subprocess.run([sys.executable, "-c", _CODE, *args], capture_output=True, text=True, timeout=timeout)


def run_command_importing(
    entry: str, args: Sequence[str], timeout: float = 300
) -> tuple[subprocess.CompletedProcess, set]:
    """Run `adtransfer <args>` in a new interpreter under `-X importtime`, as a user or a rule starts it: entry
    "module" is `python -m adtransfer`, "script" calls the `adtransfer` console script's entry point as written in
    pyproject.toml. Returns the finished process and the name of every module it imported or tried to (an import
    that failed at once, such as of a None entry in sys.modules, is listed too; no `--log` in `args`: the import
    lines go to stderr)."""
    if entry == "module":
        start = ["-m", "adtransfer"]
    else:
        scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
        module, function = scripts["adtransfer"].split(":")
        start = ["-c", f"import sys; from {module} import {function}; sys.exit({function}())"]
    return run_importing([*start, *map(str, args)], timeout)


def run_importing(python_args: Sequence[str], timeout: float = 300) -> tuple[subprocess.CompletedProcess, set]:
    """`python -X importtime *python_args`: the finished process and the modules it imported or tried to."""
    cmd = [sys.executable, "-X", "importtime", *python_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    names = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return proc, names - {"imported package"}
