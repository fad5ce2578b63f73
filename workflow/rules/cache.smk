# Stage 3: gather a cohort's preprocessed volumes into one HDF5 file of mosaics (plus labels, ROI features).


rule cache:
    input:
        table=cohort_table_used,
        nii=lambda wc: expand("results/preproc/{{cohort}}/{subject}.nii.gz", subject=subjects(wc.cohort)),
        sidecars=lambda wc: expand("results/preproc/{{cohort}}/{subject}.json", subject=subjects(wc.cohort)),
    output:
        "results/cache/{cohort}.h5",
    params:
        size=config["mosaic"]["size"],
        modality=lambda wc: config["cohorts"][wc.cohort]["modality"],
        preproc_dir=lambda wc, input: os.path.dirname(input.nii[0]),
    threads: 2
    conda:
        "../../envs/data.yaml"
    log:
        "results/logs/cache/{cohort}.log",
    benchmark:
        "results/benchmarks/cache/{cohort}.tsv"
    shell:
        "python -m adtransfer cache --table {input.table} --preproc-dir {params.preproc_dir} --output {output}"
        " --size {params.size} --modality {params.modality} --cohort {wildcards.cohort}"
        " --threads {threads} --log {log}"
