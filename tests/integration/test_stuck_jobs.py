"""No job is left stuck: the sweeper and the dead-letter consumer against the real stores on moto, with their
functions' roles. The sweeper's clock is moved forward instead of waiting; its queue is a real SQS queue of
its own (used as the admin: tests.credentials.PrivateQueue), so that no worker of the test session picks the
re-queued message up."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from data_export import wiring
from data_export.errors import failure_message
from data_export.export.sweeper import DEAD_LETTER, INTERRUPTED, NEVER_STARTED
from data_export.ids import new_id
from data_export.jobs import Job
from data_export.models import JobStatus

from tests.credentials import PrivateQueue, as_function
from tests.jobs import create_job, sweeper_at

ACME = "eHcFM2wk4RdyYG8yMrTGbQ"


def new_job(created_at: datetime) -> Job:
    return create_job(ACME, created_at=created_at)


@pytest.fixture
def queue(stack: Any) -> PrivateQueue:
    return PrivateQueue(stack, f"sweeper-test-{new_id()}")


@pytest.fixture
def queue_url(queue: PrivateQueue) -> str:
    return queue.url


def messages(stack: Any, queue_url: str) -> list[dict[str, Any]]:
    """Take the messages off the queue (deleted: one left behind would come back after its visibility
    timeout and be seen twice), all of them: the sweeper fails a pending job only once its queue is empty."""
    sqs, bodies = stack.client("sqs"), []
    while received := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in received:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            bodies.append(json.loads(message["Body"]))
    return bodies


def status(job: Job) -> Job:
    return wiring.export_service().get(ACME, job.job_id)


def leave_behind(stack: Any, job: Job, run_id: str) -> None:
    """What an execution that died mid-way leaves (as the admin: its steps are long gone): a built unit and
    a unit's open upload under tmp/, an open upload and a copied archive under exports/."""
    s3, bucket = stack.client("s3"), stack.physical["ExportsBucket"]
    tmp, final = f"tmp/{ACME}/{job.job_id}/{run_id}/", f"exports/{ACME}/{job.job_id}/{run_id}/"
    s3.put_object(Bucket=bucket, Key=f"{tmp}u0.part", Body=b"unit")
    s3.create_multipart_upload(Bucket=bucket, Key=f"{tmp}u1.part")
    s3.create_multipart_upload(Bucket=bucket, Key=f"{final}{job.output_filename}")
    s3.put_object(Bucket=bucket, Key=f"{final}copied-{job.output_filename}", Body=b"archive")
    assert leftovers(stack, job) != ([], [])


def leftovers(stack: Any, job: Job) -> tuple[list[str], list[str]]:
    """Objects and multipart uploads under the job's temporary and final prefixes."""
    s3, bucket = stack.client("s3"), stack.physical["ExportsBucket"]
    objects: list[str] = []
    uploads: list[str] = []
    for prefix in (f"tmp/{ACME}/{job.job_id}/", f"exports/{ACME}/{job.job_id}/"):
        objects += [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
        uploads += [
            u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
        ]
    return objects, uploads


def test_a_lost_pending_job_is_queued_again_once_then_failed(
    stack: Any, queue: PrivateQueue, queue_url: str
) -> None:
    now = datetime.now(UTC)
    job = new_job(now - timedelta(hours=1))
    fresh = new_job(now)
    report = sweeper_at(stack, queue, now).sweep()
    assert job.job_id in report.requeued and fresh.job_id not in report.requeued + report.failed
    # (Other tests' jobs pending for long in this session may be swept too: look at this test's own.)
    assert [m for m in messages(stack, queue_url) if m["job_id"] in (job.job_id, fresh.job_id)] == [
        {"organization_id": ACME, "job_id": job.job_id}
    ]
    assert status(job).status is JobStatus.PENDING and status(job).requeued == 1
    # Within a grace period of being queued again it is left alone; after one, with its queue empty (the
    # message taken off above and no worker ever saw the job), its request is surely lost.
    assert job.job_id not in sweeper_at(stack, queue, now + timedelta(minutes=5)).sweep().failed
    messages(stack, queue_url)  # what that sweep queued again of other tests' jobs
    report = sweeper_at(stack, queue, now + timedelta(minutes=16)).sweep()
    assert job.job_id in report.failed
    failed = status(job)
    assert failed.status is JobStatus.FAILED and failed.error_code is NEVER_STARTED
    assert failed.error == failure_message(NEVER_STARTED)
    assert [m for m in messages(stack, queue_url) if m["job_id"] == job.job_id] == []
    assert job.job_id not in {open_job.job_id for open_job in wiring.export_builder().jobs.iter_open()}


def test_a_worker_build_whose_lease_ran_out_is_failed_and_cleaned_up(stack: Any, queue: PrivateQueue) -> None:
    now = datetime.now(UTC)
    job = new_job(now)
    jobs, s3 = wiring.export_builder().jobs, stack.client("s3")
    assert jobs.claim(job, attempt_id="worker-attempt", now=now, lease_until=int(now.timestamp()) + 960)
    key = f"exports/{ACME}/{job.job_id}/worker-attempt/{job.output_filename}"
    upload = s3.create_multipart_upload(Bucket=stack.physical["ExportsBucket"], Key=key)
    jobs.save_progress(job, attempt_id="worker-attempt", object_key=key, upload_id=upload["UploadId"])
    assert job.job_id not in sweeper_at(stack, queue, now + timedelta(minutes=5)).sweep().failed  # alive
    report = sweeper_at(stack, queue, now + timedelta(minutes=17)).sweep()
    assert job.job_id in report.failed
    assert status(job).status is JobStatus.FAILED and status(job).error_code is INTERRUPTED
    assert status(job).error == failure_message(INTERRUPTED)
    uploads = s3.list_multipart_uploads(
        Bucket=stack.physical["ExportsBucket"], Prefix=f"exports/{ACME}/{job.job_id}/"
    )
    assert uploads.get("Uploads", []) == []


def test_a_step_functions_run_whose_execution_is_gone_is_failed_and_cleaned_up(
    stack: Any, queue: PrivateQueue
) -> None:
    now = datetime.now(UTC)
    job = new_job(now)
    # Claimed by an execution named after the job, with a long lease, but no such execution runs.
    assert wiring.export_builder().jobs.claim(
        job, attempt_id=job.job_id, now=now, lease_until=int(now.timestamp()) + 7200
    )
    leave_behind(stack, job, job.job_id)
    report = sweeper_at(stack, queue, now + timedelta(minutes=1)).sweep()
    assert job.job_id in report.failed
    assert status(job).error_code is INTERRUPTED
    assert leftovers(stack, job) == ([], [])


def test_dead_lettered_requests_fail_their_jobs(stack: Any) -> None:
    now = datetime.now(UTC)
    pending, finished = new_job(now), new_job(now)
    with as_function("ExportWorkerFunction"):
        wiring.export_builder().build(ACME, finished.job_id)
    body = [{"organization_id": ACME, "job_id": job.job_id} for job in (pending, finished)]
    event = {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": f"r{i}",
                "body": json.dumps(b),
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": stack.arns["ExportDeadLetterQueue"],
                "awsRegion": "us-east-1",
            }
            for i, b in enumerate(body)
        ]
    }
    assert stack.invoke("ExportDeadLetterFunction", event) == {"batchItemFailures": []}
    assert status(pending).status is JobStatus.FAILED and status(pending).error_code is DEAD_LETTER
    assert status(pending).error == failure_message(DEAD_LETTER)
    assert status(finished).status is JobStatus.COMPLETED


def test_a_dead_lettered_request_of_a_dead_execution_fails_its_job_and_cleans_up(stack: Any) -> None:
    """The request's job is processing, claimed by an execution that no longer runs: the dead-letter function
    asks Step Functions, fails the job and removes what the run left."""
    now = datetime.now(UTC)
    job = new_job(now)
    assert wiring.export_builder().jobs.claim(
        job, attempt_id=job.job_id, now=now, lease_until=int(now.timestamp()) + 7200
    )
    leave_behind(stack, job, job.job_id)
    record = {
        "messageId": "m0",
        "receiptHandle": "r0",
        "body": json.dumps({"organization_id": ACME, "job_id": job.job_id}),
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": stack.arns["ExportDeadLetterQueue"],
        "awsRegion": "us-east-1",
    }
    assert stack.invoke("ExportDeadLetterFunction", {"Records": [record]}) == {"batchItemFailures": []}
    assert status(job).status is JobStatus.FAILED and status(job).error_code is DEAD_LETTER
    assert leftovers(stack, job) == ([], [])
