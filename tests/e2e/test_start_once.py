"""Starting an export twice gives one export: the open export of the same format, or the job an
Idempotency-Key already made. Race-free: concurrent requests converge on one job."""

from __future__ import annotations

import dataclasses
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from data_export import wiring
from data_export.export.builder import utcnow
from data_export.export.service import ExportService
from data_export.ids import new_id
from data_export.jobs import Job
from data_export.models import ArchiveFormat, JobStatus
from data_export.settings import get_settings
from data_export.storage.signing import DownloadSigner

from tests.credentials import PrivateQueue, as_function
from tests.e2e.client import BASE, call, wait_for_job
from tests.jobs import held_open_job
from tests.security.helpers import new_key, organization, seed


@pytest.fixture
def busy(stack: Any, tmp_path: Path) -> tuple[str, str]:
    """A fresh organization and its key."""
    key = new_key()
    fixture = organization("Busy", key)
    seed(stack, tmp_path, fixture)
    return fixture["organization"]["id"], key


def test_a_second_request_gets_the_open_export_of_that_format(api_url: str, busy: tuple[str, str]) -> None:
    organization_id, key = busy
    pending = held_open_job(organization_id)

    again = call("POST", f"{api_url}{BASE}/{organization_id}?archive_format=zip", key)
    assert again.status == 200, again.body
    assert again.json()["job_id"] == pending.job_id
    assert again.json()["status"] == "pending"

    other_format = call("POST", f"{api_url}{BASE}/{organization_id}?archive_format=tar.gz", key)
    assert other_format.status == 200, other_format.body
    assert other_format.json()["job_id"] != pending.job_id

    # Once the open one is finished, a new request starts a new export.
    assert wiring.jobs().finish(
        pending, attempt_id=None, status=JobStatus.FAILED, sections=pending.sections, completed_at=utcnow()
    )
    fresh = call("POST", f"{api_url}{BASE}/{organization_id}?archive_format=zip", key)
    assert fresh.status == 200, fresh.body
    assert fresh.json()["job_id"] not in (pending.job_id, other_format.json()["job_id"])


def test_an_idempotency_key_answers_the_same_job_even_after_it_finished(
    api_url: str, busy: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    organization_id, key = busy
    headers = {"Idempotency-Key": "nightly-backup:2026-11-28"}
    first = call("POST", f"{api_url}{BASE}/{organization_id}", key, headers=headers)
    assert first.status == 200, first.body
    job_id = first.json()["job_id"]
    assert wait_for_job(api_url, organization_id, job_id, key)["status"] == "completed"

    # The start function signs the finished export's download URL itself, with a session of the signing
    # role it assumes in its own container. The local stack's functions share one process (and the poll's
    # cached session): the replay gets a signer of its own, as a fresh container of the function would.
    fresh_container = dataclasses.replace(wiring.export_service(), signer=signer_of_a_fresh_container())
    monkeypatch.setattr(wiring, "export_service", lambda: fresh_container)
    replay = call("POST", f"{api_url}{BASE}/{organization_id}", key, headers=headers)
    assert replay.status == 200, replay.body
    assert replay.json()["job_id"] == job_id
    with urllib.request.urlopen(replay.json()["download_url"], timeout=60) as response:
        assert response.read(4) in (b"PK\x03\x04", b"PK\x05\x06")

    conflict = call("POST", f"{api_url}{BASE}/{organization_id}?archive_format=tar.gz", key, headers=headers)
    assert conflict.status == 409, conflict.body
    assert conflict.json()["error"] == "idempotency_conflict"
    assert job_id in conflict.json()["message"]

    other_key = call(
        "POST", f"{api_url}{BASE}/{organization_id}", key, headers={"Idempotency-Key": "another-request"}
    )
    assert other_key.status == 200, other_key.body
    assert other_key.json()["job_id"] != job_id


@pytest.mark.parametrize("value", ["", "x" * 129, "has space", "ünïcode", "semi;colon"])
def test_a_malformed_idempotency_key_is_refused_with_400(
    api_url: str, busy: tuple[str, str], value: str
) -> None:
    organization_id, key = busy
    reply = call("POST", f"{api_url}{BASE}/{organization_id}", key, headers={"Idempotency-Key": value})
    assert reply.status == 400, reply.body
    assert reply.json()["error"] == "invalid_request"
    assert "Idempotency-Key" in reply.json()["message"]


def signer_of_a_fresh_container() -> DownloadSigner:
    """The signer wiring.download_signer() makes, with no session assumed yet."""
    return DownloadSigner(
        wiring.client("sts"),
        get_settings().download_signing_role_arn,
        default_s3=wiring.client("s3"),
        s3_config=wiring.client_config("s3"),
    )


class RacingJobs:
    """The real jobs repository, except that another request runs to its end right after this one has
    read the open-export pointer: the race of two simultaneous clicks, made deterministic. (Threads would
    not prove it here: moto's DynamoDB does not apply a transaction atomically under concurrency, as
    DynamoDB does.)"""

    def __init__(self, real: Any, rival: Any) -> None:
        self._real, self._rival, self.raced = real, rival, False

    def pointer(self, organization_id: str, name: str) -> str | None:
        seen = self._real.pointer(organization_id, name)
        if not self.raced:
            self.raced = True
            self._rival()
        return seen  # stale now: the rival moved the pointer after this read

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_racing_requests_converge_on_one_job_and_one_message(stack: Any, busy: tuple[str, str]) -> None:
    organization_id, _ = busy
    sqs = stack.client("sqs")
    # A queue of the test's own, which no worker polls: the jobs stay pending while the requests race.
    queue = PrivateQueue(stack, f"start-race-{new_id()}")
    builder = wiring.export_builder()

    def service(jobs: Any) -> ExportService:
        return ExportService(
            jobs=jobs,
            org_data=builder.org_data,
            queue=queue,  # type: ignore[arg-type]
            exports=builder.exports,
            settings=get_settings(),
        )

    rival: list[tuple[Job, bool]] = []
    racing = RacingJobs(
        wiring.jobs(), lambda: rival.append(service(wiring.jobs()).start(organization_id, ArchiveFormat.ZIP))
    )
    with as_function("StartExportFunction"):  # both requests, as the function serves them
        job, created = service(racing).start(organization_id, ArchiveFormat.ZIP)

    assert racing.raced and rival[0][1], "the rival request created its job in between"
    assert (job.job_id, created) == (rival[0][0].job_id, False)  # the stale request found it and yielded
    messages = sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert len(messages.get("Messages", [])) == 1
