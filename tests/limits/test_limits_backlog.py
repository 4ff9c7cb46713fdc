"""A backlog under the worker's concurrency: 40 exports requested at once wait in the queue for a worker
that builds 2 at a time, while the sweeper runs every second with a 4-second grace period (so it takes
every waiting request for a lost one and queues it again, many times over). Every export completes, none
fails, none is built twice. And a request the worker fails on every time ends in the dead-letter queue
after maxReceiveCount deliveries, and its job is failed with a clear error."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from data_export import wiring
from data_export.errors import failure_message
from data_export.models import ErrorCode, JobStatus

from tests.e2e.client import BASE, call
from tests.limits.exports import Claims, archive_objects, start_exports, verify, wait_for_jobs
from tests.limits.figures import measured
from tests.limits.orgs import record_count, seed_organizations

BACKLOG = 40


def test_a_backlog_completes_under_the_workers_concurrency_each_export_built_once(
    stack: Any, api_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenants = seed_organizations(stack, tmp_path, [3] * BACKLOG, first_index=1000)
    assert all(record_count(tenant) <= 30 for tenant in tenants)  # each one the worker's to build
    claims = Claims(monkeypatch)
    with measured(stack, "(a) backlog of 40 small exports, worker concurrency 2") as figures:
        jobs = start_exports(api_url, tenants)
        assert len(jobs) == BACKLOG
        # Meanwhile people poll, 8 at once: each answer is its own job's (no environment serves two events).
        with ThreadPoolExecutor(8) as pool:
            polls = list(
                pool.map(
                    lambda item: call(
                        "GET", f"{api_url}{BASE}/{item[1].organization_id}/{item[0]}", item[1].key
                    ),
                    list(jobs.items()) * 2,
                )
            )
        assert all(reply.status == 200 for reply in polls)
        assert [reply.json()["job_id"] for reply in polls] == list(jobs) * 2
        finished = wait_for_jobs(jobs, timeout=180)
        # Copies of waiting requests the accelerated sweeper queued (dozens here; none on a machine fast
        # enough to drain the backlog within the 4 s grace period: the test then proves less).
        figures["requeued by the sweeper"] = sum(job.requeued for job in finished.values())
    failed = {job_id: job.error for job_id, job in finished.items() if job.status is not JobStatus.COMPLETED}
    assert not failed, failed
    # Built once each: one claim of each job, one archive object, the one the job points at.
    assert claims.by_job == dict.fromkeys(jobs, 1), claims.by_job
    for job_id, job in finished.items():
        assert archive_objects(stack, job) == [job.object_key]
        assert verify(stack, job, jobs[job_id]) == []
    worker = stack.concurrency.stats["ExportWorkerFunction"]
    assert worker.recent_peak == 2, worker  # the backlog kept both busy, never more
    assert worker.throttles == 0  # the poller waits for free concurrency instead of invoking into a throttle


def test_a_poison_request_ends_in_the_dead_letter_queue_and_fails_its_job(
    stack: Any, api_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tenant,) = seed_organizations(stack, tmp_path, [3], first_index=2000)
    dispatcher = wiring.dispatcher()
    dispatch = dispatcher.dispatch
    deliveries: list[float] = []

    def crash_on_poison(organization_id: str, job_id: str) -> Any:
        if organization_id == tenant.organization_id:
            deliveries.append(time.monotonic())
            raise RuntimeError("injected: the worker crashes on this request")
        return dispatch(organization_id, job_id)

    monkeypatch.setattr(dispatcher, "dispatch", crash_on_poison)
    sqs = stack.client("sqs")
    with measured(stack, "(f) a poison request: dead-letter queue after maxReceiveCount") as figures:
        jobs = start_exports(api_url, [tenant])
        (job,) = wait_for_jobs(jobs, timeout=120).values()
        figures["deliveries"] = len(deliveries)
        figures["copies queued by the sweeper"] = job.requeued
    assert job.status is JobStatus.FAILED and job.error_code is ErrorCode.REQUEST_FAILED
    assert job.error == failure_message(ErrorCode.REQUEST_FAILED)
    assert "failed repeatedly" in job.error
    # Each message of it delivered maxReceiveCount (3) times at most, a visibility timeout (5 s) apart,
    # then dead-lettered; the sweeper queued copies of the waiting request meanwhile (its 4 s grace), and
    # each copy failed the same way until the job was failed.
    assert len(deliveries) >= 3, deliveries
    assert stack.concurrency.queues["ExportQueue"].highest_receive_count == 3
    assert stack.concurrency.stats["ExportDeadLetterFunction"].invocations >= 1
    dead_letters = sqs.get_queue_attributes(
        QueueUrl=stack.physical["ExportDeadLetterQueue"], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    # Consumed: the dead-letter function failed the job.
    assert dead_letters["ApproximateNumberOfMessages"] == "0"
