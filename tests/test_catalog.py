"""The model catalog: one description of the grid, and the workflow trains exactly what it says."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from workflow_helpers import ROOT, snakemake, train_jobs

from adtransfer import catalog
from adtransfer.catalog import POOL_SET, grid, grid_from_spec, grid_spec, is_classification_set, size_set


@pytest.mark.parametrize("replicates", [1, 3, [5, 9]])
@pytest.mark.parametrize("mmse_init", ["classifier", "init"])
def test_grid_is_consistent(replicates, mmse_init):
    models = grid([4, 8], replicates, "random", mmse_init)
    names = [m.name for m in models]
    assert len(names) == len(set(names))
    by_name = {m.name: m for m in models}
    for m in models:
        # a parent is a CNN of the same grid, of the same task family, listed before its child (trained first)
        if m.pretrained:
            parent = by_name[m.pretrained]
            assert parent.kind == "cnn" and names.index(parent.name) < names.index(m.name)
        assert is_classification_set(m.set_column) == m.classify
        # every CNN has the ROI baseline trained on the same subjects beside it
        if m.kind == "cnn":
            assert any(
                b.kind == "roi" and (b.role, b.task, b.set_column) == (m.role, m.task, m.set_column) for b in models
            ), m.name
    assert by_name["ecd/from_fdg_n8"].pretrained == "fdg/n8"
    assert by_name["mmse/fdg"].pretrained == ("fdg/n8" if mmse_init == "classifier" else None)
    n = catalog.replicate_count(replicates)
    # only the ECD stage is replicated: the fine-tunes and the comparator, n times each
    replicated = [m for m in models if m.replicated]
    assert sorted({m.first for m in replicated}) == ["ecd/from_fdg_n4", "ecd/from_fdg_n8", "ecd/scratch"]
    assert len(replicated) == 3 * n
    seeds = {catalog.replicate_seed(42, replicates, m.replicate) for m in replicated if m.first == "ecd/scratch"}
    assert len(seeds) == n


def test_split_column_names_have_one_owner():
    assert size_set(100) == "n100" and is_classification_set("n100") and is_classification_set(POOL_SET)
    assert not is_classification_set("mmse_set") and not is_classification_set("n") and not is_classification_set("nx")


def test_grid_spec_from_config_round_trips_as_json():
    cfg = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    spec = grid_spec(cfg)
    assert spec["sizes"] == cfg["splits"]["pretrain_sizes"] and spec["mmse_init"] == cfg["train"]["mmse_init"]
    assert [m.name for m in grid_from_spec(json.dumps(spec))] == [m.name for m in grid_from_spec(spec)]


def test_workflow_trains_exactly_the_catalog_with_its_parents(tmp_path):
    """The one training rule takes every CNN, its split column and its parent from the catalog."""
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    expected = {m.name: m for m in grid_from_spec(grid_spec(cfg)) if m.kind == "cnn"}
    proc = snakemake(tmp_path, ROOT / "config" / "config.yaml", "-n", "-p")
    jobs = train_jobs(proc.stdout)
    assert sorted(jobs) == sorted(expected)
    for name, block in jobs.items():
        pretrained = re.search(r"--pretrained (\S+)", block)
        parent = expected[name].pretrained
        assert (pretrained[1] if pretrained else None) == (f"results/models/{parent}/model.keras" if parent else None)
        assert f"--set {expected[name].set_column} " in block


@pytest.mark.parametrize("mmse_init", ["classifier", "init"])
def test_stages_are_the_ecd_stage_and_the_mmse_fine_tunes(mmse_init):
    """ECD-stage models (both arms, every replicate) take train.ecd_stage; MMSE models that fine-tune a trained
    network take train.mmse_stage; a from-init FDG MMSE model (mmse_init init) keeps the plain keys, like FDG
    pre-training, since a random start needs the plain schedule's later early stopping."""
    stages = {m.name: catalog.stage_of(m) for m in grid([4, 8], 2, mmse_init=mmse_init) if m.kind == "cnn"}
    assert {n for n, s in stages.items() if s == "ecd_stage"} == {
        "ecd/from_fdg_n4",
        "ecd/from_fdg_n8",
        "ecd/scratch",
        "ecd/from_fdg_n4_r1",
        "ecd/from_fdg_n8_r1",
        "ecd/scratch_r1",
    }
    mmse = {"mmse/fdg", "mmse/ecd_from_fdg"} if mmse_init == "classifier" else {"mmse/ecd_from_fdg"}
    assert {n for n, s in stages.items() if s == "mmse_stage"} == mmse
    train = {"epochs": 9, "patience": 4, "mmse_stage": {"epochs": 5}}
    assert catalog.schedule(next(m for m in grid([8], mmse_init=mmse_init) if m.name == "mmse/fdg"), train) == (
        {"epochs": 5, "patience": 4} if mmse_init == "classifier" else {"epochs": 9, "patience": 4}
    )
