# Stage 2: one job per subject, so that a changed scan reruns only its own preprocessing.
# Native-space cohorts are registered to the modality's MNI template; `registration_qc` then flags subjects
# whose registration is poor and (config preprocess.registration.on_fail) excludes or keeps them.


rule preprocess:
    input:
        scan=scan_of,
    output:
        **{kind: layout.preprocessed("{cohort}", "{subject}", kind) for kind in ("nii", "sidecar", "qc", "registration_qc")},
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
    priority: DATA_PRIORITY
    log:
        layout.log("preprocess", "{cohort}/{subject}"),
    benchmark:
        layout.benchmark("preprocess", "{cohort}/{subject}")
    shell:
        "python -m adtransfer preprocess --input {input.scan:q} --output {output.nii:q} --subject {wildcards.subject}"
        " --modality {params.modality} --space {params.space} --registration {params.registration:q}"
        " --reference {params.reference}"
        " --interpolation {params.interpolation} --crop-shape {params.crop_shape}"
        " --crop-origin={params.crop_origin} --qc {output.qc:q} --registration-qc {output.registration_qc:q}"
        " --sidecar {output.sidecar:q} --log {log:q}"


rule registration_qc:
    input:
        table=layout.cohort_table("{cohort}"),
        sidecars=lambda wc: [layout.preprocessed(wc.cohort, s, "sidecar") for s in subjects(wc.cohort)],
        pngs=registration_pngs,  # not read: declared so that the report shows them (common.smk)
    output:
        qc=report(
            layout.registration_qc("{cohort}"),
            caption="../report/registration_qc.rst",
            category="0. Data quality",
            labels={"cohort": "{cohort}", "table": "registration QC"},
        ),
        included=layout.registration_qc("{cohort}", included=True),
    params:
        preproc_dir=lambda wc: layout.preproc_dir(wc.cohort),
        min_similarity=REGISTRATION.get("min_similarity", 0.6),
        on_fail=REGISTRATION.get("on_fail", "exclude"),
    conda:
        "../../envs/data.yaml"
    priority: DATA_PRIORITY
    log:
        layout.log("registration_qc", "{cohort}"),
    benchmark:
        layout.benchmark("registration_qc", "{cohort}")
    shell:
        "python -m adtransfer registration-qc --table {input.table:q} --preproc-dir {params.preproc_dir:q}"
        " --min-similarity {params.min_similarity} --on-fail {params.on_fail} --out {output.qc:q}"
        " --included {output.included:q} --log {log:q}"
