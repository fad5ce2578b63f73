# Stage 5: the training grid. One job per CNN of the catalog (src/adtransfer/catalog.py), each GPU-tagged:
# `--resources gpu=N` caps concurrent training. The catalog says each model's cohort, split column, task and parent
# (FDG pre-training per sample size -> ECD fine-tuning from each; ECD without FDG stage; MMSE FDG -> ECD), so
# adding a model or a stage of the transfer chain is a catalog edit: this rule does not change.
# The job also writes the trained model's predictions and FC features for every subject of its cohort (what
# `adtransfer predict-cohort` writes), so TensorFlow starts and the cache is read once per CNN, not twice.


rule train:
    input:
        unpack(train_inputs),
    output:
        **{key: layout.model_file("{model}", file) for key, file in TRAINED_FILES.items()},
        predictions=layout.predictions("{model}"),
        features=layout.features("{model}"),
    wildcard_constraints:
        model=CNN_PATTERN,
    params:
        set=lambda wc: MODELS[wc.model].set_column,
        settings=lambda wc: train_settings(MODELS[wc.model]),
        pretrained=lambda wc, input: ["--pretrained", input.pretrained] if "pretrained" in input.keys() else [],
        # resume files kept across a killed job (not an output: Snakemake would delete them before the rerun)
        work=lambda wc: layout.training_work(wc.model),
    threads: TRAIN_THREADS
    resources:
        gpu=1,
        mem_mb=8000,
        # minutes on a GPU node (SLURM): pre-training on the large FDG cohort takes longest; + 60 for predicting the
        # whole cohort afterwards (the budget of the former predict job)
        runtime=lambda wc: (720 if MODELS[wc.model].role == "fdg" else 240) + 60,
    conda:
        "../../envs/train.yaml"
    log:
        layout.log("train", "{model}"),
    benchmark:
        layout.benchmark("train", "{model}")
    shell:
        "python -m adtransfer train --cache {input.cache:q} --splits {input.splits:q} --set {params.set:q}"
        " {params.pretrained:q} --model-out {output.model:q} --history-out {output.history:q}"
        " --metrics-out {output.metrics:q} --predictions-out {output.predictions:q} --features-out {output.features:q}"
        " --work-dir {params.work:q} --settings {params.settings:q}"
        " --threads {threads} --log {log:q}"
