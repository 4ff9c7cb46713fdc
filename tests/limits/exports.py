"""Requests and checks shared by the limits tests: start exports through the API, wait for their jobs,
read their archives and their executions' histories, count every build that claimed a job."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from data_export import wiring
from data_export.jobs import Job
from data_export.models import JobStatus

from benchmarks.load import Tenant, verify_archive
from tests.e2e.client import BASE, call


def start_exports(api_url: str, tenants: Iterable[Tenant], archive_format: str = "zip") -> dict[str, Tenant]:
    """POST an export for each organization, 8 at once as a burst of clicks; job id -> its organization."""

    def start(tenant: Tenant) -> tuple[str, Tenant]:
        reply = call(
            "POST", f"{api_url}{BASE}/{tenant.organization_id}?archive_format={archive_format}", tenant.key
        )
        assert reply.status == 200, reply.body
        return str(reply.json()["job_id"]), tenant

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(start, tenants))


def get_job(organization_id: str, job_id: str) -> Job:
    job = wiring.jobs().get(organization_id, job_id)
    assert job is not None, job_id
    return job


def wait_for_jobs(jobs: dict[str, Tenant], timeout: float) -> dict[str, Job]:
    """Every job once it has finished (completed or failed)."""
    deadline = time.monotonic() + timeout
    finished: dict[str, Job] = {}
    while len(finished) < len(jobs):
        for job_id, tenant in jobs.items():
            if job_id not in finished:
                job = get_job(tenant.organization_id, job_id)
                if job.status in (JobStatus.COMPLETED, JobStatus.FAILED):
                    finished[job_id] = job
        if len(finished) < len(jobs):
            open_jobs = {
                job_id: get_job(t.organization_id, job_id).status
                for job_id, t in jobs.items()
                if job_id not in finished
            }
            assert time.monotonic() < deadline, f"{len(open_jobs)} jobs still open: {open_jobs}"
            time.sleep(0.5)
    return finished


def archive_objects(stack: Any, job: Job) -> list[str]:
    listing = stack.client("s3").list_objects_v2(
        Bucket=stack.physical["ExportsBucket"], Prefix=f"exports/{job.organization_id}/{job.job_id}/"
    )
    return [item["Key"] for item in listing.get("Contents", [])]


def verify(stack: Any, job: Job, tenant: Tenant) -> list[str]:
    """The completed job's archive, checked against what was seeded (benchmarks.load.verify_archive)."""
    assert job.status is JobStatus.COMPLETED and job.object_key, (job.status, job.error)
    body = (
        stack.client("s3")
        .get_object(Bucket=stack.physical["ExportsBucket"], Key=job.object_key)["Body"]
        .read()
    )
    return verify_archive(body, job.archive_format.value, job.job_id, tenant)


def execution_history(stack: Any, job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The job's execution (named after it) and its whole history."""
    sfn = stack.client("stepfunctions")
    arn = f"{str(stack.physical['ExportStateMachine']).replace(':stateMachine:', ':execution:')}:{job_id}"
    events: list[dict[str, Any]] = []
    token: dict[str, str] = {}
    while True:
        page = sfn.get_execution_history(executionArn=arn, maxResults=1000, **token)
        events += page["events"]
        if "nextToken" not in page:
            break
        token = {"nextToken": page["nextToken"]}
    return sfn.describe_execution(executionArn=arn), events


def task_failures(events: list[dict[str, Any]]) -> Counter[str]:
    """How many task attempts failed, by error name."""
    return Counter(
        event["taskFailedEventDetails"]["error"] for event in events if event["type"] == "TaskFailed"
    )


class Claims:
    """Every successful claim of a job (a build that took it: the worker's or an execution's Plan)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.by_job: Counter[str] = Counter()
        self._lock = threading.Lock()
        jobs = wiring.jobs()
        claim = jobs.claim

        def counted_claim(job: Job, **kwargs: Any) -> bool:
            claimed = claim(job, **kwargs)
            if claimed:
                with self._lock:
                    self.by_job[job.job_id] += 1
            return claimed

        monkeypatch.setattr(jobs, "claim", counted_claim)
