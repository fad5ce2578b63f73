"""Running CLI steps in a fresh interpreter, to check what a step imports (a job pays every import it makes)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Sequence

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
