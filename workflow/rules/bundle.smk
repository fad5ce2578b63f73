# Stage 6b: the self-describing model bundle. Once a CNN is trained and its test metrics (with CIs) exist, its
# folder gets manifest.json (everything `adtransfer predict` needs to apply it to new scans, read from the
# workflow's own files) and MODEL_CARD.md. No TensorFlow.


rule bundle:
    input:
        model="results/models/{model}/model.keras",
        metrics="results/models/{model}/metrics.json",
        test_metrics="results/metrics/{model}.json",
        cache=lambda wc: f"results/cache/{cohort_of(wc.model)}.h5",
        splits=lambda wc: f"results/splits/{cohort_of(wc.model)}.tsv",
        sidecar=lambda wc: preproc_sidecar(wc.model),
    output:
        manifest="results/models/{model}/manifest.json",
        card="results/models/{model}/MODEL_CARD.md",
    wildcard_constraints:
        model=r"(fdg|ecd|mmse)/[A-Za-z0-9_]+",
    params:
        model_dir=lambda wc, input: os.path.dirname(input.model),
        parent=lambda wc: f"--parent {model_of(wc).pretrained}" if model_of(wc).pretrained else "",
        layer=EXPLAIN.get("gradcam_layer", "mixed10"),
        synthetic=lambda wc: "--synthetic" if is_synthetic(cohort_of(wc.model)) else "",
    conda:
        "../../envs/data.yaml"
    log:
        "results/logs/bundle/{model}.log",
    benchmark:
        "results/benchmarks/bundle/{model}.tsv"
    shell:
        "python -m adtransfer bundle --model-dir {params.model_dir:q} --name {wildcards.model:q}"
        " --test-metrics {input.test_metrics:q} --cache {input.cache:q} --splits {input.splits:q}"
        " --preproc-sidecar {input.sidecar:q} {params.parent} --gradcam-layer {params.layer:q} {params.synthetic}"
        " --log {log:q}"
