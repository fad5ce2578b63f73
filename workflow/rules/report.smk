# Stage 8: Tables 3-4 (CNNs and ROI baselines), the pre-specified comparisons (Holm), the replicates, the MMSE
# table, the one-page summary (key figures inline) and the figures,
# gathered by `snakemake --report results/report.html`. No TensorFlow; figure settings are params, so changing
# one redraws only the figures.


rule tables:
    input:
        classifier_inputs(),
        mmse_inputs(),
        # validation metrics: the summary's "best" CNN is chosen on validation data
        [layout.model_file(m, "metrics.json") for m in first_cnns()],
        # a synthetic cohort's ground truth: the summary says which kind of effect it has and what that implies
        truths=list(synthetic_truths().values()),
        # a native-space cohort's registration QC: the summary lists its flagged subjects and what was done with them
        registration_qc=list(registration_qc_tables().values()),
    output:
        tables=[layout.table(name, ext) for name in layout.TABLES for ext in ("tsv", "md")],
        findings=layout.findings(),
    params:
        grid=GRID_SPEC,
        tables=" ".join(f"--table {name} {quoted(layout.table(name), layout.table(name, 'md'))}" for name in layout.TABLES),
        comparisons=COMPARISONS,
        n_boot=EVAL.get("n_bootstrap", 1000),
        alpha=EVAL.get("alpha", 0.05),
        seed=config["seed"],
        truths=" ".join(f"--truth {r} {quoted(p)}" for r, p in synthetic_truths().items()),
        registration_qc=" ".join(f"--registration-qc {quoted(c, p)}" for c, p in registration_qc_tables().items()),
    conda:
        "../../envs/report.yaml"
    log:
        layout.log("report", "tables"),
    shell:
        f"python -m adtransfer tables --results {layout.ROOT} --grid {{params.grid:q}} {{params.tables}}"
        " --findings {output.findings:q} --comparisons {params.comparisons:q} --n-boot {params.n_boot}"
        " --seed {params.seed} --alpha {params.alpha} {params.truths} {params.registration_qc} --log {log}"


rule summary:
    # the registration QC of native-space cohorts reaches the page through the findings (`tables` reads it)
    input:
        tables=[layout.table(name) for name in layout.TABLES],
        findings=layout.findings(),
        figures=list(SUMMARY_FIGURES.values()),
    output:
        report(layout.summary_page(), caption="../report/summary.rst", category="1. Summary"),
    params:
        tables=" ".join(f"--table {name} {quoted(layout.table(name))}" for name in layout.TABLES),
        alpha=EVAL.get("alpha", 0.05),
        figures=" ".join(f"--figure {quoted(k, v)}" for k, v in SUMMARY_FIGURES.items()),
    conda:
        "../../envs/report.yaml"
    log:
        layout.log("report", "summary"),
    shell:
        "python -m adtransfer summary {params.tables} --findings {input.findings:q} --alpha {params.alpha}"
        " {params.figures} --out {output:q} --log {log}"


rule figure_roc:
    input:
        lambda wc: classifier_inputs(wc.role),
    output:
        report(
            layout.figure("roc_{role}"),
            caption="../report/roc.rst",
            category="2. Classification",
            labels={"figure": "ROC", "cohort": "{role}"},
        ),
    wildcard_constraints:
        role="fdg|ecd",
    params:
        grid=GRID_SPEC,
        dpi=FIGURE_DPI,
    conda:
        "../../envs/report.yaml"
    log:
        layout.log("report", "roc_{role}"),
    shell:
        figure_shell("roc", "--role {wildcards.role}")


rule figure_sample_size:
    input:
        classifier_inputs(),
    output:
        report(
            layout.figure("sample_size"),
            caption="../report/sample_size.rst",
            category="2. Classification",
            labels={"figure": "sample-size study", "cohort": "fdg and ecd"},
        ),
    params:
        grid=GRID_SPEC,
        dpi=FIGURE_DPI,
    conda:
        "../../envs/report.yaml"
    log:
        layout.log("report", "sample_size"),
    shell:
        figure_shell("sample-size")


rule figure_mmse:
    input:
        mmse_inputs(),
    output:
        report(layout.figure("mmse_scatter"), caption="../report/mmse.rst", category="3. MMSE"),
    params:
        grid=GRID_SPEC,
        dpi=FIGURE_DPI,
    conda:
        "../../envs/report.yaml"
    log:
        layout.log("report", "mmse"),
    shell:
        figure_shell("mmse")


rule figure_learning_curves:
    input:
        [layout.model_file(m, "history.tsv") for m in first_cnns()],
    output:
        report(layout.figure("learning_curves"), caption="../report/learning_curves.rst", category="5. Training"),
    params:
        grid=GRID_SPEC,
        dpi=FIGURE_DPI,
    conda:
        "../../envs/report.yaml"
    log:
        layout.log("report", "learning_curves"),
    shell:
        figure_shell("learning")


rule explanations_table:
    input:
        [layout.explain(m, "gradcam_summary.json") for m in CNN_CLASSIFIERS],
        [layout.explain(m, "occlusion_summary.json") for m in CNN_CLASSIFIERS],
        [layout.explain(m, "explain_summary.json") for m in BASELINES],
    output:
        tsv=report(
            layout.table("explanations"),
            caption="../report/explanations.rst",
            category="4. Explanation",
            subcategory="Against the ground truth",
        ),
        md=layout.table("explanations", "md"),
    params:
        grid=GRID_SPEC,
    conda:
        "../../envs/report.yaml"
    log:
        layout.log("report", "explanations"),
    shell:
        f"python -m adtransfer explanations --results {layout.ROOT} --grid {{params.grid:q}}"
        " --out {output.tsv:q} --markdown {output.md:q} --log {log}"
