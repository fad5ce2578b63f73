"""Both shipped configs validate against the schema; the schema catches typical mistakes."""

import copy

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from workflow_helpers import ROOT

SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text())


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_validate(name):
    validate(load(name), SCHEMA)


def test_paper_config_holds_the_papers_numbers():
    cfg = load("paper.yaml")
    fdg, ecd = cfg["cohorts"]["fdg"]["synthetic"], cfg["cohorts"]["ecd"]["synthetic"]
    assert fdg["n_ad"] - cfg["splits"]["fdg_test"]["AD"] == 511  # pre-training pool AD
    assert fdg["n_nc"] - cfg["splits"]["fdg_test"]["NC"] == 489  # pre-training pool NC
    assert cfg["splits"]["fdg_test"] == {"AD": 118, "NC": 149}
    assert (ecd["n_ad"], ecd["n_nc"]) == (113, 134)
    assert cfg["splits"]["ecd_test"] == {"AD": 22, "NC": 28}
    assert cfg["splits"]["pretrain_sizes"] == [100, 200, 400, 800, 1000]
    assert cfg["mosaic"]["size"] == 380
    assert cfg["train"]["learning_rate"] == 5e-7 and cfg["train"]["batch_size"] == 8


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c["mosaic"].update(size=97),  # not a multiple of 4
        lambda c: c["mosaic"].update(size=64),  # below Inception v3's 75 px
        lambda c: c.update(unknown_key=1),  # typo at top level
        lambda c: c["cohorts"]["fdg"].update(modality="mri"),
        lambda c: c["cohorts"].update({"bad name": {"modality": "fdg_pet"}}),
        lambda c: c["crop"].update(shape=[95, 95]),
        lambda c: c["cohorts"]["fdg"]["synthetic"].update(effect_pattern="blobs"),
        lambda c: c["train"].update(mmse_init="imagenet"),
    ],
)
def test_schema_rejects(mutate):
    cfg = copy.deepcopy(load("config.yaml"))
    mutate(cfg)
    with pytest.raises(WorkflowError):
        validate(cfg, SCHEMA)
