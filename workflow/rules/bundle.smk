# Stage 6b: the self-describing model bundle. Once a CNN is trained and its test metrics (with CIs) exist, its
# folder gets manifest.json (everything `adtransfer predict` needs to apply it to new scans, read from the
# workflow's own files) and MODEL_CARD.md. No TensorFlow.


rule bundle:
    input:
        **trained("{model}"),
        test_metrics=layout.test_metrics("{model}"),
        cache=cohort_files(layout.cache, model_of),
        splits=cohort_files(layout.splits, model_of),
        sidecar=lambda wc: preproc_sidecar(wc.model),
    output:
        manifest=layout.model_file("{model}", "manifest.json"),
        card=layout.model_file("{model}", "MODEL_CARD.md"),
    wildcard_constraints:
        model=CNN_PATTERN,
    params:
        parent=lambda wc: f"--parent {model_of(wc).pretrained}" if model_of(wc).pretrained else "",
        layer=EXPLAIN.get("gradcam_layer", "mixed10"),
        synthetic=lambda wc: "--synthetic" if is_synthetic(cohort_of(wc.model)) else "",
    conda:
        "../../envs/data.yaml"
    log:
        layout.log("bundle", "{model}"),
    benchmark:
        layout.benchmark("bundle", "{model}")
    shell:
        "python -m adtransfer bundle --model {input.model:q} --metrics {input.metrics:q} --name {wildcards.model:q}"
        " --manifest {output.manifest:q} --model-card {output.card:q}"
        " --test-metrics {input.test_metrics:q} --cache {input.cache:q} --splits {input.splits:q}"
        " --preproc-sidecar {input.sidecar:q} {params.parent} --gradcam-layer {params.layer:q} {params.synthetic}"
        " --log {log:q}"
