"""The sweeper's decisions on pending jobs, with small fakes for the stores: a job whose request may still be
in the queue (waiting, delayed or in flight) is never failed; one that a worker handled lately (a big export
waiting for an execution slot) is alive; a request that may be lost is queued again, and a job is failed as
never started only when it was queued again a grace period ago and the queue has been empty since."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from data_export.export.sweeper import INTERRUPTED, NEVER_STARTED, JobSweeper
from data_export.jobs import Job
from data_export.models import ArchiveFormat, ErrorCode, ExportRequestMessage, JobStatus
from data_export.settings import Settings

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:data-export-export"


class FakeJobs:
    def __init__(self, *jobs: Job) -> None:
        self.jobs = {job.job_id: job for job in jobs}
        self.failed: dict[str, ErrorCode] = {}

    def iter_open(self) -> Any:
        return [job.model_copy() for job in self.jobs.values() if not job.is_finished]

    def get(self, organization_id: str, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def mark_requeued(self, job: Job, *, now: datetime) -> bool:
        stored = self.jobs[job.job_id]
        if stored.status is not JobStatus.PENDING or stored.requeued != job.requeued:
            return False
        stored.requeued, stored.last_seen_at = job.requeued + 1, now
        return True

    def fail_abandoned(self, job: Job, *, now: datetime, error_code: ErrorCode, **_: Any) -> bool:
        stored = self.jobs[job.job_id]
        if stored.is_finished:
            return False
        stored.status = JobStatus.FAILED
        self.failed[job.job_id] = error_code
        return True


@dataclasses.dataclass
class FakeQueue:
    queued: int | None = 0
    sent: list[str] = dataclasses.field(default_factory=list)

    def depth(self) -> int | None:
        return self.queued

    def send(self, message: ExportRequestMessage, *, delay_seconds: int = 0) -> None:
        self.sent.append(message.job_id)


class FakeStepFunctions:
    class exceptions:
        class ExecutionDoesNotExist(Exception):
            pass

    def __init__(self, statuses: dict[str, str] | None = None) -> None:
        self.statuses = statuses or {}

    def describe_execution(self, executionArn: str) -> dict[str, str]:
        name = executionArn.rsplit(":", 1)[-1]
        if name not in self.statuses:
            raise self.exceptions.ExecutionDoesNotExist(name)
        return {"status": self.statuses[name]}


class NoExports:
    def discard(self, *prefixes: str) -> None:
        pass


def job(job_id: str, *, age: timedelta, **values: Any) -> Job:
    made = Job.new(
        organization_id="org",
        job_id=job_id,
        archive_format=ArchiveFormat.ZIP,
        output_filename=f"{job_id}.zip",
        created_at=NOW - age,
        retention_days=7,
    )
    return made.model_copy(update=values)


def sweeper(jobs: FakeJobs, queue: FakeQueue, statuses: dict[str, str] | None = None) -> Any:
    settings = Settings(
        jobs_table="j",
        org_data_table="o",
        api_keys_table="k",
        assets_bucket="a",
        exports_bucket="e",
        export_queue_url="q",
        state_machine_arn=ARN,
    )

    def at(now: datetime) -> JobSweeper:
        return JobSweeper(
            jobs=jobs,  # type: ignore[arg-type]
            queue=queue,  # type: ignore[arg-type]
            exports=NoExports(),  # type: ignore[arg-type]
            stepfunctions=FakeStepFunctions(statuses),  # type: ignore[arg-type]
            settings=settings,
            clock=lambda: now,
        )

    return at


def test_a_young_job_is_alive() -> None:
    jobs, queue = FakeJobs(job("young", age=timedelta(minutes=14))), FakeQueue(queued=0)
    report = sweeper(jobs, queue)(NOW).sweep()
    assert (report.alive, report.requeued, report.failed, queue.sent) == (1, [], [], [])


@pytest.mark.parametrize("queued", [1, 40, None])  # None: the queue's counts could not be read
def test_a_job_whose_request_may_still_be_queued_is_never_failed(queued: int | None) -> None:
    jobs, queue = FakeJobs(job("waiting", age=timedelta(minutes=20))), FakeQueue(queued=queued)
    at = sweeper(jobs, queue)
    for minutes in range(0, 6 * 60, 5):  # six hours of sweeps behind a queue that never empties
        report = at(NOW + timedelta(minutes=minutes)).sweep()
        assert report.failed == []
    assert jobs.jobs["waiting"].status is JobStatus.PENDING
    # Queued again once per grace period with no sign of life (a duplicate is harmless): 6 h / 15 min.
    assert queue.sent == ["waiting"] * len(queue.sent) and 20 <= len(queue.sent) <= 24


def test_a_big_export_waiting_for_a_slot_is_alive() -> None:
    # The worker handles its request again every ADMISSION_RETRY_SECONDS and marks it seen each time.
    waiting = job("big", age=timedelta(hours=3), chunked=True, last_seen_at=NOW - timedelta(minutes=1))
    jobs, queue = FakeJobs(waiting), FakeQueue(queued=0)
    report = sweeper(jobs, queue)(NOW).sweep()
    assert (report.alive, report.requeued, report.failed) == (1, [], [])


def test_a_lost_request_is_queued_again_then_failed_only_with_an_empty_queue() -> None:
    jobs, queue = FakeJobs(job("lost", age=timedelta(minutes=16))), FakeQueue(queued=0)
    at = sweeper(jobs, queue)
    assert at(NOW).sweep().requeued == ["lost"]
    assert at(NOW + timedelta(minutes=10)).sweep().alive == 1  # queued again lately
    queue.queued = 3  # others' requests: this one's may be among them
    assert at(NOW + timedelta(minutes=16)).sweep().requeued == ["lost"]
    queue.queued = 0
    assert at(NOW + timedelta(minutes=25)).sweep().alive == 1
    report = at(NOW + timedelta(minutes=32)).sweep()
    assert report.failed == ["lost"] and jobs.failed == {"lost": NEVER_STARTED}


def test_a_pending_big_export_follows_its_execution() -> None:
    starting = job("starting", age=timedelta(hours=1), chunked=True, last_seen_at=NOW - timedelta(hours=1))
    ended = job("ended", age=timedelta(hours=1), chunked=True, last_seen_at=NOW - timedelta(hours=1))
    jobs, queue = FakeJobs(starting, ended), FakeQueue(queued=0)
    report = sweeper(jobs, queue, {"starting": "RUNNING", "ended": "FAILED"})(NOW).sweep()
    assert report.alive == 1 and report.failed == ["ended"] and jobs.failed == {"ended": INTERRUPTED}


def test_a_job_that_moved_on_meanwhile_is_left_alone() -> None:
    lost = job("lost", age=timedelta(hours=1))
    jobs, queue = FakeJobs(lost), FakeQueue(queued=0)

    class RacingJobs(FakeJobs):
        def mark_requeued(self, job: Job, *, now: datetime) -> bool:
            return False  # a worker claimed it, or another sweep queued it, between read and write

    racing = RacingJobs(lost)
    report = sweeper(racing, queue)(NOW).sweep()
    assert (report.alive, report.requeued, queue.sent) == (1, [], [])
    assert jobs.failed == {}
