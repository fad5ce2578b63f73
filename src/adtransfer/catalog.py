"""The model grid by name: which cohort, task and split set each model uses, and how tables label it.

One place for the model names the workflow (common.smk) and the report share; where each model's files live is
adtransfer.layout's (results/models/{name}/, results/predictions/{name}.tsv, ...).
CNNs: fdg/n{size}, ecd/from_fdg_n{size}, ecd/scratch, mmse/fdg, mmse/ecd_from_fdg.
ROI baselines (one per training set a CNN uses): roi/fdg/n{size}, roi/ecd/nall, roi/mmse/fdg, roi/mmse/ecd.
Replicates (config train.replicates): the ECD stage (fine-tunes and the comparator without FDG stage) is trained
once per replicate seed. Replicate 0 keeps the plain names; replicate r >= 1 adds a suffix: ecd/scratch_r1,
ecd/from_fdg_n160_r2. FDG pre-training, the MMSE models and the ROI baselines are single (replicate 0).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

REPLICATE_SEED_STEP = 1000  # replicate r of a count trains with seed + 1000 r

# The split table's training-set columns (learning/splits.py writes them; every model names one as set_column).
POOL_SET = "nall"  # a cohort without a size study (ECD): every AD/NC subject outside the test set
MMSE_SET = "mmse_set"  # subjects with an MMSE score (regression)


def size_set(size: int) -> str:
    """The nested pre-training subset of `size` subjects."""
    return f"n{size}"


def is_classification_set(column: str) -> bool:
    """A split column holding one classification training set (a size subset or the pool)."""
    return column == POOL_SET or re.fullmatch(r"n\d+", column) is not None


@dataclass(frozen=True)
class Model:
    name: str
    role: str  # "fdg" (pre-training cohort) or "ecd" (target cohort)
    task: str  # classify | mmse
    set_column: str  # split column holding its train/val subjects
    kind: str  # cnn | roi
    label: str
    size: int | None = None  # FDG pre-training size behind it
    pretrained: str | None = None
    replicate: int = 0
    base: str | None = None  # replicate 0's name (None: this is replicate 0)
    replicated: bool = False  # in the replicated ECD stage: trains with its replicate's seed (replicate 0 too)

    @property
    def classify(self) -> bool:
        return self.task == "classify"

    @property
    def first(self) -> str:
        """The name of replicate 0 of this model."""
        return self.base or self.name


def replicate_count(replicates: int | list[int] | None) -> int:
    """Config train.replicates (a count or a list of seeds) as a count."""
    if replicates is None:
        return 1
    return len(replicates) if isinstance(replicates, list) else int(replicates)


def replicate_seed(seed: int, replicates: int | list[int] | None, replicate: int) -> int:
    """The training seed of one replicate: the r-th of a seed list, else seed + 1000 r (replicate 0: the seed)."""
    if isinstance(replicates, list):
        return int(replicates[replicate])
    return int(seed) + REPLICATE_SEED_STEP * replicate


def replicate_name(name: str, replicate: int) -> str:
    return name if replicate == 0 else f"{name}_r{replicate}"


def comparator_label(init: str) -> str:
    """The ECD model without FDG pre-training: from scratch only when its weights start random."""
    return "Inception v3, from scratch" if init == "random" else "Inception v3, ImageNet only (no FDG stage)"


def _ecd_stage(sizes: list[int], init: str) -> list[Model]:
    """The replicated stage: ECD fine-tuned from each FDG size, and the ECD model without FDG pre-training."""
    models = [
        Model(
            f"ecd/from_fdg_n{s}",
            "ecd",
            "classify",
            POOL_SET,
            "cnn",
            f"Inception v3, FDG {s} pre-trained",
            s,
            f"fdg/n{s}",
            replicated=True,
        )
        for s in sizes
    ]
    models.append(Model("ecd/scratch", "ecd", "classify", POOL_SET, "cnn", comparator_label(init), replicated=True))
    return models


def _replicas(model: Model, replicates: int) -> list[Model]:
    return [
        replace(
            model,
            name=replicate_name(model.name, r),
            label=f"{model.label} (replicate {r})",
            replicate=r,
            base=model.name,
        )
        for r in range(1, replicates)
    ]


def grid(
    sizes: list[int], replicates: int | list[int] | None = 1, init: str = "random", mmse_init: str = "classifier"
) -> list[Model]:
    """Every model: replicate 0 of each in the table order, then the further replicates of the ECD stage.

    mmse_init: "classifier" (the paper, Fig. 5: the FDG MMSE model fine-tunes the FDG classifier of the largest
    pre-training size) or "init" (it starts from `train.init` like a classifier does)."""
    models = []
    for s in sizes:
        models.append(Model(f"fdg/{size_set(s)}", "fdg", "classify", size_set(s), "cnn", f"Inception v3, FDG {s}", s))
        models.append(
            Model(f"roi/fdg/{size_set(s)}", "fdg", "classify", size_set(s), "roi", f"ROI logistic, FDG {s}", s)
        )
    ecd_stage = _ecd_stage(sizes, init)
    models += ecd_stage
    models.append(Model(f"roi/ecd/{POOL_SET}", "ecd", "classify", POOL_SET, "roi", "ROI logistic"))
    mmse_parent = f"fdg/n{max(sizes)}" if sizes and mmse_init == "classifier" else None
    models.append(Model("mmse/fdg", "fdg", "mmse", MMSE_SET, "cnn", "Inception v3 MMSE, FDG", None, mmse_parent))
    models.append(
        Model(
            "mmse/ecd_from_fdg",
            "ecd",
            "mmse",
            MMSE_SET,
            "cnn",
            "Inception v3 MMSE, ECD (FDG pre-trained)",
            None,
            "mmse/fdg",
        )
    )
    models.append(Model("roi/mmse/fdg", "fdg", "mmse", MMSE_SET, "roi", "ROI ridge MMSE, FDG"))
    models.append(Model("roi/mmse/ecd", "ecd", "mmse", MMSE_SET, "roi", "ROI ridge MMSE, ECD"))
    for m in ecd_stage:
        models += _replicas(m, replicate_count(replicates))
    return models


def grid_spec(config: dict) -> dict:
    """The config values the model grid depends on. The workflow builds its grid from them, and steps that read the
    grid (tables, figures) receive the same dict as `--grid JSON`, so the two can never disagree."""
    splits, train = config.get("splits") or {}, config.get("train") or {}
    return {
        "sizes": [int(s) for s in splits.get("pretrain_sizes", [])],
        "replicates": train.get("replicates", 1),
        "init": train.get("init", "random"),
        "mmse_init": train.get("mmse_init", "classifier"),
        # which CNN classifiers get Grad-CAM, occlusion and t-SNE (None: every classifier of replicate 0)
        "explain_models": (config.get("explain") or {}).get("models"),
    }


def grid_from_spec(spec: dict | str) -> list[Model]:
    """The grid of a `grid_spec` dict (or its JSON text, as steps receive it)."""
    spec = json.loads(spec) if isinstance(spec, str) else spec
    return grid(**{k: v for k, v in spec.items() if k != "explain_models"})


def explained_from_spec(spec: dict | str) -> list[Model]:
    """The explained CNN classifiers of a `grid_spec` (what the workflow runs Grad-CAM and occlusion on)."""
    spec = json.loads(spec) if isinstance(spec, str) else spec
    return explained(grid_from_spec(spec), spec.get("explain_models"))


# --- pre-specified comparisons (config `comparisons`) ----------------------------------------------------

DEFAULT_COMPARISONS = {
    "primary": ["transfer_largest"],
    "baseline": ["cnn_vs_roi"],
    "sizes": ["adjacent_sizes"],
    "mmse": ["mmse_cnn_vs_roi"],
}


def matching_baseline(m: Model, models: list[Model]) -> Model:
    """The ROI baseline trained on the same subjects as a CNN: same cohort role, task and split column."""
    return next(
        r for r in models if r.kind == "roi" and r.role == m.role and r.task == m.task and r.set_column == m.set_column
    )


def comparisons(spec: dict | None, models: list[Model]) -> dict[str, list[tuple[str, str]]]:
    """Each family's (a, b) model-name pairs (a is the model of interest), from the config's rules and pairs.
    Only replicate 0 takes part (further replicates are summarized apart). Unknown names raise ValueError."""
    spec = spec or DEFAULT_COMPARISONS
    first = [m for m in models if m.replicate == 0]
    names = {m.name: m for m in first}
    sizes = sorted({m.size for m in first if m.size is not None})
    cnns = [m for m in first if m.kind == "cnn"]
    rules = {
        "transfer_largest": [(f"ecd/from_fdg_n{sizes[-1]}", "ecd/scratch")] if sizes else [],
        "transfer_each": [(f"ecd/from_fdg_n{s}", "ecd/scratch") for s in sizes],
        "cnn_vs_roi": [(m.name, matching_baseline(m, first).name) for m in cnns if m.classify],
        "adjacent_sizes": [(f"fdg/n{b}", f"fdg/n{a}") for a, b in zip(sizes, sizes[1:], strict=False)],
        "mmse_cnn_vs_roi": [(m.name, matching_baseline(m, first).name) for m in cnns if not m.classify],
    }
    out: dict[str, list[tuple[str, str]]] = {}
    for family, items in spec.items():
        pairs: list[tuple[str, str]] = []
        for item in items:
            if isinstance(item, str):
                if item not in rules:
                    raise ValueError(f"comparisons.{family}: unknown rule {item!r} (known: {', '.join(rules)})")
                pairs += rules[item]
            else:
                pairs.append((item["a"], item["b"]))
        for a, b in pairs:
            for n in (a, b):
                if n not in names:
                    raise ValueError(
                        f"comparisons.{family}: no model {n!r} in this grid (replicate-0 names: {', '.join(names)})"
                    )
            if names[a].task != names[b].task or names[a].role != names[b].role:
                raise ValueError(f"comparisons.{family}: {a} and {b} are not scored on the same test subjects")
        out[family] = list(dict.fromkeys(pairs))
    return out


SCHEDULE_KEYS = ("epochs", "patience", "early_stopping_start")
STAGES = ("ecd_stage", "mmse_stage")  # config train keys of the stages with their own schedule (stage_of)


def stage_of(model: Model) -> str | None:
    """The config key of a CNN's own schedule: `ecd_stage` for the replicated ECD stage, `mmse_stage` for the MMSE
    models that fine-tune a trained network (with `mmse_init: init` the FDG one starts from the training init and
    keeps the plain keys); None: the plain keys."""
    if model.replicated:
        return "ecd_stage"
    return "mmse_stage" if model.kind == "cnn" and not model.classify and model.pretrained else None


def schedule(model: Model, train: dict) -> dict:
    """A CNN's epochs, patience and early-stopping start: config `train`, overridden key by key by its stage's
    schedule (`stage_of`). The replicated ECD stage's arms (fine-tunes from each FDG size and the model without FDG
    stage) share one schedule, so the transfer comparison differs in the starting point and learning rate only."""
    plain = {k: train[k] for k in SCHEDULE_KEYS if k in train}
    key = stage_of(model)
    stage = (train.get(key) or {}) if key else {}
    return {**plain, **{k: stage[k] for k in SCHEDULE_KEYS if stage.get(k) is not None}}


def explained(models: list[Model], names: list[str] | None = None) -> list[Model]:
    """The CNN classifiers that get Grad-CAM, occlusion and t-SNE, in catalog order: the named ones (config
    explain.models), by default every classifier of replicate 0 (further replicates serve the statistics)."""
    candidates = [m for m in models if m.kind == "cnn" and m.classify and m.replicate == 0]
    return candidates if names is None else [m for m in candidates if m.name in names]
