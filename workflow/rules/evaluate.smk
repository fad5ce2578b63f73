# Stage 6: predictions and test metrics. Every CNN's predictions of every subject of its cohort come from its
# `train` job (train.smk: --predictions-out, the code of `adtransfer predict-cohort`); the ROI baseline (regional
# means -> linear model, no TensorFlow) is fitted on each training set a CNN uses and predicts the same subjects.
# Both write the same table format, so one `evaluate` rule scores them all.


rule train_baseline:
    input:
        cache=cohort_files(layout.cache, baseline_of),
        splits=cohort_files(layout.splits, baseline_of),
    output:
        model=layout.model_file("roi/{model}", "model.json"),
        predictions=layout.predictions("roi/{model}"),
    params:
        set=lambda wc: baseline_of(wc).set_column,
        task=lambda wc: baseline_of(wc).task,
        seed=config["seed"],
    conda:
        "../../envs/data.yaml"
    log:
        layout.log("baseline", "{model}"),
    benchmark:
        layout.benchmark("baseline", "{model}")
    shell:
        "python -m adtransfer baseline --cache {input.cache} --splits {input.splits} --set {params.set}"
        " --task {params.task} --out {output.model} --predictions {output.predictions} --seed {params.seed}"
        " --log {log}"


rule evaluate:
    input:
        layout.predictions("{model}"),
    output:
        layout.test_metrics("{model}"),
    params:
        task=lambda wc: model_of(wc).task,
        n_boot=EVAL.get("n_bootstrap", 1000),
        threshold=EVAL.get("threshold", 0.5),
        seed=config["seed"],
    conda:
        "../../envs/data.yaml"
    log:
        layout.log("evaluate", "{model}"),
    benchmark:
        layout.benchmark("evaluate", "{model}")
    shell:
        "python -m adtransfer evaluate --predictions {input} --task {params.task} --out {output}"
        " --name {wildcards.model} --n-boot {params.n_boot} --seed {params.seed} --threshold {params.threshold}"
        " --log {log}"
