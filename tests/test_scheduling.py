"""keep_scheduler_idle: which job rate limiters the Snakefile's onstart removes (fake Snakemake objects; the real
run is tests/workflow/test_workflow.py::test_a_local_run_is_not_paced_by_the_job_rate_limiter)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from adtransfer.scheduling import keep_scheduler_idle


def fake_workflow(local: bool, limit: tuple[int, float] | None):
    limiter = None if limit is None else SimpleNamespace(max_jobs=limit[0], timespan=limit[1])
    return SimpleNamespace(local_exec=local, scheduler=SimpleNamespace(job_rate_limiter=limiter))


@pytest.mark.parametrize(
    "local, limit, removed, message",
    [
        (True, (100, 1.0), True, False),  # the default, local: removed quietly
        (True, (1, 3600.0), True, True),  # a user's limit, local: removed, and the user is told
        (False, (100, 1.0), True, False),  # the default on a cluster: removed
        (False, (50, 60.0), False, False),  # a user's limit on a cluster: kept
        (False, (100, 3600.0), False, False),  # 100 per hour is not the default (the timespan counts too)
        (True, (100, 1), True, False),  # an int timespan (the deprecated --max-jobs-per-second 100) is the default
    ],
)
def test_which_limiters_go(local, limit, removed, message):
    wf = fake_workflow(local, limit)
    said = keep_scheduler_idle(wf)
    assert (wf.scheduler.job_rate_limiter is None) == removed
    assert bool(said) == message
    if message:
        assert "1/3600s" in said and "ignored in a local run" in said


def test_without_a_limiter_or_a_scheduler_nothing_happens():
    wf = fake_workflow(True, None)
    assert keep_scheduler_idle(wf) is None and wf.scheduler.job_rate_limiter is None
    assert keep_scheduler_idle(SimpleNamespace()) is None  # other Snakemake internals: left alone
    other = SimpleNamespace(local_exec=True, scheduler=SimpleNamespace(job_rate_limiter=SimpleNamespace()))
    assert keep_scheduler_idle(other) is None and other.scheduler.job_rate_limiter is not None
