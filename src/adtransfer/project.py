"""Where the project's own files live: the package is used from a clone of the repository."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "workflow" / "schemas"


@functools.lru_cache(maxsize=8)
def load_schema(name: str) -> dict:
    """A JSON schema (written as YAML) from workflow/schemas/, e.g. "participants"."""
    return yaml.safe_load((SCHEMAS / f"{name}.schema.yaml").read_text())
