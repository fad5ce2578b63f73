"""Screenshot the summary page in headless Chromium (Debian's `chromium`) at a laptop's width, to look at it.

    python bench/summary_screenshot.py [results/summary.html] [summary.png] [--width 1366] [--height 2400]

Prints the screenshot's path; asserts nothing (tests/results/test_report.py checks the rendering).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", nargs="?", default="results/summary.html")
    parser.add_argument("out", nargs="?", default="summary.png")
    parser.add_argument("--width", type=int, default=1366)
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        print("chromium is not installed (Debian: apt-get install chromium)", file=sys.stderr)
        return 1
    out = Path(args.out).resolve()
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={args.width},{args.height}",
        f"--screenshot={out}",
        Path(args.page).resolve().as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=180)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
