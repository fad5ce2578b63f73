# Stage 2: one job per subject, so that a changed scan reruns only its own preprocessing.
# Native-space cohorts are registered to the modality's MNI template; `registration_qc` then flags subjects
# whose registration is poor and (config preprocess.registration.on_fail) excludes or keeps them.


rule preprocess:
    input:
        scan=scan_of,
    output:
        nii="results/preproc/{cohort}/{subject}.nii.gz",
        sidecar="results/preproc/{cohort}/{subject}.json",
        qc="results/preproc/{cohort}/{subject}.png",
        registration_qc="results/preproc/{cohort}/registration/{subject}.png",
    params:
        modality=lambda wc: config["cohorts"][wc.cohort]["modality"],
        space=lambda wc: space_of(wc.cohort),
        registration=lambda wc: registration_settings(wc.cohort),
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
        "python -m adtransfer preprocess --input {input.scan:q} --output {output.nii:q} --subject {wildcards.subject}"
        " --modality {params.modality} --space {params.space} --registration {params.registration:q}"
        " --reference {params.reference}"
        " --interpolation {params.interpolation} --crop-shape {params.crop_shape}"
        " --crop-origin={params.crop_origin} --qc {output.qc:q} --registration-qc {output.registration_qc:q}"
        " --sidecar {output.sidecar:q} --log {log:q}"


rule registration_qc:
    input:
        table="results/cohort/{cohort}.tsv",
        sidecars=lambda wc: expand("results/preproc/{{cohort}}/{subject}.json", subject=subjects(wc.cohort)),
    output:
        qc=report(
            "results/qc/{cohort}/registration.tsv",
            caption="../report/registration_qc.rst",
            category="0. Data quality",
            labels={"cohort": "{cohort}", "table": "registration QC"},
        ),
        included="results/qc/{cohort}/registration_included.tsv",
    params:
        preproc_dir=lambda wc, input: os.path.dirname(input.sidecars[0]),
        min_similarity=REGISTRATION.get("min_similarity", 0.6),
        on_fail=REGISTRATION.get("on_fail", "exclude"),
    conda:
        "../../envs/data.yaml"
    log:
        "results/logs/registration_qc/{cohort}.log",
    benchmark:
        "results/benchmarks/registration_qc/{cohort}.tsv"
    shell:
        "python -m adtransfer registration-qc --table {input.table:q} --preproc-dir {params.preproc_dir:q}"
        " --min-similarity {params.min_similarity} --on-fail {params.on_fail} --out {output.qc:q}"
        " --included {output.included:q} --log {log:q}"
