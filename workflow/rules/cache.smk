# Stage 3: gather a cohort's preprocessed volumes into one HDF5 file of mosaics (plus labels, ROI features).


rule cache:
    input:
        table=cohort_table_used,
        nii=lambda wc: [layout.preprocessed(wc.cohort, s, "nii") for s in subjects(wc.cohort)],
        sidecars=lambda wc: [layout.preprocessed(wc.cohort, s, "sidecar") for s in subjects(wc.cohort)],
    output:
        layout.cache("{cohort}"),
    params:
        size=config["mosaic"]["size"],
        modality=lambda wc: config["cohorts"][wc.cohort]["modality"],
        preproc_dir=lambda wc: layout.preproc_dir(wc.cohort),
    # one core: Snakemake starts a job only when its threads are free, so a 2-thread cache waited behind the
    # 1-thread training jobs that held the cores (the demo's ECD cache: 5 minutes)
    threads: 1
    conda:
        "../../envs/data.yaml"
    priority: DATA_PRIORITY
    log:
        layout.log("cache", "{cohort}"),
    benchmark:
        layout.benchmark("cache", "{cohort}")
    shell:
        "python -m adtransfer cache --table {input.table} --preproc-dir {params.preproc_dir} --output {output}"
        " --size {params.size} --modality {params.modality} --cohort {wildcards.cohort}"
        " --threads {threads} --log {log}"
