# Stage 1: the cohorts. Synthetic ones are generated (one rule per cohort, since each lists its own scans);
# every cohort's table and scans are then checked before anything downstream uses them.

for _cohort in [c for c in COHORTS if is_synthetic(c)]:

    rule:
        name:
            f"synth_{_cohort}"
        output:
            **{kind: layout.synth_file(_cohort, kind) for kind in layout.SYNTH_FILES},
            scans=[layout.synth_scan(_cohort, s) for s in subjects(_cohort)],
        params:
            name=_cohort,
            modality=config["cohorts"][_cohort]["modality"],
            spec=json.dumps(synthetic_spec(_cohort), sort_keys=True),
            seed=config["seed"],
            out=lambda wc, output: os.path.dirname(output.table),
        # 1: a 2-thread job waits until both cores are free, and once training holds one core (demo: the FDG
        # cohort's models started beside the ECD synthesis's turn) the other cohort's synthesis waited 8 minutes
        threads: 1
        conda:
            "../../envs/data.yaml"
        priority: DATA_PRIORITY
        log:
            layout.log("synth", _cohort),
        benchmark:
            layout.benchmark("synth", _cohort)
        shell:
            "python -m adtransfer synth --name {params.name} --modality {params.modality} --spec {params.spec:q}"
            " --seed {params.seed} --out {params.out} --threads {threads} --log {log}"


rule validate:
    input:
        table=lambda wc: table_path(wc.cohort),
        scans=cohort_scans,
    output:
        layout.cohort_table("{cohort}"),
    params:
        modality=lambda wc: config["cohorts"][wc.cohort]["modality"],
        classify=lambda wc: "" if config["cohorts"][wc.cohort].get("classify", True) else "--no-classify",
    conda:
        "../../envs/data.yaml"
    priority: DATA_PRIORITY
    log:
        layout.log("validate", "{cohort}"),
    benchmark:
        layout.benchmark("validate", "{cohort}")
    shell:
        "python -m adtransfer validate {input.table:q} --modality {params.modality} {params.classify}"
        " --out {output} --log {log}"
