"""Big exports under Step Functions' and Lambda's limits: organizations of 45 records (over the fast path's
30 here) are built by the state machine in units of 5 records, by a unit builder that runs 8 units at once
while each execution's Map asks for 16, and 2 executions are admitted at once.

- (b) 4 big exports requested at once all complete, their archives right, never more than 8 units at once;
- (d) their throttled unit builds (Lambda.TooManyRequestsException) are retried and succeed; and with the
  unit builder's whole concurrency taken, an export waits out its throttles and completes;
- (c) a unit that runs past its timeout (8 s) fails with Sandbox.Timedout, is retried alone, and the job
  completes;
- an execution whose history reaches Step Functions' limit (lowered to 60 events) fails with States.Runtime,
  and the sweeper fails its job."""

from __future__ import annotations

import time
from typing import Any

import pytest
from data_export import wiring
from data_export.errors import failure_message
from data_export.export.plan import WorkUnit
from data_export.models import ErrorCode, JobStatus

from benchmarks.load import Tenant
from tests.limits.conftest import RESERVED, UNIT_TIMEOUT_SECONDS
from tests.limits.exports import execution_history, start_exports, task_failures, verify, wait_for_jobs
from tests.limits.figures import measured
from tests.limits.orgs import record_count, seed_organizations

BUILD_UNIT = "ExportBuildUnitFunction"
PRODUCTS = 40  # 45 records: over FAST_PATH_MAX_RECORDS (30), cut into units of CHUNK_MAX_RECORDS (5)
THROTTLED = "Lambda.TooManyRequestsException"


@pytest.fixture(scope="module")
def tenants(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> list[Tenant]:
    seeded = seed_organizations(stack, tmp_path_factory.mktemp("big"), [PRODUCTS] * 7, first_index=3000)
    assert all(record_count(tenant) == 45 for tenant in seeded)
    return seeded


def check_completed(stack: Any, jobs: dict[str, Tenant], finished: dict[str, Any]) -> dict[str, list[Any]]:
    """Every job completed by its execution, every unit built, the archive right; returns the histories."""
    histories = {}
    for job_id, job in finished.items():
        if job.status is not JobStatus.COMPLETED:
            _, events = execution_history(stack, job_id)
            causes = [
                (
                    event["type"],
                    event.get("taskFailedEventDetails") or event.get("executionFailedEventDetails"),
                )
                for event in events
                if event["type"] in ("TaskFailed", "ExecutionFailed", "MapIterationFailed")
            ]
            pytest.fail(f"job {job_id} {job.status.value}: {job.error}; {causes}")
        assert job.chunked and job.units_total > 7 and len(job.units_done) == job.units_total
        assert verify(stack, job, jobs[job_id]) == []
        execution, events = execution_history(stack, job_id)
        assert execution["status"] == "SUCCEEDED", execution
        histories[job_id] = events
    return histories


def test_four_big_exports_at_once_complete_under_the_unit_builders_concurrency(
    stack: Any, api_url: str, tenants: list[Tenant]
) -> None:
    with measured(stack, "(b) 4 big exports at once, unit concurrency 8, 2 execution slots") as figures:
        jobs = start_exports(api_url, tenants[:4])
        finished = wait_for_jobs(jobs, timeout=240)
        histories = check_completed(stack, jobs, finished)
        failures = sum((task_failures(events) for events in histories.values()), start=task_failures([]))
        figures["units"] = sum(job.units_total for job in finished.values())
        figures["failed task attempts"] = dict(failures)
        figures["history events per execution"] = sorted(len(events) for events in histories.values())
    unit_builder = stack.concurrency.stats[BUILD_UNIT]
    assert unit_builder.recent_peak <= RESERVED[BUILD_UNIT]
    # (d) Each execution's Map asks for 16 units at once: the ninth and later were throttled, retried, built.
    assert failures[THROTTLED] > 0 and set(failures) == {THROTTLED}, failures


def test_a_throttled_unit_build_is_retried_and_the_export_completes(
    stack: Any, api_url: str, tenants: list[Tenant]
) -> None:
    held = []  # the unit builder's whole concurrency, taken
    while (environment := stack.reserve(BUILD_UNIT, timeout=0)) is not None:
        held.append(environment)
    try:
        with measured(stack, "(d) an export while every unit build is throttled at first") as figures:
            jobs = start_exports(api_url, tenants[4:5])
            (job_id,) = jobs
            deadline = time.monotonic() + 90
            while True:
                try:
                    _, events = execution_history(stack, job_id)
                except stack.client("stepfunctions").exceptions.ExecutionDoesNotExist:
                    events = []
                if task_failures(events)[THROTTLED]:
                    break
                assert time.monotonic() < deadline, "no unit build was throttled"
                time.sleep(0.2)
            for environment in held:
                stack.release(environment)
            held.clear()
            finished = wait_for_jobs(jobs, timeout=180)
            (events,) = check_completed(stack, jobs, finished).values()
            figures["failed task attempts"] = dict(task_failures(events))
    finally:
        for environment in held:
            stack.release(environment)
    assert task_failures(events)[THROTTLED] >= 1


def test_a_unit_past_its_timeout_is_retried_alone_and_the_export_completes(
    stack: Any, api_url: str, tenants: list[Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = tenants[5]
    chunked = wiring.chunked_export()
    build_unit = chunked.build_unit
    stuck: list[str] = []

    def stuck_once(organization_id: str, job_id: str, run_id: str, unit: WorkUnit) -> Any:
        if organization_id == tenant.organization_id and not stuck:
            stuck.append(unit.unit_id)
            time.sleep(UNIT_TIMEOUT_SECONDS + 2)  # then it goes on building: Python cannot kill the thread
        return build_unit(organization_id, job_id, run_id, unit)

    monkeypatch.setattr(chunked, "build_unit", stuck_once)
    invocations = stack.concurrency.stats[BUILD_UNIT].invocations
    with measured(stack, "(c) a unit past its 8 s timeout, retried") as figures:
        jobs = start_exports(api_url, [tenant])
        finished = wait_for_jobs(jobs, timeout=180)
        (events,) = check_completed(stack, jobs, finished).values()
        failures = task_failures(events)
        figures["failed task attempts"] = dict(failures)
    (job,) = finished.values()
    assert failures["Sandbox.Timedout"] == 1 and set(failures) <= {"Sandbox.Timedout", THROTTLED}, failures
    (timed_out,) = [event for event in events if event["type"] == "TaskFailed" and "Timedout" in str(event)]
    assert (
        f"Task timed out after {UNIT_TIMEOUT_SECONDS:.2f} seconds"
        in timed_out["taskFailedEventDetails"]["cause"]
    )
    # Retried alone: one run more than the units (throttled attempts never ran).
    assert stack.concurrency.stats[BUILD_UNIT].invocations - invocations == job.units_total + 1
    assert stack.concurrency.stats[BUILD_UNIT].timeouts >= 1


def test_an_execution_at_the_history_limit_fails_and_its_job_is_failed(
    stack: Any, api_url: str, tenants: list[Tenant]
) -> None:
    limit = stack.history_limit
    previous, limit.limit = limit.limit, 60  # a big export here needs about 150
    try:
        with measured(stack, "history limit lowered to 60 events"):
            jobs = start_exports(api_url, tenants[6:7])
            (job,) = wait_for_jobs(jobs, timeout=120).values()
            execution, events = execution_history(stack, job.job_id)
    finally:
        limit.limit = previous
    assert execution["status"] == "FAILED" and execution["error"] == "States.Runtime", execution
    assert "maximum number of history events (60)" in execution["cause"]
    assert len(events) == 60 and events[-1]["type"] == "ExecutionFailed"
    assert execution["executionArn"] in limit.exceeded
    assert job.status is JobStatus.FAILED and job.error_code is ErrorCode.INTERRUPTED
    assert job.error == failure_message(ErrorCode.INTERRUPTED)
