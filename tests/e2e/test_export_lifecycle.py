"""The life of an export as a client sees it through the API: progress, the download redirect, the list,
cancel and delete, retention, and the events other services follow."""

from __future__ import annotations

import http.client
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from data_export import wiring
from data_export.export.builder import utcnow
from data_export.ids import new_id
from data_export.jobs import Job
from data_export.models import ArchiveFormat
from data_export.storage.layout import export_prefix

from tests.e2e.client import BASE, Reply, call, wait_for_job
from tests.jobs import create_job, held_open_job
from tests.security.helpers import new_key, organization, seed


@pytest.fixture
def org(stack: Any, tmp_path: Path) -> tuple[str, str]:
    """A fresh organization (organization, owner, key: three records), and its key."""
    key = new_key()
    fixture = organization("Lifecycle", key)
    seed(stack, tmp_path, fixture)
    return fixture["organization"]["id"], key


def get_without_following(url: str, api_key: str) -> Reply:
    """One GET, redirects answered as they are (urllib would follow them)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=60)
    try:
        connection.request(
            "GET",
            f"{parts.path}?{parts.query}" if parts.query else parts.path,
            headers={"X-API-Key": api_key},
        )
        response = connection.getresponse()
        return Reply(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def completed_export(
    api_url: str, organization_id: str, key: str, archive_format: str = "zip"
) -> dict[str, Any]:
    started = call("POST", f"{api_url}{BASE}/{organization_id}?archive_format={archive_format}", key)
    assert started.status == 200, started.body
    job = wait_for_job(api_url, organization_id, started.json()["job_id"], key)
    assert job["status"] == "completed", job
    return job


def test_polls_carry_timestamps_and_progress(api_url: str, org: tuple[str, str]) -> None:
    organization_id, key = org
    started = call("POST", f"{api_url}{BASE}/{organization_id}", key).json()
    assert started["created_at"] is not None and started["completed_at"] is None
    assert started["progress"]["percent"] < 100
    assert started["progress"]["sections_total"] == 7

    percents: list[float] = []
    while True:
        job = call("GET", f"{api_url}{BASE}/{organization_id}/{started['job_id']}", key).json()
        percents.append(job["progress"]["percent"])
        if job["status"] in ("completed", "failed"):
            break
        assert job["progress"]["percent"] < 100
        time.sleep(0.05)

    assert job["status"] == "completed", job
    assert percents == sorted(percents), "progress never goes back"
    created, begun, done = (
        datetime.fromisoformat(job[k]) for k in ("created_at", "started_at", "completed_at")
    )
    assert created <= begun <= done
    progress = job["progress"]
    assert progress["percent"] == 100
    assert progress["sections_done"] == progress["sections_total"] == 7
    assert progress["records_written"] == sum(section["record_count"] for section in job["sections"]) == 3
    assert progress["bytes_written"] == job["file_size_bytes"] > 0
    assert progress["eta_seconds"] is None
    assert datetime.fromisoformat(job["archive_expires_at"]) == begun + timedelta(days=7)


def test_download_redirects_to_a_freshly_signed_url(api_url: str, org: tuple[str, str]) -> None:
    organization_id, key = org
    job = completed_export(api_url, organization_id, key)
    url = f"{api_url}{BASE}/{organization_id}/{job['job_id']}/download"

    first = get_without_following(url, key)
    assert first.status == 302, first.body
    assert first.headers["Cache-Control"] == "no-store"
    expires = first.headers["Expires"]
    assert expires.endswith(" GMT")
    time.sleep(1.1)  # signatures carry the second they were made
    second = get_without_following(url, key)
    assert second.status == 302
    assert second.headers["Location"] != first.headers["Location"], "a new signature on every call"

    # The URL is S3's own (no API key goes there) and serves the archive.
    archive = call("GET", second.headers["Location"])
    assert archive.status == 200
    assert len(archive.body) == job["file_size_bytes"]
    assert archive.body[:4] == b"PK\x03\x04"


def test_download_before_completion_or_after_failure_is_409(api_url: str, org: tuple[str, str]) -> None:
    organization_id, key = org
    pending = held_open_job(organization_id)
    reply = get_without_following(f"{api_url}{BASE}/{organization_id}/{pending.job_id}/download", key)
    assert reply.status == 409, reply.body
    assert reply.json()["error"] == "not_ready"

    assert call("DELETE", f"{api_url}{BASE}/{organization_id}/{pending.job_id}", key).status == 200
    reply = get_without_following(f"{api_url}{BASE}/{organization_id}/{pending.job_id}/download", key)
    assert reply.status == 409, reply.body
    assert reply.json()["error"] == "export_failed"
    assert "Canceled" in reply.json()["message"]


def test_canceling_a_pending_export(api_url: str, org: tuple[str, str]) -> None:
    organization_id, key = org
    pending = held_open_job(organization_id)
    job_url = f"{api_url}{BASE}/{organization_id}/{pending.job_id}"

    canceled = call("DELETE", job_url, key)
    assert canceled.status == 200, canceled.body
    body = canceled.json()
    assert (body["status"], body["error_code"]) == ("failed", "canceled")
    assert body["completed_at"] is not None
    assert all(section["status"] == "failed" for section in body["sections"])
    assert call("GET", job_url, key).json()["error_code"] == "canceled"
    # Repeating the cancel changes nothing; a new request starts a new export.
    assert call("DELETE", job_url, key).json() == call("GET", job_url, key).json()
    fresh = call("POST", f"{api_url}{BASE}/{organization_id}", key).json()
    assert fresh["job_id"] != pending.job_id


def leftovers(stack: Any, organization_id: str, job_id: str) -> tuple[list[str], list[str]]:
    """Objects and multipart uploads under the job's temporary and final prefixes."""
    s3, bucket = stack.client("s3"), stack.physical["ExportsBucket"]
    objects: list[str] = []
    uploads: list[str] = []
    for prefix in (f"tmp/{organization_id}/{job_id}/", export_prefix(organization_id, job_id)):
        objects += [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
        uploads += [
            u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
        ]
    return objects, uploads


def test_canceling_a_running_big_export_leaves_nothing(
    api_url: str, stack: Any, org: tuple[str, str]
) -> None:
    """A DELETE while the Step Functions run builds units: the cancel function removes what the run wrote
    (the plan and a built unit under tmp/, a unit's upload still open there, Assemble's open upload under
    exports/), whatever step is still running."""
    organization_id, key = org
    job = create_job(organization_id)
    run = {"organization_id": organization_id, "job_id": job.job_id, "run_id": job.job_id}
    plan = stack.invoke("ExportPlanFunction", {**run, "chunk_target_bytes": 1024, "chunk_max_records": 1})
    assert plan["units_total"] >= 2
    stack.invoke("ExportBuildUnitFunction", {**run, "unit_index": 0})
    s3, bucket = stack.client("s3"), stack.physical["ExportsBucket"]
    s3.create_multipart_upload(Bucket=bucket, Key=f"tmp/{organization_id}/{job.job_id}/{job.job_id}/u1.part")
    final = f"{export_prefix(organization_id, job.job_id)}{job.job_id}/{job.output_filename}"
    s3.create_multipart_upload(Bucket=bucket, Key=final)
    objects, uploads = leftovers(stack, organization_id, job.job_id)
    assert len(objects) >= 4 and len(uploads) == 2  # plan.json, plan/..., the unit and its index

    canceled = call("DELETE", f"{api_url}{BASE}/{organization_id}/{job.job_id}", key)
    assert canceled.status == 200, canceled.body
    assert (canceled.json()["status"], canceled.json()["error_code"]) == ("failed", "canceled")
    assert leftovers(stack, organization_id, job.job_id) == ([], [])


def test_deleting_a_completed_archive(api_url: str, stack: Any, org: tuple[str, str]) -> None:
    organization_id, key = org
    job = completed_export(api_url, organization_id, key, "tar.gz")
    job_url = f"{api_url}{BASE}/{organization_id}/{job['job_id']}"

    deleted = call("DELETE", job_url, key)
    assert deleted.status == 200, deleted.body
    body = deleted.json()
    assert (body["status"], body["error_code"], body["download_url"]) == (
        "completed",
        "archive_deleted",
        None,
    )
    assert "deleted" in body["error"]
    s3 = stack.client("s3")
    listing = s3.list_objects_v2(
        Bucket=stack.physical["ExportsBucket"], Prefix=export_prefix(organization_id, job["job_id"])
    )
    assert listing.get("KeyCount", 0) == 0
    gone = get_without_following(f"{job_url}/download", key)
    assert gone.status == 410, gone.body
    assert gone.json()["error"] == "archive_deleted"
    assert call("DELETE", job_url, key).status == 200  # again: nothing more to do


def test_an_archive_past_its_retention_is_reported_expired(
    api_url: str, stack: Any, org: tuple[str, str]
) -> None:
    organization_id, key = org
    job = completed_export(api_url, organization_id, key)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    stack.client("dynamodb").update_item(
        TableName=stack.physical["JobsTable"],
        Key={"organization_id": {"S": organization_id}, "job_id": {"S": job["job_id"]}},
        UpdateExpression="SET archive_expires_at = :past",
        ExpressionAttributeValues={":past": {"S": past}},
    )
    polled = call("GET", f"{api_url}{BASE}/{organization_id}/{job['job_id']}", key).json()
    assert (polled["status"], polled["error_code"]) == ("completed", "archive_expired")
    assert polled["download_url"] is None and polled["expires_at"] is None
    assert "expired" in polled["error"]
    gone = get_without_following(f"{api_url}{BASE}/{organization_id}/{job['job_id']}/download", key)
    assert gone.status == 410
    assert gone.json()["error"] == "archive_expired"


def test_the_list_pages_through_exports_newest_first(api_url: str, org: tuple[str, str]) -> None:
    organization_id, key = org
    jobs = wiring.jobs()
    made = []
    for minutes in (30, 20, 10):
        job_id = new_id()
        job = Job.new(
            organization_id=organization_id,
            job_id=job_id,
            archive_format=ArchiveFormat.ZIP,
            output_filename=f"old-{job_id}.zip",
            created_at=utcnow() - timedelta(minutes=minutes),
            retention_days=7,
        )
        jobs.create(job)
        made.append(job_id)
    newest_first = list(reversed(made))

    first = call("GET", f"{api_url}{BASE}/{organization_id}?limit=2", key)
    assert first.status == 200, first.body
    page = first.json()
    assert [item["job_id"] for item in page["exports"]] == newest_first[:2]
    assert all(item["download_url"] is None for item in page["exports"])
    assert page["next_token"]
    second = call(
        "GET", f"{api_url}{BASE}/{organization_id}?limit=2&next_token={page['next_token']}", key
    ).json()
    assert [item["job_id"] for item in second["exports"]] == newest_first[2:]
    assert second["next_token"] is None


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "next_token=not-a-token"])
def test_the_list_refuses_bad_parameters(api_url: str, org: tuple[str, str], query: str) -> None:
    organization_id, key = org
    reply = call("GET", f"{api_url}{BASE}/{organization_id}?{query}", key)
    assert reply.status in (400, 422), reply.body
    assert reply.json()["message"]


def test_a_page_token_of_another_organization_is_refused(api_url: str, stack: Any, tmp_path: Path) -> None:
    other_key, key = new_key(), new_key()
    other, mine = organization("Other", other_key), organization("Mine", key)
    seed(stack, tmp_path, other, mine)
    other_id, my_id = other["organization"]["id"], mine["organization"]["id"]
    for _ in range(2):
        jobs = wiring.jobs()
        job_id = new_id()
        jobs.create(
            Job.new(
                organization_id=other_id,
                job_id=job_id,
                archive_format=ArchiveFormat.ZIP,
                output_filename=f"x-{job_id}.zip",
                created_at=utcnow(),
                retention_days=7,
            )
        )
    token = call("GET", f"{api_url}{BASE}/{other_id}?limit=1", other_key).json()["next_token"]
    reply = call("GET", f"{api_url}{BASE}/{my_id}?next_token={token}", key)
    assert reply.status == 400, reply.body


def test_completion_and_failure_are_announced_on_the_event_bus(
    api_url: str, stack: Any, org: tuple[str, str]
) -> None:
    organization_id, key = org
    events, sqs = stack.client("events"), stack.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"export-events-{new_id()}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    bus = stack.physical["ExportEventBus"]
    rule = f"lifecycle-{new_id()}"
    events.put_rule(
        Name=rule,
        EventBusName=bus,
        EventPattern=json.dumps(
            {"source": ["data-export"], "detail": {"organization_id": [organization_id]}}
        ),
    )
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])

    completed = completed_export(api_url, organization_id, key)
    canceled = held_open_job(organization_id, ArchiveFormat.TAR_GZ)
    call("DELETE", f"{api_url}{BASE}/{organization_id}/{canceled.job_id}", key)

    received: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 30
    while len(received) < 2 and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            event = json.loads(message["Body"])
            received[event["detail"]["job_id"]] = event
    assert set(received) == {completed["job_id"], canceled.job_id}
    done = received[completed["job_id"]]
    assert (done["source"], done["detail-type"]) == ("data-export", "Export Completed")
    assert done["detail"]["status"] == "completed"
    assert done["detail"]["file_size_bytes"] == completed["file_size_bytes"]
    assert done["detail"]["archive_sha256"] == completed["archive_sha256"]
    failed = received[canceled.job_id]
    assert failed["detail-type"] == "Export Failed"
    assert (failed["detail"]["status"], failed["detail"]["error_code"]) == ("failed", "canceled")
