"""The command line's process entry: `python -m adtransfer ...` and the `adtransfer` console script (pyproject)."""

import sys


def main() -> int:
    # nibabel imports pydicom (and through it requests, urllib3, PIL plugins), ~0.2 s CPU in every per-subject job,
    # only to parse NIfTI DICOM header extensions, which no step reads (DICOM series are converted by dcm2niix).
    # A None entry makes `import pydicom` fail fast and nibabel keeps such extensions as raw bytes. Set here, in
    # the command's own process only: library imports (and pytest, which imports pydicom) are left alone.
    sys.modules.setdefault("pydicom", None)
    from adtransfer.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
