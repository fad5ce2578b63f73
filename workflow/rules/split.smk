# Stage 4: subject-level splits per cohort (held-out test set; nested pre-training subsets; train/validation).


rule split:
    input:
        table=cohort_table_used,
        test_file=fixed_test_file,
    output:
        "results/splits/{cohort}.tsv",
    params:
        args=lambda wc: split_args(wc.cohort),
    conda:
        "../../envs/data.yaml"
    log:
        "results/logs/split/{cohort}.log",
    benchmark:
        "results/benchmarks/split/{cohort}.tsv"
    shell:
        "python -m adtransfer split --table {input.table} --out {output} {params.args} --log {log}"
