"""A workaround for Snakemake's job rate limiter, called from the Snakefile's onstart (no Snakemake import here).

With a rate limiter (--max-jobs-per-timespan, default 100/1s), Snakemake >= 8.17 ends each scheduling round by
starting a timer that triggers another round, and every finished job adds one more such chain that never ends
(JobScheduler.schedule / _schedule_reevalutation, checked in 9.15 and 9.27; upstream: snakemake/snakemake#3744).
After the demo's ~300 preprocessing jobs its main process ran ~250 timer threads and used 45-60 % of a core
re-selecting jobs, beside two training jobs on 2 cores. Without a limiter Snakemake selects jobs when one finishes
or fails, which is all a local run needs. On a cluster the default hardly binds (the SLURM profile's `jobs: 100` caps
the queue; with a larger `jobs`, set a limit to pace sbatch), so it goes too; a limit the user sets there is kept.
The Snakemake that runs inside a SLURM job is started with --no-hooks, so this does not reach it (its group of at
most `group-components` jobs keeps the default).
"""

from __future__ import annotations

DEFAULT_LIMIT = (100, 1)  # Snakemake's --max-jobs-per-timespan default, 100/1s


def keep_scheduler_idle(workflow) -> str | None:
    """Remove the job rate limiter of `workflow.scheduler` where it only costs CPU (see the module docstring); return
    a message for the user when a limit they set is dropped, else None. Does nothing if Snakemake's internals differ."""
    scheduler = getattr(workflow, "scheduler", None)
    limiter = getattr(scheduler, "job_rate_limiter", None)
    if limiter is None:
        return None
    limit = (getattr(limiter, "max_jobs", None), getattr(limiter, "timespan", None))
    if None in limit:  # another Snakemake's limiter: leave it
        return None
    local = bool(getattr(workflow, "local_exec", False))
    if limit != DEFAULT_LIMIT and not local:
        return None
    scheduler.job_rate_limiter = None
    if limit != DEFAULT_LIMIT:
        return (
            f"adtransfer: --max-jobs-per-timespan {limit[0]}/{limit[1]:.12g}s is ignored in a local run (Snakemake's "
            "limiter re-runs its job selection from ever more timer threads; a local run starts jobs as others end)"
        )
    return None
