"""The workflow as a user runs it: dry runs of the shipped configs and profiles. The tiny run end to end and its
incremental reruns are in test_workflow_full.py (one trained run shared by every end-to-end check)."""

from __future__ import annotations

import json
import re
import zipfile

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from cli_helpers import run_importing
from workflow_helpers import (
    ROOT,
    demo_priorities,
    job_blocks,
    job_counts,
    snakemake,
    snakemake_command,
    tiny_training_config,
    train_jobs,
    write_config,
)


def test_default_config_dry_run(tmp_path):
    """The demo's dry run, with the Makefile's arguments."""
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert "all --resources gpu=2 --prioritize $(CHAIN) $(EXPLAINED)" in (ROOT / "Makefile").read_text()
    proc = snakemake(tmp_path, ROOT / "config" / "config.yaml", "-n", "all", *demo_priorities())
    counts = job_counts(proc.stdout)
    # first: the longest chain of dependent jobs (its data, FDG pre-training of the largest size, the FDG MMSE
    # model fine-tuned from it and the ECD MMSE model fine-tuned from that) and the explained models with their
    # explanations; the rest of the ECD stage (replicates, the other sizes, scratch) does not jump the queue
    first = [b for b in job_blocks(proc.stdout) if re.search(r"^\s+priority: highest$", b, re.M)]

    def models_of(rule):
        return {re.search(r"wildcards: model=(\S+)", b)[1] for b in first if re.search(rf"^rule {rule}:", b, re.M)}

    largest = max(cfg["splits"]["pretrain_sizes"])
    explained = set(cfg["explain"]["models"])
    assert explained and all("_r" not in m for m in explained)
    assert models_of("train") == {f"fdg/n{largest}", "mmse/fdg", "mmse/ecd_from_fdg"} | explained
    assert models_of("gradcam") == models_of("occlusion") == explained
    assert sum(bool(re.search(r"^rule preprocess:", b, re.M)) for b in first) == counts["preprocess"]
    n_subjects = sum(v for c in cfg["cohorts"].values() for k, v in c["synthetic"].items() if k.startswith("n_"))
    assert counts["preprocess"] == n_subjects
    assert counts["cache"] == 2 and counts["validate"] == 2 and counts["split"] == 2
    assert counts["synth_fdg"] == 1 and counts["synth_ecd"] == 1
    n_sizes = len(cfg["splits"]["pretrain_sizes"])
    # the ECD stage once per replicate (its own job each), FDG pre-training and MMSE once
    reps = cfg["train"]["replicates"]
    assert reps >= 3
    trained = train_jobs(proc.stdout)
    assert sum(m.startswith("fdg/") for m in trained) == n_sizes
    assert sum(m.startswith("ecd/from_fdg_") for m in trained) == n_sizes * reps
    assert sum(m.startswith("ecd/scratch") for m in trained) == reps
    assert sum(m.startswith("mmse/") for m in trained) == 2
    n_cnn = 2 * n_sizes + 1 + 2
    # every replicate trains (its job also predicts every subject: no separate predict jobs) and is evaluated
    assert "predict" not in counts
    assert counts["train"] == n_cnn + (n_sizes + 1) * (reps - 1)
    assert counts["evaluate"] == counts["train"] + counts["train_baseline"]
    # explanations: the models config explain.models names (replicate 0), each by every explaining rule
    explained = cfg["explain"]["models"]
    for rule in ("gradcam", "occlusion", "tsne", "explain_figure"):
        assert counts[rule] == len(explained), rule
    for name in explained:
        assert f"results/explain/{name}/gradcam_summary.json" in proc.stdout
    for r in range(1, reps):
        assert f"results/models/ecd/scratch_r{r}/model.keras" in proc.stdout
        assert f"results/models/ecd/from_fdg_n{cfg['splits']['pretrain_sizes'][-1]}_r{r}/model.keras" in proc.stdout


@pytest.fixture(scope="module")
def paper_dry_run(tmp_path_factory) -> str:
    """The paper config's dry run (its whole grid, 4,000+ jobs), shared by the tests that read it."""
    return snakemake(tmp_path_factory.mktemp("paper"), ROOT / "config" / "paper.yaml", "-n").stdout


def test_paper_config_dry_run(paper_dry_run):
    counts = job_counts(paper_dry_run)
    assert counts["preprocess"] == 629 + 638 + 654 + 113 + 134
    # the paper's grid: 5 FDG pre-trainings (100..1000), 5 ECD fine-tunes, the scratch baseline, MMSE FDG -> ECD
    assert sorted(train_jobs(paper_dry_run)) == sorted(
        [f"fdg/n{s}" for s in (100, 200, 400, 800, 1000)]
        + [f"ecd/from_fdg_n{s}" for s in (100, 200, 400, 800, 1000)]
        + ["ecd/scratch", "mmse/fdg", "mmse/ecd_from_fdg"]
    )
    assert counts["split"] == 2
    # every CNN is trained and predicts in that job (13) and every classifier is explained (11); an ROI baseline
    # beside each training set: 5 FDG sizes, the ECD set, FDG and ECD MMSE (8); one evaluation per model (21)
    assert "predict" not in counts
    assert counts["train"] == 13 and counts["gradcam"] == 11 and counts["tsne"] == 11
    assert counts["occlusion"] == 11 and counts["explain_figure"] == 11  # occlusion and side by side per classifier
    assert counts["train_baseline"] == 8 and counts["explain_baseline"] == 8 and counts["evaluate"] == 21
    assert counts["tables"] == 1 and counts["figure_roc"] == 2


@pytest.mark.parametrize("mmse_init", [None, "classifier", "init"])
def test_fdg_mmse_model_fine_tunes_the_largest_fdg_classifier(tmp_path, mmse_init):
    """The paper's FDG MMSE model fine-tunes the classification model (Fig. 5); `train.mmse_init: init` keeps the
    training init instead. The dry run's command training mmse/fdg says which."""
    cfg = tiny_training_config(splits={**tiny_training_config()["splits"], "pretrain_sizes": [4, 8]})
    if mmse_init:
        cfg["train"]["mmse_init"] = mmse_init
    path = write_config(tmp_path / "mmse_init.yaml", cfg)
    proc = snakemake(tmp_path, path, "results/models/mmse/fdg/metrics.json", "-n", "-p")
    trained = train_jobs(proc.stdout)
    command = trained["mmse/fdg"].split("--set mmse_set", 1)[1].splitlines()[0]
    if mmse_init == "init":
        assert "--pretrained" not in command
        assert sorted(trained) == ["mmse/fdg"]
        assert '"learning_rate": 0.001' in command
    else:
        assert "--pretrained results/models/fdg/n8/model.keras" in command
        assert sorted(trained) == ["fdg/n8", "mmse/fdg"]  # n8 only: the largest size
        assert '"learning_rate": 0.0001' in command  # finetune_learning_rate


def test_stage_schedules_apply_to_their_models(tmp_path):
    """train.ecd_stage sets the schedule of the replicated ECD stage, the same for its fine-tunes and its model
    without FDG stage (so the transfer comparison differs in starting point and learning rate only); train.mmse_stage
    that of the MMSE models; FDG pre-training keeps the plain keys, and a key left out takes the plain one."""
    cfg = tiny_training_config()
    cfg["train"].update(epochs=7, patience=5, early_stopping_start=4, replicates=2)
    cfg["train"]["ecd_stage"] = {"epochs": 6, "patience": 1}
    cfg["train"]["mmse_stage"] = {"epochs": 5, "early_stopping_start": 1}
    path = write_config(tmp_path / "schedule.yaml", cfg)
    proc = snakemake(tmp_path, path, "-n", "-p")
    settings = {
        name: json.loads(re.search(r"--settings '(\{.*?\})'", block).group(1))
        for name, block in train_jobs(proc.stdout).items()
    }
    stage = {"ecd/from_fdg_n8", "ecd/from_fdg_n8_r1", "ecd/scratch", "ecd/scratch_r1"}
    mmse = {"mmse/fdg", "mmse/ecd_from_fdg"}
    assert stage < set(settings) and mmse < set(settings) and "fdg/n8" in settings
    for name, s in settings.items():
        expected = (6, 1, 4) if name in stage else (5, 5, 1) if name in mmse else (7, 5, 4)
        assert (s["epochs"], s["patience"], s["early_stopping_start"]) == expected, name


def test_paper_config_over_the_default_keeps_the_papers_schedule_and_explains_every_classifier(tmp_path):
    """Snakemake merges --configfile over config/config.yaml when run from the project folder (as the README does):
    the demo's ECD-stage and MMSE schedules and its explain.models must not leak into the paper's run."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text((ROOT / "config" / "config.yaml").read_text())
    proc = snakemake(tmp_path, ROOT / "config" / "paper.yaml", "-n", "-p")
    jobs = train_jobs(proc.stdout)
    for name in ("ecd/scratch", "mmse/fdg", "ecd/from_fdg_n1000", "mmse/ecd_from_fdg"):
        s = json.loads(re.search(r"--settings '(\{.*?\})'", jobs[name]).group(1))
        assert (s["epochs"], s["patience"], s["early_stopping_start"]) == (200, 20, 0), name
    assert job_counts(proc.stdout)["gradcam"] == 11


def test_training_jobs_are_gpu_tagged(paper_dry_run):
    """Every training job asks for one GPU, so `--resources gpu=N` caps how many train at once."""
    train_blocks = train_jobs(paper_dry_run)
    assert len(train_blocks) == 13
    for block in train_blocks.values():
        assert re.search(r"resources: .*\bgpu=1\b", block), block


def test_replicate_jobs_are_gpu_tagged_and_seeded_apart(tmp_path):
    proc = snakemake(
        tmp_path,
        ROOT / "config" / "config.yaml",
        "results/models/ecd/scratch_r2/metrics.json",
        "results/models/ecd/from_fdg_n80_r1/metrics.json",
        "-n",
        "-p",
        "--resources",
        "gpu=1",
    )
    train_blocks = {m: b for m, b in train_jobs(proc.stdout).items() if m.startswith("ecd/")}
    assert sorted(train_blocks) == ["ecd/from_fdg_n80_r1", "ecd/scratch_r2"]
    seeds = sorted(int(m) for b in train_blocks.values() for m in re.findall(r'"seed": (\d+)', b))
    assert seeds == [42 + 1000, 42 + 2000]
    for block in train_blocks.values():
        assert re.search(r"resources: .*gpu=1", block), block


def test_every_cnn_predicts_in_its_training_job(tmp_path):
    """No `predict` jobs: the one job that writes a CNN's prediction table and features is its `train` job, which
    is given both files (--predictions-out, --features-out); every evaluation of a CNN reads that table."""
    from adtransfer import layout
    from adtransfer.catalog import grid_from_spec, grid_spec

    cfg = tiny_training_config()
    proc = snakemake(tmp_path, write_config(tmp_path / "tiny.yaml", cfg), "-n", "-p")
    assert "predict" not in job_counts(proc.stdout)
    producer, evaluated = {}, set()
    for block in job_blocks(proc.stdout):
        rule = re.search(r"^(?:local)?rule (\S+):", block, re.M)
        files = re.search(r"^\s+output: (.*)$", block, re.M)
        if not (rule and files):
            continue
        for path in files[1].split(", "):
            assert path not in producer, f"{path}: written by {producer[path][0]} and {rule[1]}"
            producer[path] = (rule[1], block)
        if rule[1] == "evaluate":
            evaluated.add(re.search(r"^\s+input: (.*)$", block, re.M)[1])
    cnns = [m.name for m in grid_from_spec(grid_spec(cfg)) if m.kind == "cnn"]
    assert len(cnns) == 7
    for name in cnns:
        table, features = layout.predictions(name), layout.features(name)
        rule, block = producer[table]
        assert rule == "train" and f"wildcards: model={name}\n" in block, name
        assert producer[features][1] is block, name
        assert f"--predictions-out {table} --features-out {features}" in block, name
        assert table in evaluated, name


def test_bad_table_stops_before_any_job(tmp_path):
    (tmp_path / "participants.tsv").write_text(
        "subject_id\tdiagnosis\tmmse\tpath\ns01\tAD\t45\ts01.nii.gz\ns02\tNC\t29\ts02.nii.gz\n"
    )
    cfg = write_config(
        tmp_path / "bad.yaml",
        {
            "seed": 1,
            "mosaic": {"size": 76},
            "cohorts": {"site": {"modality": "ecd_spect", "table": str(tmp_path / "participants.tsv")}},
        },
    )
    proc = snakemake(tmp_path, cfg, "-n", check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "row 2 (subject s01)" in err and "mmse 45 is outside 0-30" in err
    assert "Traceback" not in err


def test_workstation_profile_is_picked_up_and_caps_gpu_jobs(tmp_path):
    profile = yaml.safe_load((ROOT / "workflow" / "profiles" / "default" / "config.yaml").read_text())
    assert profile["resources"] == {"gpu": 1}
    # the greedy selector (the ILP is rebuilt over every ready job at each job's end), in both profiles; it ranks by
    # priority as the ILP does, and the ILP's temp-file term has nothing to act on while no rule has temp() files
    assert profile["scheduler"] == "greedy"
    slurm = yaml.safe_load((ROOT / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    assert slurm["scheduler"] == "greedy"
    sources = [ROOT / "Snakefile", *(ROOT / "workflow" / "rules").glob("*.smk")]
    assert not [p for p in sources if re.search(r"\btemp(orary)?\s*\(", p.read_text())]
    proc = snakemake(tmp_path, ROOT / "config" / "config.yaml", "-n")
    assert re.search(r"Using workflow specific profile \S*profiles/default", proc.stderr + proc.stdout)


def test_slurm_profile_gives_exactly_the_gpu_rules_a_gpu():
    """The SLURM profile's set-resources give a GPU to the rules that declare gpu=1, no more and no fewer, and name no
    rule that does not exist (Snakemake ignores a rule name it does not know, so an entry left for a removed rule would
    pass unseen); its other entries (CPU rules' sizes) and its job groups leave the GPU rules out."""
    profile = yaml.safe_load((ROOT / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    all_rules, gpu_rules = set(), set()
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        parts = re.split(r"^rule (\w+):", smk.read_text(), flags=re.M)
        rules = dict(zip(parts[1::2], parts[2::2], strict=True))
        all_rules |= set(rules)
        gpu_rules |= {name for name, body in rules.items() if re.search(r"^\s+gpu=1,", body, re.M)}
    assert gpu_rules == {"train", "gradcam", "occlusion"}
    resources = profile["set-resources"]
    assert set(resources) <= all_rules, set(resources) - all_rules
    assert {rule for rule, res in resources.items() if "gpu" in str(res.get("gres", ""))} == gpu_rules
    for rule, res in resources.items():
        if rule in gpu_rules:
            assert res == {"gpu": 0, "gres": "gpu:1"}, rule
        else:
            assert not {"gpu", "gres"} & set(res), rule
    assert set(profile["groups"]) <= all_rules - gpu_rules, profile["groups"]
    assert set(profile["group-components"]) == set(profile["groups"].values())


def test_data_only_config_with_own_cohort_names(tmp_path):
    """Without `splits` the workflow stops at the caches, whatever the cohorts are called."""
    cfg = write_config(
        tmp_path / "c.yaml",
        {
            "seed": 1,
            "mosaic": {"size": 96},
            "cohorts": {"adni": {"modality": "fdg_pet", "synthetic": {"n_ad": 2, "n_nc": 2}}},
        },
    )
    counts = job_counts(snakemake(tmp_path, cfg, "-n").stdout)
    assert counts == {"synth_adni": 1, "validate": 1, "preprocess": 4, "cache": 1, "all": 1}, counts


def _native_config(tmp_path, min_similarity: float, on_fail: str):
    return write_config(
        tmp_path / "native.yaml",
        {
            "seed": 1,
            "mosaic": {"size": 76},
            "cohorts": {"spect": {"modality": "ecd_spect", "space": "native", "synthetic": {"n_ad": 2, "n_nc": 2}}},
            "preprocess": {"registration": {"min_similarity": min_similarity, "on_fail": on_fail}},
        },
    )


def test_native_cohort_goes_through_registration_qc(tmp_path):
    """A native-space cohort's cache reads the table after registration QC (issue 14)."""
    counts = job_counts(snakemake(tmp_path, _native_config(tmp_path, 0.6, "exclude"), "-n").stdout)
    assert counts == {"synth_spect": 1, "validate": 1, "preprocess": 4, "registration_qc": 1, "cache": 1, "all": 1}


@pytest.mark.slow
def test_native_cohort_run_excludes_flagged_subjects(tmp_path):
    # a threshold no registration reaches: every subject is flagged; keep -> all cached, and listed as flagged
    snakemake(tmp_path, _native_config(tmp_path, 0.999, "keep"))
    qc = pd.read_csv(tmp_path / "results" / "qc" / "spect" / "registration.tsv", sep="\t")
    assert qc["flagged"].all() and (qc["decision"] == "kept (flagged)").all()
    with h5py.File(tmp_path / "results" / "cache" / "spect.h5") as h5:
        assert h5["mosaics"].shape[0] == 4
    sidecar = yaml.safe_load((tmp_path / "results" / "preproc" / "spect" / "spect0001.json").read_text())
    assert np.array(sidecar["registration"]["affine_scanner_to_mni"]).shape == (4, 4)
    assert (tmp_path / "results" / "preproc" / "spect" / "registration" / "spect0001.png").exists()
    # the Snakemake report shows the QC table and every subject's registration image
    snakemake(tmp_path, _native_config(tmp_path, 0.999, "keep"), "--report", "report.zip", timeout=300)
    with zipfile.ZipFile(tmp_path / "report.zip") as zf:
        shown = {name.rsplit("/", 1)[1] for name in zf.namelist() if "/data/raw/" in name}
        page = zf.read("report/report.html").decode()
    assert shown == {"registration.tsv"} | {f"{s}.png" for s in qc["subject_id"]}, shown
    assert "Registration: spect" in page and "Registration QC image of one subject" in page
    # exclude at a threshold between the subjects' similarities: only QC and cache rerun, without the low ones
    threshold = float(qc["similarity"].median())
    low = set(qc.loc[qc["similarity"] < threshold, "subject_id"])
    assert 0 < len(low) < 4
    proc = snakemake(tmp_path, _native_config(tmp_path, threshold, "exclude"))
    assert "rule preprocess" not in proc.stdout + proc.stderr
    with h5py.File(tmp_path / "results" / "cache" / "spect.h5") as h5:
        cached = {s.decode() for s in h5["subject_id"][()]}
    assert cached == set(qc["subject_id"]) - low


@pytest.mark.parametrize("native", [False, True])
def test_summary_reads_the_registration_qc_of_native_cohorts_only(tmp_path, native):
    """The findings list a native-space cohort's flagged subjects: its QC table is an input of `tables` and passed
    to it; an MNI-space cohort has no registration and no QC table."""
    cfg = tiny_training_config()
    if native:
        cfg["cohorts"]["ecd"]["space"] = "native"
    proc = snakemake(tmp_path, write_config(tmp_path / "c.yaml", cfg), "results/tables/summary.md", "-n", "-p")
    (block,) = [b for b in job_blocks(proc.stdout) if re.search(r"^rule tables:", b, re.M)]
    inputs = re.search(r"^\s*input: (.*)$", block, re.M)[1]
    if native:
        assert "--registration-qc ecd results/qc/ecd/registration.tsv" in block
        assert "results/qc/ecd/registration.tsv" in inputs.split(", ")
        assert job_counts(proc.stdout)["registration_qc"] == 1
    else:
        assert "registration" not in block and "registration_qc" not in job_counts(proc.stdout)
    assert "results/qc/fdg/" not in block


def _layout_files(cfg: dict) -> set[str]:
    """Every file a run of `cfg` writes (logs and benchmarks aside), built from adtransfer.layout alone."""
    from adtransfer import layout
    from adtransfer.catalog import grid_from_spec, grid_spec
    from adtransfer.configuration import subject_ids

    files = set()
    for cohort, spec in cfg["cohorts"].items():
        ids = subject_ids(cohort, sum(v for k, v in spec["synthetic"].items() if k.startswith("n_")))
        files |= {layout.synth_file(cohort, kind) for kind in layout.SYNTH_FILES}
        files |= {layout.synth_scan(cohort, s) for s in ids}
        kinds = ("nii", "sidecar", "qc", "registration_qc")
        files |= {layout.preprocessed(cohort, s, kind) for s in ids for kind in kinds}
        files |= {layout.cohort_table(cohort), layout.cache(cohort), layout.splits(cohort)}
    for m in grid_from_spec(grid_spec(cfg)):
        files |= {layout.predictions(m.name), layout.test_metrics(m.name)}
        if m.kind == "roi":
            short = m.name.removeprefix("roi/")
            files |= {layout.model_file(m.name, "model.json"), layout.model_figure("roi_coefficients", short)}
            files |= {
                layout.explain(m.name, f) for f in ("explain_summary.json", "coefficients.tsv", "coefficients.nii.gz")
            }
            continue
        files |= {layout.model_file(m.name, f) for f in layout.MODEL_FILES if f != "model.json"}
        files.add(layout.features(m.name))
        if m.classify and m.replicate == 0:
            files |= {layout.explain(m.name, f) for f in layout.EXPLAIN_FILES if not f.startswith(("explain_", "coef"))}
            kinds = ("tsne", "gradcam_examples", "gradcam_means", "occlusion", "explain")
            files |= {layout.model_figure(kind, m.name) for kind in kinds}
    files |= {layout.figure(f) for f in layout.GRID_FIGURES}
    files |= {layout.table(t, ext) for t in [*layout.TABLES, "explanations"] for ext in ("tsv", "md")}
    return files | {layout.findings(), layout.summary_page()}


def test_the_outputs_rules_declare_are_the_files_layout_builds(tmp_path):
    """One owner of the results tree: every output of every job of the tiny run (logs and benchmarks aside) is a
    path adtransfer.layout builds for that config's grid, and every such path is some job's output."""
    cfg = tiny_training_config()
    proc = snakemake(tmp_path, write_config(tmp_path / "tiny.yaml", cfg), "-n", "--forceall")
    declared = set()
    for line in proc.stdout.splitlines():
        if line.strip().startswith("output:"):
            declared |= {p.strip() for p in line.split(":", 1)[1].split(",") if p.strip()}
    assert declared == _layout_files(cfg)


def test_config_without_splits_runs_the_data_stages_only(tmp_path):
    """`splits: null` overrides the default's training grid: synthesis, preprocessing and caches, no model."""
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["splits"] = None
    proc = snakemake(tmp_path, write_config(tmp_path / "data_only.yaml", cfg), "-n")
    counts = job_counts(proc.stdout)
    assert counts["cache"] == 2 and counts["preprocess"] > 0
    assert not train_jobs(proc.stdout) and "split" not in counts and "tables" not in counts


@pytest.mark.parametrize("cohort", ["synthetic", "table"])
def test_parsing_the_workflow_imports_no_heavy_library(cohort, tmp_path):
    """Every Snakemake process parses the workflow, also the one inside each cluster job: the parse and a dry run
    (the demo's config, or with a participants table, which is read at parse time) import none of the libraries
    the steps use (scikit-learn, nibabel and scipy cost ~1 CPU s per process)."""
    from adtransfer.inputs.synth import CohortSpec, generate_cohort

    cfg = ROOT / "config" / "config.yaml"
    if cohort == "table":
        generate_cohort(
            CohortSpec(name="s", modality="ecd_spect", n_ad=2, n_nc=2, seed=3), tmp_path / "d", progress=False
        )
        table = {"modality": "ecd_spect", "table": "d/participants.tsv"}
        cfg = write_config(tmp_path / "table.yaml", {"seed": 3, "mosaic": {"size": 76}, "cohorts": {"ecd": table}})
    heavy = {"sklearn", "scipy", "nibabel", "h5py", "matplotlib", "tensorflow", "keras"}
    ours = {"adtransfer.learning.splits", "adtransfer.inputs.synth"}
    cmd = snakemake_command(tmp_path, cfg, "-n")
    proc, names = run_importing(cmd[1:], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("synth_ecd" if cohort == "synthetic" else "validate") in proc.stdout  # it parsed and planned the run
    assert "adtransfer.configuration" in names and "snakemake" in names
    # the table is read with the input contract's reader
    assert ("adtransfer.inputs.cohort" in names) == (cohort == "table")
    assert not {n for n in names if n.split(".")[0] in heavy} | (names & ours), sorted(names & ours)


def test_a_local_run_is_not_paced_by_the_job_rate_limiter(tmp_path):
    """Snakemake's job rate limiter keeps re-running its job selection from timer threads that multiply with every
    finished job (Snakefile onstart); a local run turns it off. Under a limit of one job per hour, its second job
    would wait an hour: here the two jobs (synthesis, then validation) finish at once."""
    cfg = write_config(tmp_path / "tiny.yaml", tiny_training_config())
    table = "results/cohort/ecd.tsv"
    proc = snakemake(tmp_path, cfg, table, "--max-jobs-per-timespan", "1/1h", timeout=120)
    output = proc.stdout + proc.stderr
    assert "Job rate limit reached" not in output
    assert "--max-jobs-per-timespan 1/3600s is ignored in a local run" in output  # the user is told
    assert (tmp_path / table).exists()
    assert job_counts(output) == {"synth_ecd": 1, "validate": 1}
