"""The command line's process entry: `python -m adtransfer ...` and the `adtransfer` console script (pyproject)."""

import sys


def _defer_urllib_request() -> None:
    """Load `urllib.request` on first use instead of at `import nibabel`.

    nibabel imports it (for `from_url`, which no step calls) and with it http.client, email and ssl: ~0.03 CPU s of
    a ~0.3 s per-subject job. The standard library's LazyLoader makes the module on first attribute access. It is
    also bound on the `urllib` package, because `from urllib import request` then takes it without touching it;
    an `import urllib.request` statement elsewhere loads it (the import system reads its __spec__), as it should.
    Before Python 3.13, LazyLoader has no lock: the first use must not come from two threads at once. No step's
    does (Keras loads it at import, in the main thread; nipype runs its nodes in the main thread).
    """
    import importlib.util
    import urllib

    if "urllib.request" in sys.modules:
        return
    spec = importlib.util.find_spec("urllib.request")
    module = importlib.util.module_from_spec(spec)
    importlib.util.LazyLoader(spec.loader).exec_module(module)
    sys.modules["urllib.request"] = module
    urllib.request = module


def main() -> int:
    # nibabel imports pydicom (and through it requests, urllib3, PIL plugins), ~0.2 s CPU in every per-subject job,
    # only to parse NIfTI DICOM header extensions, which no step reads (DICOM series are converted by dcm2niix).
    # A None entry makes `import pydicom` fail fast and nibabel keeps such extensions as raw bytes. Set here, in
    # the command's own process only: library imports (and pytest, which imports pydicom) are left alone.
    sys.modules.setdefault("pydicom", None)
    _defer_urllib_request()
    from adtransfer.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
