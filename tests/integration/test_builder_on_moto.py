"""The export build against a real moto server: failures, duplicate deliveries and dead attempts never leave
a corrupt archive behind a completed job, nor a multipart upload behind a failed one."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from data_export import wiring
from data_export.errors import failure_message
from data_export.export.builder import ExportBuilder
from data_export.ids import new_id
from data_export.jobs import Job
from data_export.models import ErrorCode, JobStatus
from data_export.storage.objects import Asset

from tests.credentials import as_function
from tests.jobs import create_job

ACME = "eHcFM2wk4RdyYG8yMrTGbQ"


class FailingAssets:
    """The real asset store, except that the n-th asset read fails (an S3 error mid-export)."""

    def __init__(self, real: Any, fail_on: int) -> None:
        self.real, self.fail_on, self.reads = real, fail_on, 0
        self._lock = threading.Lock()  # reads run ahead on several threads

    def open(self, key: str) -> Asset | None:
        with self._lock:
            self.reads += 1
            read = self.reads
        if read == self.fail_on:
            raise ConnectionError("S3 read timed out")
        return self.real.open(key)  # type: ignore[no-any-return]


def objects_under(stack: Any, prefix: str) -> list[str]:
    s3 = stack.client("s3")
    listed = s3.list_objects_v2(Bucket=stack.physical["ExportsBucket"], Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]


def uploads_under(stack: Any, prefix: str) -> list[str]:
    s3 = stack.client("s3")
    listed = s3.list_multipart_uploads(Bucket=stack.physical["ExportsBucket"], Prefix=prefix)
    return [upload["Key"] for upload in listed.get("Uploads", [])]


@pytest.fixture
def new_job(stack: Any) -> Job:
    """A pending job as the API stores it, with no queue message (so no poller can pick it up)."""
    return create_job(ACME)


def builder() -> ExportBuilder:
    return wiring.export_builder()


def build(export_builder: ExportBuilder, job_id: str) -> Job | None:
    """The worker's build of the job (as a message delivery runs it), as ExportWorkerFunction."""
    with as_function("ExportWorkerFunction"):
        return export_builder.build(ACME, job_id)


def test_failure_mid_export_fails_the_job_and_leaves_nothing(stack: Any, new_job: Any) -> None:
    failing = dataclasses.replace(builder(), assets=FailingAssets(builder().assets, fail_on=3))
    job = build(failing, new_job.job_id)
    assert job is not None and job.status is JobStatus.FAILED
    stored = wiring.export_service().get(ACME, new_job.job_id)
    assert stored.status is JobStatus.FAILED
    # The section is named; the internal error (here a timeout) is for the logs only.
    assert stored.error == failure_message(ErrorCode.EXPORT_FAILED, "products")
    assert stored.error_code is ErrorCode.EXPORT_FAILED and "S3 read timed out" not in stored.error
    statuses = {section.key: section.status for section in stored.sections}
    assert statuses["products"] is JobStatus.FAILED and statuses["offers"] is JobStatus.PENDING
    prefix = f"exports/{ACME}/{new_job.job_id}/"
    assert objects_under(stack, prefix) == [] and uploads_under(stack, prefix) == []
    with as_function("GetExportFunction"):
        assert wiring.export_service().describe(stored).download_url is None
    # A redelivery of the message does not resurrect a failed job.
    assert build(builder(), new_job.job_id).status is JobStatus.FAILED  # type: ignore[union-attr]


def test_duplicate_delivery_builds_once(stack: Any, new_job: Any) -> None:
    first = build(builder(), new_job.job_id)
    assert first is not None and first.status is JobStatus.COMPLETED
    second = build(builder(), new_job.job_id)
    assert second is not None and second.status is JobStatus.COMPLETED
    assert objects_under(stack, f"exports/{ACME}/{new_job.job_id}/") == [first.object_key]


def test_a_live_attempt_keeps_the_job(stack: Any, new_job: Any) -> None:
    jobs = builder().jobs
    now = datetime.now(UTC)
    assert jobs.claim(new_job, attempt_id="live-attempt", now=now, lease_until=int(now.timestamp()) + 600)
    result = build(builder(), new_job.job_id)
    assert (
        result is not None and result.status is JobStatus.PROCESSING and result.attempt_id == "live-attempt"
    )
    assert objects_under(stack, f"exports/{ACME}/{new_job.job_id}/") == []
    # ...and a late write from anyone else is refused.
    with as_function("ExportWorkerFunction"):
        assert not jobs.save_progress(new_job, attempt_id="someone-else", upload_id="x")


def test_a_dead_attempt_is_taken_over_and_its_upload_aborted(stack: Any, new_job: Any) -> None:
    jobs, s3 = builder().jobs, stack.client("s3")
    past = datetime.now(UTC) - timedelta(hours=1)
    assert jobs.claim(new_job, attempt_id="dead-attempt", now=past, lease_until=int(past.timestamp()) + 60)
    dead_key = f"exports/{ACME}/{new_job.job_id}/dead-attempt/{new_job.output_filename}"
    upload = s3.create_multipart_upload(Bucket=stack.physical["ExportsBucket"], Key=dead_key)
    assert jobs.save_progress(
        new_job, attempt_id="dead-attempt", object_key=dead_key, upload_id=upload["UploadId"]
    )
    result = build(builder(), new_job.job_id)
    assert result is not None and result.status is JobStatus.COMPLETED and result.attempt_id != "dead-attempt"
    prefix = f"exports/{ACME}/{new_job.job_id}/"
    assert uploads_under(stack, prefix) == []
    assert objects_under(stack, prefix) == [result.object_key]
    # The dead attempt, coming back to life, can no longer touch the job.
    with as_function("ExportWorkerFunction"):
        assert not jobs.save_progress(new_job, attempt_id="dead-attempt", upload_id="late")


def test_unknown_job_message_is_dropped(stack: Any) -> None:
    # A fresh id: the sample events' fixed job id may exist by now in this session's stack.
    assert build(builder(), new_id()) is None


def test_an_attempt_that_lost_its_lease_deletes_its_finished_archive(
    stack: Any, new_job: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attempt's Lambda stalled past its lease after its upload completed; another delivery took the job
    over meanwhile. The stale attempt's completion is refused and it deletes its own archive, which nobody
    else knows of (the job points at the new attempt's key)."""
    real = builder()
    later = datetime.now(UTC) + timedelta(seconds=real.settings.job_lease_seconds + 60)
    taken_over: list[bool] = []

    def checksum_after_a_takeover(key: str) -> str | None:
        checksum = real_checksum(key)
        job = wiring.jobs().get(ACME, new_job.job_id)
        assert job is not None
        # Another delivery, once the lease ran out, claims it (a worker's own write, under its role here).
        claimed = real.jobs.claim(
            job, attempt_id="takeover", now=later, lease_until=int(later.timestamp()) + 600
        )
        taken_over.append(claimed)
        return checksum

    real_checksum = real.exports.checksum_sha256
    monkeypatch.setattr(real.exports, "checksum_sha256", checksum_after_a_takeover)
    result = build(real, new_job.job_id)
    assert taken_over == [True]
    assert result is not None and result.status is JobStatus.PROCESSING and result.attempt_id == "takeover"
    prefix = f"exports/{ACME}/{new_job.job_id}/"
    assert objects_under(stack, prefix) == [] and uploads_under(stack, prefix) == []
