# Stage 5: the training grid. One job per model, each GPU-tagged: `--resources gpu=N` caps concurrent training.
#   FDG pre-training per sample size -> ECD fine-tuning from each; ECD from scratch; MMSE FDG -> ECD.
#   The ECD stage runs once per replicate seed ({rep}: "" for replicate 0, "_r1", "_r2", ...).

wildcard_constraints:
    size=r"\d+",
    rep=r"(_r[1-9][0-9]*)?",  # replicate r >= 1 of the ECD stage; empty for replicate 0 (train.replicates)


rule train_fdg:
    input:
        cache=f"results/cache/{FDG}.h5",
        splits=f"results/splits/{FDG}.tsv",
    output:
        **model_files("results/models/fdg/n{size}"),
    params:
        settings=train_settings(FDG, "classify"),
        out=lambda wc, output: os.path.dirname(output["model.keras"]),
    threads: TRAIN_THREADS
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=720,
    conda:
        "../../envs/train.yaml"
    log:
        "results/logs/train/fdg_n{size}.log",
    benchmark:
        "results/benchmarks/train/fdg_n{size}.tsv"
    shell:
        "python -m adtransfer train --cache {input.cache} --splits {input.splits} --set n{wildcards.size}"
        " --out {params.out} --settings {params.settings:q} --threads {threads} --log {log}"


rule finetune_ecd:
    input:
        cache=f"results/cache/{ECD}.h5",
        splits=f"results/splits/{ECD}.tsv",
        pretrained="results/models/fdg/n{size}/model.keras",
    output:
        **model_files("results/models/ecd/from_fdg_n{size}{rep}"),
    params:
        settings=lambda wc: train_settings(ECD, "classify", finetune=True, replicate=replicate_of(wc)),
        out=lambda wc, output: os.path.dirname(output["model.keras"]),
    threads: TRAIN_THREADS
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    conda:
        "../../envs/train.yaml"
    log:
        "results/logs/train/ecd_from_fdg_n{size}{rep}.log",
    benchmark:
        "results/benchmarks/train/ecd_from_fdg_n{size}{rep}.tsv"
    shell:
        "python -m adtransfer train --cache {input.cache} --splits {input.splits} --set nall"
        " --pretrained {input.pretrained} --out {params.out} --settings {params.settings:q}"
        " --threads {threads} --log {log}"


rule train_ecd_scratch:
    input:
        cache=f"results/cache/{ECD}.h5",
        splits=f"results/splits/{ECD}.tsv",
    output:
        **model_files("results/models/ecd/scratch{rep}"),
    params:
        settings=lambda wc: train_settings(ECD, "classify", replicate=replicate_of(wc)),
        out=lambda wc, output: os.path.dirname(output["model.keras"]),
    threads: TRAIN_THREADS
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    conda:
        "../../envs/train.yaml"
    log:
        "results/logs/train/ecd_scratch{rep}.log",
    benchmark:
        "results/benchmarks/train/ecd_scratch{rep}.tsv"
    shell:
        "python -m adtransfer train --cache {input.cache} --splits {input.splits} --set nall"
        " --out {params.out} --settings {params.settings:q} --threads {threads} --log {log}"


# The FDG MMSE model fine-tunes the FDG classifier of the largest pre-training size (the paper, Fig. 5), or starts
# from train.init (`train.mmse_init: init`); the catalog says which.
MMSE_FDG_PARENT = MODELS["mmse/fdg"].pretrained if "mmse/fdg" in MODELS else None


rule train_mmse_fdg:
    input:
        cache=f"results/cache/{FDG}.h5",
        splits=f"results/splits/{FDG}.tsv",
        **({"pretrained": f"results/models/{MMSE_FDG_PARENT}/model.keras"} if MMSE_FDG_PARENT else {}),
    output:
        **model_files("results/models/mmse/fdg"),
    params:
        settings=train_settings(FDG, "mmse", finetune=bool(MMSE_FDG_PARENT)),
        pretrained=lambda wc, input: ["--pretrained", input.pretrained] if "pretrained" in input.keys() else [],
        out=lambda wc, output: os.path.dirname(output["model.keras"]),
    threads: TRAIN_THREADS
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=720,
    conda:
        "../../envs/train.yaml"
    log:
        "results/logs/train/mmse_fdg.log",
    benchmark:
        "results/benchmarks/train/mmse_fdg.tsv"
    shell:
        "python -m adtransfer train --cache {input.cache} --splits {input.splits} --set mmse_set"
        " {params.pretrained:q} --out {params.out} --settings {params.settings:q} --threads {threads} --log {log}"


rule finetune_mmse_ecd:
    input:
        cache=f"results/cache/{ECD}.h5",
        splits=f"results/splits/{ECD}.tsv",
        pretrained="results/models/mmse/fdg/model.keras",
    output:
        **model_files("results/models/mmse/ecd_from_fdg"),
    params:
        settings=train_settings(ECD, "mmse", finetune=True),
        out=lambda wc, output: os.path.dirname(output["model.keras"]),
    threads: TRAIN_THREADS
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    conda:
        "../../envs/train.yaml"
    log:
        "results/logs/train/mmse_ecd_from_fdg.log",
    benchmark:
        "results/benchmarks/train/mmse_ecd_from_fdg.tsv"
    shell:
        "python -m adtransfer train --cache {input.cache} --splits {input.splits} --set mmse_set"
        " --pretrained {input.pretrained} --out {params.out} --settings {params.settings:q}"
        " --threads {threads} --log {log}"
