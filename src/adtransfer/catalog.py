"""The model grid by name: which cohort, task and split set each model uses, and how tables label it.

One place for the naming convention the workflow (common.smk) and the report share:
    results/models/{name}/       results/predictions/{name}.tsv       results/metrics/{name}.json
CNNs: fdg/n{size}, ecd/from_fdg_n{size}, ecd/scratch, mmse/fdg, mmse/ecd_from_fdg.
ROI baselines (one per training set a CNN uses): roi/fdg/n{size}, roi/ecd/nall, roi/mmse/fdg, roi/mmse/ecd.
"""

from __future__ import annotations

from dataclasses import dataclass


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

    @property
    def classify(self) -> bool:
        return self.task == "classify"


def grid(sizes: list[int], mmse_init: str = "classifier") -> list[Model]:
    """mmse_init: "classifier" (the paper, Fig. 5: the FDG MMSE model fine-tunes the FDG classifier of the largest
    pre-training size) or "init" (it starts from `train.init` like a classifier does)."""
    models = []
    for s in sizes:
        models.append(Model(f"fdg/n{s}", "fdg", "classify", f"n{s}", "cnn", f"Inception v3, FDG {s}", s))
        models.append(Model(f"roi/fdg/n{s}", "fdg", "classify", f"n{s}", "roi", f"ROI logistic, FDG {s}", s))
    for s in sizes:
        models.append(
            Model(
                f"ecd/from_fdg_n{s}",
                "ecd",
                "classify",
                "nall",
                "cnn",
                f"Inception v3, FDG {s} pre-trained",
                s,
                f"fdg/n{s}",
            )
        )
    models.append(Model("ecd/scratch", "ecd", "classify", "nall", "cnn", "Inception v3, from scratch"))
    models.append(Model("roi/ecd/nall", "ecd", "classify", "nall", "roi", "ROI logistic"))
    mmse_parent = f"fdg/n{max(sizes)}" if sizes and mmse_init == "classifier" else None
    models.append(
        Model("mmse/fdg", "fdg", "mmse", "mmse_set", "cnn", "Inception v3 MMSE, FDG", None, mmse_parent)
    )
    models.append(
        Model(
            "mmse/ecd_from_fdg",
            "ecd",
            "mmse",
            "mmse_set",
            "cnn",
            "Inception v3 MMSE, ECD (FDG pre-trained)",
            None,
            "mmse/fdg",
        )
    )
    models.append(Model("roi/mmse/fdg", "fdg", "mmse", "mmse_set", "roi", "ROI ridge MMSE, FDG"))
    models.append(Model("roi/mmse/ecd", "ecd", "mmse", "mmse_set", "roi", "ROI ridge MMSE, ECD"))
    return models


def by_name(sizes: list[int], mmse_init: str = "classifier") -> dict[str, Model]:
    return {m.name: m for m in grid(sizes, mmse_init)}
