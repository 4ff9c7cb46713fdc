"""Starting an export creates and queues a job as one outcome, both or neither: a request that loses the race
for its Idempotency-Key to a request of the other format is answered 409 and has created nothing, so no job
is left pending that nobody queued (which a later request would be answered as already running). The race
is made deterministic: moto's DynamoDB does not apply a transaction atomically under threads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from data_export import wiring
from data_export.errors import ConflictError
from data_export.export.service import ExportService
from data_export.ids import new_id
from data_export.jobs import Job
from data_export.models import ArchiveFormat
from data_export.settings import get_settings

from tests.credentials import PrivateQueue, as_function
from tests.security.helpers import new_key, organization, seed

KEY = "nightly-backup:2026-11-28"


@pytest.fixture
def busy(stack: Any, tmp_path: Path) -> str:
    """A fresh organization: its jobs are this test's only."""
    fixture = organization("Racing", new_key())
    seed(stack, tmp_path, fixture)
    return str(fixture["organization"]["id"])


class KeyRacingJobs:
    """The real jobs repository, except that another request runs to its end right after this one has read
    the Idempotency-Key's pointer (and found it absent)."""

    def __init__(self, real: Any, rival: Any) -> None:
        self._real, self._rival, self.raced = real, rival, False

    def pointer(self, organization_id: str, name: str) -> str | None:
        seen = self._real.pointer(organization_id, name)
        if name.startswith("idempotency#") and not self.raced:
            self.raced = True
            self._rival()
        return seen  # stale now: the rival took the key after this read

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def race(stack: Any, organization_id: str, mine: ArchiveFormat, theirs: ArchiveFormat) -> dict[str, Any]:
    """This request (``mine``) and a rival (``theirs``) with the same key, both as StartExportFunction;
    returns what each got, the organization's jobs and the messages queued."""
    sqs = stack.client("sqs")
    queue = PrivateQueue(stack, f"start-race-{new_id()}")  # no worker polls it
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
    racing = KeyRacingJobs(
        wiring.jobs(), lambda: rival.append(service(wiring.jobs()).start(organization_id, theirs, KEY))
    )
    outcome: dict[str, Any] = {}
    try:
        with as_function("StartExportFunction"):
            outcome["mine"] = service(racing).start(organization_id, mine, KEY)
    except ConflictError as refused:
        outcome["refused"] = refused
    assert racing.raced and rival and rival[0][1], "the rival request created its job in between"
    jobs, _ = wiring.jobs().list_recent(organization_id, limit=10)
    received = sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return outcome | {"rival": rival[0][0], "jobs": jobs, "messages": received.get("Messages", [])}


def test_losing_the_key_to_the_other_format_creates_nothing(stack: Any, busy: str) -> None:
    outcome = race(stack, busy, mine=ArchiveFormat.ZIP, theirs=ArchiveFormat.TAR_GZ)
    refused = outcome.get("refused")
    assert refused is not None and refused.code == "idempotency_conflict", outcome
    assert outcome["rival"].job_id in refused.message
    # One job, the rival's, and one message, for it: no zip job left pending and never queued.
    assert [job.job_id for job in outcome["jobs"]] == [outcome["rival"].job_id]
    assert len(outcome["messages"]) == 1 and outcome["rival"].job_id in outcome["messages"][0]["Body"]
    # The zip format holds no open export: the next zip request starts one, not "already running".
    assert wiring.jobs().pointer(busy, f"open#{ArchiveFormat.ZIP.value}") is None


def test_losing_the_key_to_the_same_format_answers_the_rivals_job(stack: Any, busy: str) -> None:
    outcome = race(stack, busy, mine=ArchiveFormat.ZIP, theirs=ArchiveFormat.ZIP)
    job, created = outcome["mine"]
    assert (job.job_id, created) == (outcome["rival"].job_id, False)
    assert [job.job_id for job in outcome["jobs"]] == [outcome["rival"].job_id]
    assert len(outcome["messages"]) == 1
