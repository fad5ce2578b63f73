"""Checks of a schema-valid config that JSON Schema cannot express (relations between values). No TensorFlow."""

from __future__ import annotations

from adtransfer.catalog import comparisons, explained, grid_from_spec, grid_spec, schedule, stage_of


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
            ("train.ecd_stage", next((m for m in models if stage_of(m) == "ecd_stage"), None)),
            ("train.mmse_stage", next((m for m in models if stage_of(m) == "mmse_stage"), None)),
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
