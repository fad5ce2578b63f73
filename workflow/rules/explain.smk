# Stage 7: explanations. Grad-CAM of each CNN classifier on its test subjects, in 2D and back in 3D on the MNI
# grid [gpu=1]; region occlusion of each CNN classifier (AAL3 region -> NC training mean, drop in P(AD)) [gpu=1];
# t-SNE of the FC features; the ROI baselines' coefficient maps; the three side by side per CNN. On synthetic
# cohorts each is scored against the generator's altered regions the same way.

import shlex


rule gradcam:
    input:
        **trained("{model}"),
        cache=cohort_files(layout.cache, model_of),
        predictions=layout.predictions("{model}"),
        truth=lambda wc: truth_of(wc.model),
    output:
        summary=layout.explain("{model}", "gradcam_summary.json"),
        regions=layout.explain("{model}", "gradcam_regions.tsv"),
        map_ad=layout.explain("{model}", "gradcam_AD.nii.gz"),
        map_nc=layout.explain("{model}", "gradcam_NC.nii.gz"),
        examples=report(
            layout.model_figure("gradcam_examples", "{model}"),
            caption="../report/gradcam_examples.rst",
            category="4. Explanation",
            subcategory="Grad-CAM",
            labels={"model": "{model}", "figure": "test examples"},
        ),
        means=report(
            layout.model_figure("gradcam_means", "{model}"),
            caption="../report/gradcam_means.rst",
            category="4. Explanation",
            subcategory="Grad-CAM",
            labels={"model": "{model}", "figure": "class means"},
        ),
    wildcard_constraints:
        model=CNN_CLASSIFIER_PATTERN,
    params:
        layer=EXPLAIN.get("gradcam_layer", "mixed10"),
        score_layers=",".join(EXPLAIN.get("gradcam_score_layers", [])),
        examples=EXPLAIN.get("gradcam_examples", 2),
        truth=lambda wc, input: f"--truth {shlex.quote(input.truth[0])}" if input.truth else "",
    threads: TRAIN_THREADS
    resources:
        gpu=1,
        mem_mb=6000,
        runtime=60,
    conda:
        "../../envs/train.yaml"
    log:
        layout.log("gradcam", "{model}"),
    benchmark:
        layout.benchmark("gradcam", "{model}")
    shell:
        "python -m adtransfer gradcam --model {input.model:q} --metrics {input.metrics:q} --cache {input.cache:q}"
        " --predictions {input.predictions:q} --layer {params.layer:q} --summary {output.summary:q}"
        " --regions {output.regions:q} --map-ad {output.map_ad:q} --map-nc {output.map_nc:q}"
        " --examples-png {output.examples:q} --means-png {output.means:q} --examples {params.examples}"
        " --score-layers={params.score_layers:q} {params.truth} --threads {threads} --log {log:q}"


rule occlusion:
    input:
        **trained("{model}"),
        cache=cohort_files(layout.cache, model_of),
        splits=cohort_files(layout.splits, model_of),
        nii=lambda wc: [layout.preprocessed(cohort_of(wc.model), s, "nii") for s in subjects(cohort_of(wc.model))],
        sidecars=lambda wc: [layout.preprocessed(cohort_of(wc.model), s, "sidecar") for s in subjects(cohort_of(wc.model))],
        truth=lambda wc: truth_of(wc.model),
    output:
        summary=layout.explain("{model}", "occlusion_summary.json"),
        regions=layout.explain("{model}", "occlusion_regions.tsv"),
        nifti=layout.explain("{model}", "occlusion_AD.nii.gz"),
        png=report(
            layout.model_figure("occlusion", "{model}"),
            caption="../report/occlusion.rst",
            category="4. Explanation",
            subcategory="Region occlusion",
            labels={"model": "{model}"},
        ),
    wildcard_constraints:
        model=CNN_CLASSIFIER_PATTERN,
    params:
        set=lambda wc: MODELS[wc.model].set_column,
        classes=",".join(EXPLAIN.get("occlusion_classes", ["AD"])),
        preproc_dir=lambda wc: layout.preproc_dir(cohort_of(wc.model)),
        truth=lambda wc, input: f"--truth {shlex.quote(input.truth[0])}" if input.truth else "",
    threads: TRAIN_THREADS
    resources:
        gpu=1,
        mem_mb=6000,
        runtime=120,
    conda:
        "../../envs/train.yaml"
    log:
        layout.log("occlusion", "{model}"),
    benchmark:
        layout.benchmark("occlusion", "{model}")
    shell:
        "python -m adtransfer occlusion --model {input.model:q} --metrics {input.metrics:q} --cache {input.cache:q}"
        " --splits {input.splits:q} --set {params.set:q} --preproc-dir {params.preproc_dir:q}"
        " --summary {output.summary:q} --regions {output.regions:q} --nifti {output.nifti:q} --png {output.png:q} --classes {params.classes:q} {params.truth}"
        " --threads {threads} --log {log:q}"


rule explain_figure:
    input:
        unpack(lambda wc: explain_figure_inputs(wc.model)),
        cache=cohort_files(layout.cache, model_of),
    output:
        report(
            layout.model_figure("explain", "{model}"),
            caption="../report/explain_side_by_side.rst",
            category="4. Explanation",
            subcategory="Side by side",
            labels={"model": "{model}"},
        ),
    wildcard_constraints:
        model=CNN_CLASSIFIER_PATTERN,
    params:
        grid=GRID_SPEC,
        dpi=FIGURE_DPI,
    conda:
        "../../envs/report.yaml"
    log:
        layout.log("figures/explain", "{model}"),
    shell:
        f"python -m adtransfer explain-figure --results {layout.ROOT} --grid {{params.grid:q}} --model {{wildcards.model:q}}"
        " --cache {input.cache:q} --dpi {params.dpi} --out {output:q} --log {log:q}"


rule tsne:
    input:
        layout.features("{model}"),
    output:
        report(
            layout.model_figure("tsne", "{model}"),
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
        layout.log("figures/tsne", "{model}"),
    shell:
        "python -m adtransfer figure tsne --features {input} --out {output} --title {params.title:q}"
        " --seed {params.seed} --perplexity {params.perplexity} --dpi {params.dpi} --log {log}"


rule explain_baseline:
    input:
        model=layout.model_file("roi/{model}", "model.json"),
        cache=cohort_files(layout.cache, baseline_of),
        truth=lambda wc: truth_of(f"roi/{wc.model}"),
    output:
        summary=layout.explain("roi/{model}", "explain_summary.json"),
        table=layout.explain("roi/{model}", "coefficients.tsv"),
        nifti=layout.explain("roi/{model}", "coefficients.nii.gz"),
        png=report(
            layout.model_figure("roi_coefficients", "{model}"),
            caption="../report/roi_coefficients.rst",
            category="4. Explanation",
            subcategory="ROI baseline",
            labels={"model": "roi/{model}"},
        ),
    params:
        truth=lambda wc, input: f"--truth {shlex.quote(input.truth[0])}" if input.truth else "",
    conda:
        "../../envs/report.yaml"
    log:
        layout.log("explain/roi", "{model}"),
    shell:
        "python -m adtransfer explain-baseline --model {input.model} --cache {input.cache}"
        " --summary {output.summary:q} --table {output.table:q} --nifti {output.nifti:q} --png {output.png:q}"
        " {params.truth} --log {log}"
