"""The conda environments (for `--sdm conda` users) mirror pyproject.toml, and every job-running rule names one."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml
from workflow_helpers import ROOT

# conda-forge's names: matplotlib without Qt; the isal bindings
CONDA_NAMES = {"matplotlib-base": "matplotlib", "python-isal": "isal"}
NOT_IN_JOBS = {"snakemake"}  # the driver, not a job dependency


def _requirement(spec: str) -> tuple[str, str]:
    name, bound = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(.*)$", spec).groups()
    return CONDA_NAMES.get(name.lower(), name.lower()), bound.replace(" ", "")


def _pyproject() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(_requirement(d) for d in deps)


def _env(name: str) -> dict[str, str]:
    env = yaml.safe_load((ROOT / "envs" / f"{name}.yaml").read_text())
    assert env["channels"][0] == "conda-forge"
    return dict(_requirement(d) for d in env["dependencies"] if isinstance(d, str) and not d.startswith("python "))


@pytest.mark.parametrize("name", ["data", "train", "report"])
def test_env_parses_and_matches_pyproject_bounds(name):
    env, project = _env(name), _pyproject()
    unknown = set(env) - set(project)
    assert not unknown, f"envs/{name}.yaml names packages pyproject.toml lacks: {unknown}"
    for pkg, bound in env.items():
        assert bound == project[pkg], f"envs/{name}.yaml {pkg} {bound} != pyproject {project[pkg]}"


def test_envs_together_cover_pyproject():
    covered = set(_env("data")) | set(_env("train")) | set(_env("report"))
    assert set(_pyproject()) - NOT_IN_JOBS == covered
    assert "tensorflow" in _env("train") and "tensorflow" not in _env("data") | _env("report")


@pytest.mark.parametrize("name", ["data", "train", "report"])
def test_an_env_that_reads_nifti_can_write_it(name):
    """io.save_nifti writes every NIfTI output (synthetic scans, preprocessed volumes, explanation and coefficient
    maps) and compresses with isal: an environment with nibabel needs it (report: the ROI baseline's map)."""
    env = _env(name)
    assert "nibabel" not in env or "isal" in env, f"envs/{name}.yaml has nibabel but not python-isal"


def test_every_job_rule_names_a_conda_env():
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for name, body in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |^def |\Z)", smk.read_text(), re.S | re.M):
            if "shell:" in body or "script:" in body:
                m = re.search(r'conda:\s*\n\s*"\.\./\.\./envs/(\w+)\.yaml"', body)
                assert m, f"{smk.name}: rule {name} has no conda: environment"
                assert (ROOT / "envs" / f"{m.group(1)}.yaml").exists()
