"""What a config means beyond its schema: checks JSON Schema cannot express (relations between values), and values
the workflow derives from the config when it parses. Light on purpose: no TensorFlow, pandas, scikit-learn or
nibabel (every Snakemake process imports it)."""

from __future__ import annotations

from adtransfer.catalog import (
    SCHEDULE_KEYS,
    STAGES,
    comparisons,
    explained,
    grid_from_spec,
    grid_spec,
    schedule,
    stage_of,
)


def config_problems(config: dict) -> list[str]:
    """Every problem found, each one sentence naming the key; [] when the config is usable."""
    problems = []
    shape = config.get("crop", {}).get("shape", [95, 95, 48])
    if shape[0] != shape[1]:
        problems.append(
            f"crop.shape {list(shape)}: x and y must be equal (square tiles); the 4x4 mosaic scales each axial "
            f"slice to a square tile and Grad-CAM maps tiles back to the crop, so a {shape[0]}x{shape[1]} slice "
            "would be distorted"
        )
    if config.get("splits"):
        models = grid_from_spec(grid_spec(config))
        try:
            comparisons(config.get("comparisons"), models)
        except ValueError as exc:
            problems.append(str(exc))
        train = config.get("train") or {}
        for where, model in (
            ("train", next((m for m in models if m.kind == "cnn" and stage_of(m) is None), None)),
            *((f"train.{key}", next((m for m in models if stage_of(m) == key), None)) for key in STAGES),
        ):
            s = schedule(model, train) if model else {}
            if "epochs" in s and s.get("early_stopping_start", 0) >= s["epochs"]:
                problems.append(
                    f"{where}: early_stopping_start {s['early_stopping_start']} >= epochs {s['epochs']}: early "
                    "stopping could never choose an epoch, and the last epoch's weights would be kept unreported"
                )
        explainable = [m.name for m in explained(models)]
        unknown = [n for n in (config.get("explain") or {}).get("models") or [] if n not in explainable]
        if unknown:
            problems.append(
                f"explain.models {unknown}: not CNN classifiers of this grid (replicate 0); choose from {explainable}"
            )
    return problems


def merged_schedule_problems(default: dict, overrides: dict[str, dict], default_name: str) -> list[str]:
    """Snakemake merges each --configfile over the workflow's own config file (`default`, the demo's) key by key:
    a user file that sets the plain schedule (train.epochs, patience, early_stopping_start) but not a stage would
    silently get the demo's stage schedule for that stage's models. One problem per such file and stage."""
    problems = []
    stages = {k: v for k, v in ((default or {}).get("train") or {}).items() if k in STAGES and v}
    for name, cfg in overrides.items():
        train = (cfg or {}).get("train") or {}
        plain = [k for k in SCHEDULE_KEYS if k in train]
        for stage, value in stages.items():
            if plain and stage not in train:
                problems.append(
                    f"{name}: sets train.{', train.'.join(plain)} but not train.{stage}, so {default_name}'s "
                    f"train.{stage} {value} would apply to its models (Snakemake merges --configfile over that file); "
                    f"set train.{stage} in {name} (null: your plain keys), or run with --replace-workflow-config"
                )
    return problems


# --- values the workflow derives from the config when it parses -------------------------------------------------


def subject_ids(name: str, n: int) -> list[str]:
    """Subject ids of a synthetic cohort: known from the config alone, so the DAG needs no checkpoint."""
    return [f"{name}{i:04d}" for i in range(1, n + 1)]


def mmse_min_for(splits_config: dict, role: str) -> float:
    """The MMSE floor of one cohort role ("fdg" or "ecd") from config `splits.mmse_min`: a number (every
    cohort, the old form) or a mapping {fdg: 15, ecd: 0} (a role it does not name has no floor)."""
    value = splits_config.get("mmse_min", 0)
    if isinstance(value, dict):
        return float(value.get(role, 0))
    return float(value)
