# Stage 1: the cohorts. Synthetic ones are generated (one rule per cohort, since each lists its own scans);
# every cohort's table and scans are then checked before anything downstream uses them.

for _cohort in [c for c in COHORTS if is_synthetic(c)]:

    rule:
        name:
            f"synth_{_cohort}"
        output:
            table=f"{synth_dir(_cohort)}/participants.tsv",
            scans=[f"{synth_dir(_cohort)}/scans/{s}.nii.gz" for s in subjects(_cohort)],
            truth=f"{synth_dir(_cohort)}/ground_truth.tsv",
            truth_json=f"{synth_dir(_cohort)}/ground_truth.json",
            pattern=f"{synth_dir(_cohort)}/ad_pattern.nii.gz",
        params:
            name=_cohort,
            modality=config["cohorts"][_cohort]["modality"],
            spec=json.dumps(synthetic_spec(_cohort), sort_keys=True),
            seed=config["seed"],
            out=lambda wc, output: os.path.dirname(output.table),
        threads: 2
        conda:
            "../../envs/data.yaml"
        log:
            f"results/logs/synth/{_cohort}.log",
        benchmark:
            f"results/benchmarks/synth/{_cohort}.tsv"
        shell:
            "python -m adtransfer synth --name {params.name} --modality {params.modality} --spec {params.spec:q}"
            " --seed {params.seed} --out {params.out} --threads {threads} --log {log}"


rule validate:
    input:
        table=lambda wc: table_path(wc.cohort),
        scans=cohort_scans,
    output:
        "results/cohort/{cohort}.tsv",
    params:
        modality=lambda wc: config["cohorts"][wc.cohort]["modality"],
        classify=lambda wc: "" if config["cohorts"][wc.cohort].get("classify", True) else "--no-classify",
    conda:
        "../../envs/data.yaml"
    log:
        "results/logs/validate/{cohort}.log",
    benchmark:
        "results/benchmarks/validate/{cohort}.tsv"
    shell:
        "python -m adtransfer validate {input.table:q} --modality {params.modality} {params.classify}"
        " --out {output} --log {log}"
