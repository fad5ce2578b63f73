# Stage 8: Tables 3-4 (CNNs and ROI baselines), the pre-specified comparisons (Holm), the replicates, the MMSE
# table, the one-page summary (key figures inline) and the figures,
# gathered by `snakemake --report results/report.html`. No TensorFlow; figure settings are params, so changing
# one redraws only the figures.


rule tables:
    input:
        classifier_inputs(),
        mmse_inputs(),
        # validation metrics: the summary's "best" CNN is chosen on validation data
        [f"results/models/{m}/metrics.json" for m, spec in MODELS.items() if spec.kind == "cnn" and spec.replicate == 0],
        # a synthetic cohort's ground truth: the summary says which kind of effect it has and what that implies
        truths=list(synthetic_truths().values()),
    output:
        tables=expand("results/tables/{name}.{ext}", name=TABLES, ext=["tsv", "md"]),
        summary_md="results/tables/summary.md",
    params:
        sizes=SIZES_ARG,
        replicates=N_REPLICATES,
        init=INIT,
        comparisons=COMPARISONS,
        n_boot=EVAL.get("n_bootstrap", 1000),
        alpha=EVAL.get("alpha", 0.05),
        seed=config["seed"],
        out_dir=lambda wc, output: os.path.dirname(output.summary_md),
        truths=" ".join(f"--truth {r} {shlex.quote(p)}" for r, p in synthetic_truths().items()),
    conda:
        "../../envs/report.yaml"
    log:
        "results/logs/report/tables.log",
    shell:
        "python -m adtransfer tables --results results --sizes {params.sizes} --replicates {params.replicates}"
        " --init {params.init:q} --comparisons {params.comparisons:q} --n-boot {params.n_boot} --seed {params.seed}"
        " --alpha {params.alpha} --out-dir {params.out_dir} {params.truths} --log {log}"


rule summary:
    input:
        tables=expand("results/tables/{name}.tsv", name=TABLES),
        findings="results/tables/summary.md",
        figures=list(SUMMARY_FIGURES.values()),
    output:
        report("results/summary.html", caption="../report/summary.rst", category="1. Summary"),
    params:
        tables_dir=lambda wc, input: os.path.dirname(input.findings),
        alpha=EVAL.get("alpha", 0.05),
        figures=" ".join(f"--figure {shlex.quote(k)} {shlex.quote(v)}" for k, v in SUMMARY_FIGURES.items()),
    conda:
        "../../envs/report.yaml"
    log:
        "results/logs/report/summary.log",
    shell:
        "python -m adtransfer summary --tables-dir {params.tables_dir:q} --alpha {params.alpha} {params.figures}"
        " --out {output:q} --log {log}"


rule figure_roc:
    input:
        lambda wc: classifier_inputs(wc.role),
    output:
        report(
            "results/figures/roc_{role}.png",
            caption="../report/roc.rst",
            category="2. Classification",
            labels={"figure": "ROC", "cohort": "{role}"},
        ),
    wildcard_constraints:
        role="fdg|ecd",
    params:
        sizes=SIZES_ARG,
        dpi=FIGURE_DPI,
        replicates=N_REPLICATES,
        init=INIT,
    conda:
        "../../envs/report.yaml"
    log:
        "results/logs/report/roc_{role}.log",
    shell:
        "python -m adtransfer figure roc --role {wildcards.role} --results results --sizes {params.sizes}"
        " --replicates {params.replicates} --init {params.init:q} --dpi {params.dpi} --out {output} --log {log}"


rule figure_sample_size:
    input:
        classifier_inputs(),
    output:
        report(
            "results/figures/sample_size.png",
            caption="../report/sample_size.rst",
            category="2. Classification",
            labels={"figure": "sample-size study", "cohort": "fdg and ecd"},
        ),
    params:
        sizes=SIZES_ARG,
        dpi=FIGURE_DPI,
        replicates=N_REPLICATES,
        init=INIT,
    conda:
        "../../envs/report.yaml"
    log:
        "results/logs/report/sample_size.log",
    shell:
        "python -m adtransfer figure sample-size --results results --sizes {params.sizes} --dpi {params.dpi}"
        " --replicates {params.replicates} --init {params.init:q}"
        " --out {output} --log {log}"


rule figure_mmse:
    input:
        mmse_inputs(),
    output:
        report("results/figures/mmse_scatter.png", caption="../report/mmse.rst", category="3. MMSE"),
    params:
        sizes=SIZES_ARG,
        dpi=FIGURE_DPI,
        replicates=N_REPLICATES,
        init=INIT,
    conda:
        "../../envs/report.yaml"
    log:
        "results/logs/report/mmse.log",
    shell:
        "python -m adtransfer figure mmse --results results --sizes {params.sizes} --dpi {params.dpi}"
        " --replicates {params.replicates} --init {params.init:q}"
        " --out {output} --log {log}"


rule figure_learning_curves:
    input:
        [f"results/models/{m}/history.tsv" for m, spec in MODELS.items() if spec.kind == "cnn" and spec.replicate == 0],
    output:
        report("results/figures/learning_curves.png", caption="../report/learning_curves.rst", category="5. Training"),
    params:
        sizes=SIZES_ARG,
        dpi=FIGURE_DPI,
        replicates=N_REPLICATES,
        init=INIT,
    conda:
        "../../envs/report.yaml"
    log:
        "results/logs/report/learning_curves.log",
    shell:
        "python -m adtransfer figure learning --results results --sizes {params.sizes} --dpi {params.dpi}"
        " --replicates {params.replicates} --init {params.init:q}"
        " --out {output} --log {log}"


rule explanations_table:
    input:
        expand("results/explain/{model}/gradcam_summary.json", model=CNN_CLASSIFIERS),
        expand("results/explain/{model}/occlusion_summary.json", model=CNN_CLASSIFIERS),
        expand("results/explain/{model}/explain_summary.json", model=BASELINES),
    output:
        tsv=report(
            "results/tables/explanations.tsv",
            caption="../report/explanations.rst",
            category="4. Explanation",
            subcategory="Against the ground truth",
        ),
        md="results/tables/explanations.md",
    params:
        sizes=SIZES_ARG,
        out_dir=lambda wc, output: os.path.dirname(output.md),
    conda:
        "../../envs/report.yaml"
    log:
        "results/logs/report/explanations.log",
    shell:
        "python -m adtransfer explanations --results results --sizes {params.sizes}"
        " --out-dir {params.out_dir} --log {log}"
