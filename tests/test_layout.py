"""adtransfer.layout: every kind of file of the results tree has its own path, and wildcards pass through."""

from __future__ import annotations

import pytest

from adtransfer import layout
from adtransfer.catalog import grid


def every_path(root: str = "results") -> dict[str, str]:
    """One path per kind of file (what), for the names of a small grid: no two may be the same."""
    paths: dict[str, str] = {}

    def add(what: str, path: str) -> None:
        assert path not in paths.values(), f"{what} and {next(k for k, v in paths.items() if v == path)}: {path}"
        paths[what] = path

    for cohort in ("fdg", "ecd"):
        for kind in layout.SYNTH_FILES:
            add(f"synth {kind} {cohort}", layout.synth_file(cohort, kind, root))
        add(f"synth scan {cohort}", layout.synth_scan(cohort, f"{cohort}0001", root))
        add(f"cohort {cohort}", layout.cohort_table(cohort, root))
        for kind in ("nii", "sidecar", "qc", "registration_qc"):
            add(f"preproc {kind} {cohort}", layout.preprocessed(cohort, f"{cohort}0001", kind, root))
        add(f"registration qc {cohort}", layout.registration_qc(cohort, root=root))
        add(f"registration included {cohort}", layout.registration_qc(cohort, included=True, root=root))
        add(f"cache {cohort}", layout.cache(cohort, root))
        add(f"splits {cohort}", layout.splits(cohort, root))
    for m in grid([8, 16], 2):
        name = m.name
        files = ("model.json",) if m.kind == "roi" else [f for f in layout.MODEL_FILES if f != "model.json"]
        for f in files:
            add(f"{f} {name}", layout.model_file(name, f, root))
        add(f"predictions {name}", layout.predictions(name, root))
        add(f"features {name}", layout.features(name, root))
        add(f"test metrics {name}", layout.test_metrics(name, root))
        for f in layout.EXPLAIN_FILES:
            add(f"{f} {name}", layout.explain(name, f, root))
        for kind in ("tsne", "gradcam_examples", "gradcam_means", "occlusion", "explain", "roi_coefficients"):
            add(f"figure {kind} {name}", layout.model_figure(kind, name, root))
        for step in ("train", "evaluate", "bundle"):
            add(f"log {step} {name}", layout.log(step, name, root))
            add(f"benchmark {step} {name}", layout.benchmark(step, name, root))
    for name in layout.GRID_FIGURES:
        add(f"figure {name}", layout.figure(name, root))
    for name in [*layout.TABLES, "explanations"]:
        for ext in ("tsv", "md"):
            add(f"table {name}.{ext}", layout.table(name, ext, root))
    add("findings", layout.findings(root))
    add("summary page", layout.summary_page(root))
    return paths


def test_no_two_kinds_of_file_share_a_path():
    paths = every_path()
    assert all(p.startswith("results/") for p in paths.values())
    assert len(set(paths.values())) == len(paths)


def test_the_root_is_the_only_prefix():
    moved = every_path("/tmp/elsewhere")
    assert sorted(p.removeprefix("/tmp/elsewhere/") for p in moved.values()) == sorted(
        p.removeprefix("results/") for p in every_path().values()
    )


def test_paths_are_those_of_the_results_tree():
    """The tree as the workflow has always written it (results must not move)."""
    assert layout.synth_file("fdg", "truth_json") == "results/synth/fdg/ground_truth.json"
    assert layout.preprocessed("ecd", "ecd0001", "registration_qc") == "results/preproc/ecd/registration/ecd0001.png"
    assert layout.registration_qc("ecd", included=True) == "results/qc/ecd/registration_included.tsv"
    assert layout.model_file("fdg/n80", "model.keras") == "results/models/fdg/n80/model.keras"
    assert layout.training_work("fdg/n80") == "results/models/fdg/n80/work"
    assert layout.model_file("roi/fdg/n80", "model.json") == "results/models/roi/fdg/n80/model.json"
    assert layout.features("fdg/n80") == "results/predictions/fdg/n80.features.h5"
    assert layout.model_figure("gradcam_means", "fdg/n80") == "results/figures/gradcam/fdg/n80_means.png"
    assert layout.findings() == "results/tables/summary.md"
    assert layout.log("figures/tsne", "fdg/n80") == "results/logs/figures/tsne/fdg/n80.log"


def test_snakemake_wildcards_pass_through():
    assert layout.predictions("{model}") == "results/predictions/{model}.tsv"
    assert layout.preprocessed("{cohort}", "{subject}", "sidecar") == "results/preproc/{cohort}/{subject}.json"
    assert layout.figure("roc_{role}") == "results/figures/roc_{role}.png"


def test_unknown_files_are_refused():
    with pytest.raises(ValueError, match="unknown model file"):
        layout.model_file("fdg/n80", "weights.h5")
    with pytest.raises(ValueError, match="unknown table"):
        layout.table("table5")
