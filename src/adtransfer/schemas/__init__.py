"""The JSON schemas (written as YAML) of the config, the participants table and the bundle manifest.

They ship inside the package (read through importlib.resources), so an installed adtransfer validates as a clone
does; the Snakefile validates the config against the same file."""

from __future__ import annotations

import functools
from importlib.resources import files

import yaml


@functools.lru_cache(maxsize=8)
def load_schema(name: str) -> dict:
    """The schema `{name}.schema.yaml` of this folder, e.g. "participants"."""
    return yaml.safe_load(files(__package__).joinpath(f"{name}.schema.yaml").read_text())
