# Stage 8: Tables 3-4 (CNNs and ROI baselines, DeLong tests), the MMSE table, the summary page and the figures,
# gathered by `snakemake --report results/report.html`. No TensorFlow; figure settings are params, so changing
# one redraws only the figures.


rule tables:
    input:
        classifier_inputs(),
        mmse_inputs(),
    output:
        tables=expand("results/tables/{name}.{ext}", name=["table3_fdg", "table4_ecd", "delong", "mmse"], ext=["tsv", "md"]),
        summary_md="results/tables/summary.md",
        summary=report("results/summary.html", caption="../report/summary.rst", category="1. Summary"),
    params:
        sizes=SIZES_ARG,
        out_dir=lambda wc, output: os.path.dirname(output.summary_md),
    conda:
        "../../envs/report.yaml"
    log:
        "results/logs/report/tables.log",
    shell:
        "python -m adtransfer tables --results results --sizes {params.sizes} --out-dir {params.out_dir}"
        " --summary {output.summary} --log {log}"


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
    conda:
        "../../envs/report.yaml"
    log:
        "results/logs/report/roc_{role}.log",
    shell:
        "python -m adtransfer figure roc --role {wildcards.role} --results results --sizes {params.sizes}"
        " --dpi {params.dpi} --out {output} --log {log}"


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
    conda:
        "../../envs/report.yaml"
    log:
        "results/logs/report/sample_size.log",
    shell:
        "python -m adtransfer figure sample-size --results results --sizes {params.sizes} --dpi {params.dpi}"
        " --out {output} --log {log}"


rule figure_mmse:
    input:
        mmse_inputs(),
    output:
        report("results/figures/mmse_scatter.png", caption="../report/mmse.rst", category="3. MMSE"),
    params:
        sizes=SIZES_ARG,
        dpi=FIGURE_DPI,
    conda:
        "../../envs/report.yaml"
    log:
        "results/logs/report/mmse.log",
    shell:
        "python -m adtransfer figure mmse --results results --sizes {params.sizes} --dpi {params.dpi}"
        " --out {output} --log {log}"


rule figure_learning_curves:
    input:
        [f.replace("metrics.json", "history.tsv") for f in all_models()],
    output:
        report("results/figures/learning_curves.png", caption="../report/learning_curves.rst", category="5. Training"),
    params:
        sizes=SIZES_ARG,
        dpi=FIGURE_DPI,
    conda:
        "../../envs/report.yaml"
    log:
        "results/logs/report/learning_curves.log",
    shell:
        "python -m adtransfer figure learning --results results --sizes {params.sizes} --dpi {params.dpi}"
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
