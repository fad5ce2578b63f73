# Stage 7: explanations. Grad-CAM of each CNN classifier on its test subjects, in 2D and back in 3D on the MNI
# grid [gpu=1]; region occlusion of each CNN classifier (AAL3 region -> NC training mean, drop in P(AD)) [gpu=1];
# t-SNE of the FC features; the ROI baselines' coefficient maps; the three side by side per CNN. On synthetic
# cohorts each is scored against the generator's altered regions the same way.

import shlex


rule gradcam:
    input:
        model="results/models/{model}/model.keras",
        metrics="results/models/{model}/metrics.json",
        cache=lambda wc: f"results/cache/{cohort_of(wc.model)}.h5",
        predictions="results/predictions/{model}.tsv",
        truth=lambda wc: truth_of(wc.model),
    output:
        summary="results/explain/{model}/gradcam_summary.json",
        regions="results/explain/{model}/gradcam_regions.tsv",
        maps=expand("results/explain/{{model}}/gradcam_{cls}.nii.gz", cls=["AD", "NC"]),
        examples=report(
            "results/figures/gradcam/{model}_examples.png",
            caption="../report/gradcam_examples.rst",
            category="4. Explanation",
            subcategory="Grad-CAM",
            labels={"model": "{model}", "figure": "test examples"},
        ),
        means=report(
            "results/figures/gradcam/{model}_means.png",
            caption="../report/gradcam_means.rst",
            category="4. Explanation",
            subcategory="Grad-CAM",
            labels={"model": "{model}", "figure": "class means"},
        ),
    wildcard_constraints:
        model=r"(fdg|ecd)/[A-Za-z0-9_]+",
    params:
        layer=EXPLAIN.get("gradcam_layer", "mixed10"),
        score_layers=",".join(EXPLAIN.get("gradcam_score_layers", [])),
        examples=EXPLAIN.get("gradcam_examples", 2),
        model_dir=lambda wc, input: os.path.dirname(input.model),
        out_dir=lambda wc, output: os.path.dirname(output.summary),
        truth=lambda wc, input: f"--truth {shlex.quote(input.truth[0])}" if input.truth else "",
    threads: TRAIN_THREADS
    resources:
        gpu=1,
        mem_mb=6000,
        runtime=60,
    conda:
        "../../envs/train.yaml"
    log:
        "results/logs/gradcam/{model}.log",
    benchmark:
        "results/benchmarks/gradcam/{model}.tsv"
    shell:
        "python -m adtransfer gradcam --model-dir {params.model_dir:q} --cache {input.cache:q}"
        " --predictions {input.predictions:q} --layer {params.layer:q} --out-dir {params.out_dir:q}"
        " --examples-png {output.examples:q} --means-png {output.means:q} --examples {params.examples}"
        " --score-layers={params.score_layers:q} {params.truth} --threads {threads} --log {log:q}"


rule occlusion:
    input:
        model="results/models/{model}/model.keras",
        metrics="results/models/{model}/metrics.json",
        cache=lambda wc: f"results/cache/{cohort_of(wc.model)}.h5",
        splits=lambda wc: f"results/splits/{cohort_of(wc.model)}.tsv",
        nii=lambda wc: expand("results/preproc/{c}/{s}.nii.gz", c=cohort_of(wc.model), s=subjects(cohort_of(wc.model))),
        sidecars=lambda wc: expand("results/preproc/{c}/{s}.json", c=cohort_of(wc.model), s=subjects(cohort_of(wc.model))),
        truth=lambda wc: truth_of(wc.model),
    output:
        summary="results/explain/{model}/occlusion_summary.json",
        regions="results/explain/{model}/occlusion_regions.tsv",
        nifti="results/explain/{model}/occlusion_AD.nii.gz",
        png=report(
            "results/figures/occlusion/{model}.png",
            caption="../report/occlusion.rst",
            category="4. Explanation",
            subcategory="Region occlusion",
            labels={"model": "{model}"},
        ),
    wildcard_constraints:
        model=r"(fdg|ecd)/[A-Za-z0-9_]+",
    params:
        set=lambda wc: MODELS[wc.model].set_column,
        classes=",".join(EXPLAIN.get("occlusion_classes", ["AD"])),
        model_dir=lambda wc, input: os.path.dirname(input.model),
        preproc_dir=lambda wc, input: os.path.dirname(input.nii[0]),
        out_dir=lambda wc, output: os.path.dirname(output.summary),
        truth=lambda wc, input: f"--truth {shlex.quote(input.truth[0])}" if input.truth else "",
    threads: TRAIN_THREADS
    resources:
        gpu=1,
        mem_mb=6000,
        runtime=120,
    conda:
        "../../envs/train.yaml"
    log:
        "results/logs/occlusion/{model}.log",
    benchmark:
        "results/benchmarks/occlusion/{model}.tsv"
    shell:
        "python -m adtransfer occlusion --model-dir {params.model_dir:q} --cache {input.cache:q}"
        " --splits {input.splits:q} --set {params.set:q} --preproc-dir {params.preproc_dir:q}"
        " --out-dir {params.out_dir:q} --png {output.png:q} --classes {params.classes:q} {params.truth}"
        " --threads {threads} --log {log:q}"


rule explain_figure:
    input:
        gradcam="results/explain/{model}/gradcam_summary.json",
        occlusion="results/explain/{model}/occlusion_summary.json",
        baseline=lambda wc: f"results/explain/{matching_baseline(wc.model)}/explain_summary.json",
        cache=lambda wc: f"results/cache/{cohort_of(wc.model)}.h5",
    output:
        report(
            "results/figures/explain/{model}.png",
            caption="../report/explain_side_by_side.rst",
            category="4. Explanation",
            subcategory="Side by side",
            labels={"model": "{model}"},
        ),
    wildcard_constraints:
        model=r"(fdg|ecd)/[A-Za-z0-9_]+",
    params:
        sizes=SIZES_ARG,
        dpi=FIGURE_DPI,
    conda:
        "../../envs/report.yaml"
    log:
        "results/logs/figures/explain/{model}.log",
    shell:
        "python -m adtransfer explain-figure --results results --sizes {params.sizes:q} --model {wildcards.model:q}"
        " --cache {input.cache:q} --dpi {params.dpi} --out {output:q} --log {log:q}"


rule tsne:
    input:
        "results/predictions/{model}.features.h5",
    output:
        report(
            "results/figures/tsne/{model}.png",
            caption="../report/tsne.rst",
            category="4. Explanation",
            subcategory="t-SNE",
            labels={"model": "{model}"},
        ),
    params:
        perplexity=EXPLAIN.get("tsne_perplexity", 30),
        seed=config["seed"],
        dpi=FIGURE_DPI,
        title=lambda wc: f"t-SNE of FC features: {MODELS[wc.model].label}",
    conda:
        "../../envs/report.yaml"
    log:
        "results/logs/figures/tsne/{model}.log",
    shell:
        "python -m adtransfer figure tsne --features {input} --out {output} --title {params.title:q}"
        " --seed {params.seed} --perplexity {params.perplexity} --dpi {params.dpi} --log {log}"


rule explain_baseline:
    input:
        model="results/models/roi/{model}/model.json",
        cache=lambda wc: f"results/cache/{ROLE_COHORT[baseline_of(wc).role]}.h5",
        truth=lambda wc: truth_of(f"roi/{wc.model}"),
    output:
        summary="results/explain/roi/{model}/explain_summary.json",
        table="results/explain/roi/{model}/coefficients.tsv",
        nifti="results/explain/roi/{model}/coefficients.nii.gz",
        png=report(
            "results/figures/roi_coefficients/{model}.png",
            caption="../report/roi_coefficients.rst",
            category="4. Explanation",
            subcategory="ROI baseline",
            labels={"model": "roi/{model}"},
        ),
    params:
        out_dir=lambda wc, output: os.path.dirname(output.summary),
        truth=lambda wc, input: f"--truth {shlex.quote(input.truth[0])}" if input.truth else "",
    conda:
        "../../envs/report.yaml"
    log:
        "results/logs/explain/roi/{model}.log",
    shell:
        "python -m adtransfer explain-baseline --model {input.model} --cache {input.cache}"
        " --out-dir {params.out_dir} --png {output.png} {params.truth} --log {log}"
