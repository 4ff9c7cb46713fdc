"""What a client is told of a failed export holds nothing internal: real failures are driven on the local
stack (an AWS AccessDenied whose message names a role, an account and a bucket; Step Functions' errors handed
to the Fail task; a dead-lettered request; a build the sweeper finds dead; a request that could not be
queued), and every message the API answers (the poll, the list) or announces (the Export Failed event) is
a fixed sentence with its error_code. The detail is logged with the job id."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from data_export import wiring
from data_export.errors import ServiceUnavailableError, failure_message
from data_export.ids import new_id
from data_export.models import ArchiveFormat, ErrorCode, ExportRequestMessage
from data_export.storage.objects import Asset

from tests.credentials import PrivateQueue, as_function
from tests.e2e.client import BASE, call
from tests.jobs import create_job
from tests.security.helpers import new_key, organization, seed

ACME = "eHcFM2wk4RdyYG8yMrTGbQ"
ACME_KEY = "csb_uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo_b5b88299"
ACCOUNT = "123456789012"
DENIED = (
    f"User: arn:aws:sts::{ACCOUNT}:assumed-role/data-export-ExportWorkerRole/worker is not authorized to "
    f'perform: s3:GetObject on resource: "arn:aws:s3:::data-export-assets-{ACCOUNT}/orgs/x" because no '
    "identity-based policy allows the s3:GetObject action"
)

# What no client-visible message may hold: ARNs, account ids, the stack's resource names, exception or
# state names, tracebacks, botocore's phrasing.
UNSAFE = [
    re.compile(r"arn:", re.IGNORECASE),
    re.compile(r"(?<!\d)\d{12}(?!\d)"),
    re.compile(r"data-export-"),
    re.compile(r"\b(?:States|Lambda|Sandbox)\.\w"),
    re.compile(r"Exception|Traceback|AccessDenied"),
    re.compile(r"\b[A-Z][A-Za-z]*Error\b"),
    re.compile(r"\w+Error:"),
    re.compile(r"when calling the \w+ operation"),
]


def leaks(text: str | None, stack: Any) -> list[str]:
    """What in a client-visible message is internal (empty when nothing is)."""
    if not text:
        return []
    found = [pattern.pattern for pattern in UNSAFE if pattern.search(text)]
    names = {str(name).rsplit("/", 1)[-1] for name in stack.physical.values()} | {f"{stack.stack_name}-"}
    return found + [name for name in names if name and name in text]


def assert_safe(job: dict[str, Any], stack: Any) -> None:
    assert not leaks(job["error"], stack), job["error"]
    for section in job["sections"]:
        assert not leaks(section["error"], stack), section


class DeniedAssets:
    """The real asset store, except that reading a product's asset is refused as AWS refuses it."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def open(self, key: str) -> Asset | None:
        if "/products/" in key:
            response: Any = {
                "Error": {"Code": "AccessDenied", "Message": DENIED},
                "ResponseMetadata": {"HTTPStatusCode": 403},
            }
            raise ClientError(response, "GetObject")
        return self.real.open(key)  # type: ignore[no-any-return]


class RefusingQueue:
    """An SQS queue that refuses every message, as SQS does without sqs:SendMessage."""

    def send(self, message: ExportRequestMessage, **options: Any) -> None:
        queue = f"arn:aws:sqs:us-east-1:{ACCOUNT}:data-export-ExportQueue"
        response: Any = {
            "Error": {"Code": "AccessDenied", "Message": f"{DENIED} on resource {queue}"},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        }
        raise ClientError(response, "SendMessage")


@pytest.fixture
def fresh(stack: Any, tmp_path: Path) -> tuple[str, str]:
    """An organization of its own (so that the list shows this test's jobs) and its key."""
    key = new_key()
    fixture = organization("Failing", key)
    seed(stack, tmp_path, fixture)
    return fixture["organization"]["id"], key


def fail_step(stack: Any, organization_id: str, error: dict[str, str]) -> str:
    """A job claimed by a Step Functions run whose Catch hands ``error`` to the Fail task."""
    job = create_job(organization_id)
    now = datetime.now(UTC)
    assert wiring.jobs().claim(job, attempt_id=job.job_id, now=now, lease_until=int(now.timestamp()) + 600)
    event = {"organization_id": organization_id, "job_id": job.job_id, "run_id": job.job_id, "error": error}
    assert stack.invoke("ExportFailFunction", event)["status"] == "failed"
    return job.job_id


def dead_letter(stack: Any, organization_id: str) -> str:
    job = create_job(organization_id)
    record = {
        "messageId": "m1",
        "receiptHandle": "r1",
        "body": json.dumps({"organization_id": organization_id, "job_id": job.job_id}),
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": stack.arns["ExportDeadLetterQueue"],
        "awsRegion": "us-east-1",
    }
    assert stack.invoke("ExportDeadLetterFunction", {"Records": [record]}) == {"batchItemFailures": []}
    return job.job_id


def dead_build(stack: Any, organization_id: str) -> str:
    """A worker's build whose lease ran out, found by a sweep (its queue a private one)."""
    job = create_job(organization_id)
    now = datetime.now(UTC)
    assert wiring.jobs().claim(job, attempt_id="dead-attempt", now=now - timedelta(hours=1), lease_until=1)
    queue = PrivateQueue(stack, f"errors-sweep-{new_id()}")
    sweeper = dataclasses.replace(wiring.sweeper(), queue=queue)  # type: ignore[arg-type]
    with as_function("ExportSweeperFunction"):
        assert job.job_id in sweeper.sweep().failed
    return job.job_id


def unqueued(organization_id: str) -> str:
    """A start whose request SQS refuses, as StartExportFunction: the job it created is failed at once."""
    service = dataclasses.replace(wiring.export_service(), queue=RefusingQueue())  # type: ignore[arg-type]
    with pytest.raises(ServiceUnavailableError) as refused, as_function("StartExportFunction"):
        service.start(organization_id, ArchiveFormat.TAR_GZ)
    assert "arn:" not in refused.value.message and ACCOUNT not in refused.value.message
    pointer = wiring.jobs().pointer(organization_id, f"open#{ArchiveFormat.TAR_GZ.value}")
    assert pointer is not None
    return pointer


def received_events(stack: Any, queue_url: str, job_ids: set[str]) -> dict[str, dict[str, Any]]:
    sqs, received = stack.client("sqs"), {}
    deadline = time.monotonic() + 30
    while set(received) != job_ids and time.monotonic() < deadline:
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in reply.get("Messages", []):
            event = json.loads(message["Body"])
            if event["detail"]["job_id"] in job_ids:
                received[event["detail"]["job_id"]] = event
    return received


def listen(stack: Any, organization_ids: list[str]) -> str:
    """A queue that receives the export events of these organizations."""
    events, sqs = stack.client("events"), stack.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"error-events-{new_id()}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    bus, rule = stack.physical["ExportEventBus"], f"errors-{new_id()}"
    pattern = {"source": ["data-export"], "detail": {"organization_id": organization_ids}}
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return str(queue_url)


def test_clients_are_told_fixed_sentences_and_codes_never_internal_errors(
    api_url: str, stack: Any, fresh: tuple[str, str]
) -> None:
    organization_id, key = fresh
    events_queue = listen(stack, [organization_id, ACME])
    denied = create_job(ACME)
    builder = wiring.export_builder()
    with as_function("ExportWorkerFunction"):
        dataclasses.replace(builder, assets=DeniedAssets(builder.assets)).build(ACME, denied.job_id)
    lambda_denied = {
        "errorType": "ClientError",
        "errorMessage": f"An error occurred (AccessDeniedException) when calling the PutItem operation: "
        f"{DENIED} on resource: arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/data-export-JobsTable",
        "stackTrace": ['  File "/var/task/app.py", line 30, in handler\n'],
    }
    expected: dict[str, tuple[str, ErrorCode, str]] = {  # job id: (organization, code, sentence)
        denied.job_id: (ACME, ErrorCode.EXPORT_FAILED, failure_message(ErrorCode.EXPORT_FAILED, "products")),
    }
    failures = {
        ErrorCode.TOO_LARGE: {
            "Error": "States.DataLimitExceeded",
            "Cause": f"The state/task 'arn:aws:lambda:us-east-1:{ACCOUNT}:function:data-export-Plan' "
            "returned a result with a size exceeding the maximum number of bytes service limit.",
        },
        ErrorCode.EXPORT_FAILED: {"Error": "ClientError", "Cause": json.dumps(lambda_denied)},
        ErrorCode.TIMED_OUT: {
            "Error": "Sandbox.Timedout",
            "Cause": json.dumps(
                {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": "RequestId: x Error: Task timed out after 900 s",
                }
            ),
        },
    }
    for code, error in failures.items():
        expected[fail_step(stack, organization_id, error)] = (organization_id, code, failure_message(code))
    for code, job_id in (
        (ErrorCode.REQUEST_FAILED, dead_letter(stack, organization_id)),
        (ErrorCode.INTERRUPTED, dead_build(stack, organization_id)),
        (ErrorCode.NEVER_STARTED, unqueued(organization_id)),
    ):
        expected[job_id] = (organization_id, code, failure_message(code))

    keys = {ACME: ACME_KEY, organization_id: key}
    listed: dict[str, dict[str, Any]] = {}
    for owner in (ACME, organization_id):
        reply = call("GET", f"{api_url}{BASE}/{owner}?limit=100", keys[owner])
        assert reply.status == 200, reply.body
        listed |= {job["job_id"]: job for job in reply.json()["exports"]}
    events = received_events(stack, events_queue, set(expected))
    assert set(events) == set(expected)
    for job_id, (owner, code, sentence) in expected.items():
        polled = call("GET", f"{api_url}{BASE}/{owner}/{job_id}", keys[owner]).json()
        for job in (polled, listed[job_id]):
            assert (job["status"], job["error_code"], job["error"]) == ("failed", code.value, sentence)
            assert_safe(job, stack)
            failed = [section for section in job["sections"] if section["status"] == "failed"]
            assert all(section["error"] == failure_message(code) for section in failed), failed
        detail = events[job_id]["detail"]
        assert (detail["error"], detail["error_code"]) == (sentence, code.value)
        assert not leaks(json.dumps(detail), stack), detail
    # Where the build failed is still told: the section, and its status.
    sections = {section["key"]: section["status"] for section in listed[denied.job_id]["sections"]}
    assert (sections["brands"], sections["products"], sections["offers"]) == (
        "completed",
        "failed",
        "pending",
    )


def test_a_request_that_cannot_be_queued_fails_its_job_and_says_so(
    stack: Any, fresh: tuple[str, str]
) -> None:
    """The job the start function created is failed (never started) and announced as failed: nobody will
    ever build it, and whoever follows the bus must not wait for it."""
    organization_id, _ = fresh
    events_queue = listen(stack, [organization_id])
    job_id = unqueued(organization_id)
    job = wiring.jobs().get(organization_id, job_id)
    assert job is not None and job.error_code is ErrorCode.NEVER_STARTED
    event = received_events(stack, events_queue, {job_id})[job_id]
    assert (event["detail-type"], event["detail"]["error_code"]) == ("Export Failed", "never_started")


def test_the_missing_assets_note_stays_for_the_client(stack: Any) -> None:
    """A section's note of the assets it could not include is the organization's data, not internal."""
    job_id = create_job(ACME).job_id
    with as_function("ExportWorkerFunction"):
        job = wiring.export_builder().build(ACME, job_id)
    assert job is not None
    products = next(section for section in job.sections if section.key == "products")
    assert products.error is not None and products.error.startswith("1 missing asset(s) not in the archive: ")
    assert products.error.endswith("/images/kettle-side.png") and not leaks(products.error, stack)


def test_the_leak_check_catches_what_the_failures_used_to_say(stack: Any) -> None:
    for text in (
        "Export failed in section 'products': ClientError: An error occurred (AccessDenied) when calling "
        f"the GetObject operation: {DENIED}",
        "Export failed: States.DataLimitExceeded: The state/task 'lambda' returned a result with a size "
        "exceeding the maximum number of bytes service limit.",
        "Export failed: ValueError: asset metadata is corrupt",
        "Traceback (most recent call last):",
        f"{stack.physical['JobsTable']}",
    ):
        assert leaks(text, stack), text
    for code in ErrorCode:
        if code in (ErrorCode.CANCELED, ErrorCode.ARCHIVE_DELETED, ErrorCode.ARCHIVE_EXPIRED):
            continue
        assert not leaks(failure_message(code), stack)
        assert not leaks(failure_message(code, "products"), stack)
