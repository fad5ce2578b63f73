# Stage 4: subject-level splits per cohort (held-out test set; nested pre-training subsets; train/validation).


rule split:
    input:
        table=cohort_table_used,
        test_file=fixed_test_file,
    output:
        layout.splits("{cohort}"),
    params:
        args=lambda wc: split_args(wc.cohort),
    conda:
        "../../envs/data.yaml"
    priority: DATA_PRIORITY
    log:
        layout.log("split", "{cohort}"),
    benchmark:
        layout.benchmark("split", "{cohort}")
    shell:
        "python -m adtransfer split --table {input.table} --out {output} {params.args} --log {log}"
