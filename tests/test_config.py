"""Both shipped configs validate against the schema; the schema catches typical mistakes."""

import copy

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from workflow_helpers import ROOT, snakemake, write_config

from adtransfer import modalities
from adtransfer.configuration import config_problems

SCHEMA = str(ROOT / "src" / "adtransfer" / "schemas" / "config.schema.yaml")


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
        lambda c: c["splits"].update(mmse_min={"fdg": 15, "spect": 0}),  # unknown role
        lambda c: c["splits"].update(mmse_min=31),
        lambda c: c["train"].update(replicates=0),
        lambda c: c["train"].update(replicates=[1, 1]),  # a seed twice is one replicate
        lambda c: c.update(comparisons={"primary": ["best_on_test"]}),  # only the pre-specified rules exist
        lambda c: c.update(comparisons={"primary": [{"a": "ecd/scratch"}]}),
        lambda c: c["cohorts"]["fdg"]["synthetic"].update(effect_pattern="blobs"),
        lambda c: c["train"].update(mmse_init="imagenet"),
        lambda c: c["train"].update(fc_units={"hmpao_spect": 64}),  # a modality the registry does not know
        lambda c: c["train"].update(intensity_range={"fdg": [0, 3]}),  # an alias is not a config name
        lambda c: c["train"].update(fc_units={"fdg_pet": 0}),
    ],
)
def test_schema_rejects(mutate):
    cfg = copy.deepcopy(load("config.yaml"))
    mutate(cfg)
    with pytest.raises(WorkflowError):
        validate(cfg, SCHEMA)


@pytest.mark.parametrize("value", [15, {"fdg": 15, "ecd": 0}, {"fdg": 15}])
def test_mmse_min_is_a_number_or_per_role(value):
    cfg = copy.deepcopy(load("config.yaml"))
    cfg["splits"]["mmse_min"] = value
    validate(cfg, SCHEMA)


def test_shipped_configs_have_no_problems():
    assert config_problems(load("config.yaml")) == [] and config_problems(load("paper.yaml")) == []


def test_non_square_crop_is_refused_with_a_clear_message(tmp_path):
    """The mosaic tiles are square and the inverse mosaic maps them back onto the crop: x != y breaks both.
    The schema alone cannot compare two values, so the workflow checks it before any job."""
    cfg = copy.deepcopy(load("config.yaml"))
    cfg["crop"]["shape"] = [95, 80, 48]
    assert any(p.startswith("crop.shape [95, 80, 48]: x and y must be equal") for p in config_problems(cfg))
    cfg = {
        "seed": 1,
        "mosaic": {"size": 96},
        "crop": {"shape": [95, 80, 48]},
        "cohorts": {"fdg": {"modality": "fdg_pet", "synthetic": {"n_ad": 2, "n_nc": 2}}},
    }
    proc = snakemake(tmp_path, write_config(tmp_path / "c.yaml", cfg), "-n", check=False)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "crop.shape [95, 80, 48]: x and y must be equal" in err
    assert "Traceback" not in err


def test_comparison_naming_an_unknown_model_is_refused():
    cfg = copy.deepcopy(load("config.yaml"))
    cfg["comparisons"] = {"primary": [{"a": "ecd/from_fdg_n999", "b": "ecd/scratch"}]}
    validate(cfg, SCHEMA)
    assert any("no model 'ecd/from_fdg_n999'" in p for p in config_problems(cfg))
    cfg["comparisons"] = {"primary": [{"a": "fdg/n80", "b": "ecd/scratch"}]}  # different test subjects
    assert any("not scored on the same test subjects" in p for p in config_problems(cfg))


def test_schema_modalities_are_the_registrys():
    """Adding a modality to the registry without the schema (or the reverse) fails here, not in a user's run."""
    schema = yaml.safe_load(open(SCHEMA))
    assert schema["definitions"]["modality"]["enum"] == list(modalities.MODALITIES)


def test_modality_registry_resolves_aliases_and_names_the_known_ones():
    assert modalities.get("FDG").name == "fdg_pet" and modalities.get("ecd_spect").name == "ecd_spect"
    with pytest.raises(ValueError, match="known: fdg_pet .*ecd_spect"):
        modalities.get("hmpao")
    # config overrides win, else the registry's defaults (the paper's head widths)
    assert modalities.fc_units("ecd_spect", {"fdg_pet": 16}) == 128
    assert modalities.fc_units("fdg_pet", {"fdg_pet": 16}) == 16
    assert modalities.intensity_range("ecd_spect", None) == [-4.0, 4.0]


def test_explain_models_must_be_classifiers_of_the_grid():
    """explain.models names catalog classifiers of replicate 0: a typo, an MMSE model or a further replicate is
    refused before anything runs, naming the key and the choices."""
    cfg = load("config.yaml")
    assert config_problems(cfg) == []
    for wrong in ("ecd/from_fdg_n999", "mmse/fdg", "ecd/scratch_r1"):
        cfg["explain"]["models"] = ["fdg/n160", wrong]
        (problem,) = config_problems(cfg)
        assert problem.startswith(f"explain.models ['{wrong}']") and "ecd/scratch" in problem


@pytest.mark.parametrize(
    "train, where",
    [
        ({"epochs": 8, "early_stopping_start": 8}, "train:"),
        ({"ecd_stage": {"epochs": 6, "early_stopping_start": None}}, "train.ecd_stage:"),
        ({"mmse_stage": {"epochs": 5, "early_stopping_start": None}}, "train.mmse_stage:"),
    ],
)
def test_early_stopping_that_could_never_act_is_refused(train, where):
    """early_stopping_start at or beyond the epochs (plain, or as a stage resolves it: its epochs with the plain
    start) would keep the last epoch's weights while metrics.json reports a best epoch."""
    cfg = copy.deepcopy(load("config.yaml"))
    cfg["train"].update(train)
    start = cfg["train"]["early_stopping_start"]
    problems = config_problems(cfg)
    assert any(p.startswith(where) and f"early_stopping_start {start} >=" in p for p in problems), problems
    assert len(problems) == 1, problems
