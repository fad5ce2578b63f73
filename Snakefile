# adtransfer: two-stage transfer learning (ImageNet -> FDG PET -> ECD SPECT) for Alzheimer's disease.
# This file only validates the config and includes one rule file per stage; the logic is in src/adtransfer.

import sys

from snakemake.utils import min_version, validate

min_version("8.20")


configfile: "config/config.yaml"


# `splits: null` in a config (it overrides the default's section): the data stages only, no training grid
if "splits" in config and config["splits"] is None:
    del config["splits"]
validate(config, "src/adtransfer/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/cache.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/bundle.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/report.smk"


onstart:
    # Snakemake's job rate limiter burns CPU in long runs (src/adtransfer/scheduling.py)
    _dropped = keep_scheduler_idle(workflow)
    if _dropped:
        print(_dropped, file=sys.stderr)


onerror:
    print(
        "\nadtransfer: the run stopped. A failed job's log is printed above (results/logs/). Rerun the same command "
        "to go on: finished jobs are kept, an interrupted training job resumes from its last epoch (add "
        "--rerun-incomplete if Snakemake asks for it). After a hard kill (kill -9, power loss) run "
        "`snakemake --unlock` once first.",
        file=sys.stderr,
    )


rule all:
    input:
        [layout.cache(c) for c in COHORTS],
        all_models(),
        all_results(),
    default_target: True
