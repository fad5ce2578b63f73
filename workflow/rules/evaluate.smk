# Stage 6: predictions and test metrics. Every CNN predicts every subject of its cohort [gpu=1]; the ROI baseline
# (regional means -> linear model, no TensorFlow) is fitted on each training set a CNN uses and predicts the same
# subjects. Both write the same table format, so one `evaluate` rule scores them all.


rule predict:
    input:
        model="results/models/{model}/model.keras",
        metrics="results/models/{model}/metrics.json",
        cache=lambda wc: f"results/cache/{cohort_of(wc.model)}.h5",
        splits=lambda wc: f"results/splits/{cohort_of(wc.model)}.tsv",
    output:
        predictions="results/predictions/{model}.tsv",
        features="results/predictions/{model}.features.h5",
    wildcard_constraints:
        model=r"(fdg|ecd|mmse)/[A-Za-z0-9_]+",
    params:
        set=lambda wc: model_of(wc).set_column,
        model_dir=lambda wc, input: os.path.dirname(input.model),
    threads: TRAIN_THREADS
    resources:
        gpu=1,
        mem_mb=6000,
        runtime=60,
    conda:
        "../../envs/train.yaml"
    log:
        "results/logs/predict/{model}.log",
    benchmark:
        "results/benchmarks/predict/{model}.tsv"
    shell:
        "python -m adtransfer predict-cohort --model-dir {params.model_dir:q} --cache {input.cache:q}"
        " --splits {input.splits:q} --set {params.set:q} --out {output.predictions:q} --features {output.features:q}"
        " --threads {threads} --log {log:q}"


rule train_baseline:
    input:
        cache=lambda wc: f"results/cache/{ROLE_COHORT[baseline_of(wc).role]}.h5",
        splits=lambda wc: f"results/splits/{ROLE_COHORT[baseline_of(wc).role]}.tsv",
    output:
        model="results/models/roi/{model}/model.json",
        predictions="results/predictions/roi/{model}.tsv",
    params:
        set=lambda wc: baseline_of(wc).set_column,
        task=lambda wc: baseline_of(wc).task,
        seed=config["seed"],
    conda:
        "../../envs/data.yaml"
    log:
        "results/logs/baseline/{model}.log",
    benchmark:
        "results/benchmarks/baseline/{model}.tsv"
    shell:
        "python -m adtransfer baseline --cache {input.cache} --splits {input.splits} --set {params.set}"
        " --task {params.task} --out {output.model} --predictions {output.predictions} --seed {params.seed}"
        " --log {log}"


rule evaluate:
    input:
        "results/predictions/{model}.tsv",
    output:
        "results/metrics/{model}.json",
    params:
        task=lambda wc: model_of(wc).task,
        n_boot=EVAL.get("n_bootstrap", 1000),
        threshold=EVAL.get("threshold", 0.5),
        seed=config["seed"],
    conda:
        "../../envs/data.yaml"
    log:
        "results/logs/evaluate/{model}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}.tsv"
    shell:
        "python -m adtransfer evaluate --predictions {input} --task {params.task} --out {output}"
        " --name {wildcards.model} --n-boot {params.n_boot} --seed {params.seed} --threshold {params.threshold}"
        " --log {log}"
