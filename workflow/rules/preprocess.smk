# Stage 2: one job per subject, so that a changed scan reruns only its own preprocessing.


rule preprocess:
    input:
        scan=scan_of,
    output:
        nii="results/preproc/{cohort}/{subject}.nii.gz",
        sidecar="results/preproc/{cohort}/{subject}.json",
        qc="results/preproc/{cohort}/{subject}.png",
    params:
        modality=lambda wc: config["cohorts"][wc.cohort]["modality"],
        space=lambda wc: config["cohorts"][wc.cohort].get("space", "mni"),
        reference=PREPROC.get("fdg_reference", "brain"),
        interpolation=PREPROC.get("interpolation", 1),
        crop_shape=CROP_SHAPE,
        crop_origin=CROP_ORIGIN,
    conda:
        "../../envs/data.yaml"
    log:
        "results/logs/preprocess/{cohort}/{subject}.log",
    benchmark:
        "results/benchmarks/preprocess/{cohort}/{subject}.tsv"
    shell:
        "python -m adtransfer preprocess --input {input.scan:q} --output {output.nii} --subject {wildcards.subject}"
        " --modality {params.modality} --space {params.space} --reference {params.reference}"
        " --interpolation {params.interpolation} --crop-shape {params.crop_shape}"
        " --crop-origin={params.crop_origin} --qc {output.qc} --sidecar {output.sidecar} --log {log}"
