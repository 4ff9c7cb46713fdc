"""Every request completes, however many arrive at once: on the local stack, against the real stores.

- The sweeper never fails a job whose request may still be in the queue (waiting, delayed or in flight),
  however long it waits there; a request that really is lost is queued again, and its job is built once.
- Admission control: more big exports than execution slots are started at once; the others wait in the
  queue (pending), each gets a slot in turn, all complete, and no two executions ever build units at once
  with one slot.
- The slots item on moto's DynamoDB: taken conditionally up to the limit, given back, reclaimed."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from data_export import wiring
from data_export.export.admission import START_GRACE_SECONDS
from data_export.export.dispatch import Dispatch, ExportDispatcher
from data_export.ids import new_id
from data_export.jobs import Job
from data_export.models import ExportRequestMessage, JobStatus
from data_export.storage.queue import ExportQueue
from data_export.storage.slots import ExecutionSlots
from data_export_cli.worker import sqs_event

from tests.credentials import PrivateQueue
from tests.jobs import create_job, sweeper_at

ACME = "eHcFM2wk4RdyYG8yMrTGbQ"


@pytest.fixture
def queue(stack: Any) -> PrivateQueue:
    """A queue of the test's own: no worker of the session takes its messages."""
    return PrivateQueue(stack, f"backlog-test-{new_id()}")


@pytest.fixture
def queue_url(queue: PrivateQueue) -> str:
    return queue.url


def take_messages(stack: Any, queue_url: str, job: Job) -> list[dict[str, Any]]:
    """Every message of the queue off it; returns the job's (others' are old jobs the sweeper re-queued)."""
    sqs, mine = stack.client("sqs"), []
    while received := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in received:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            if json.loads(message["Body"])["job_id"] == job.job_id:
                mine.append(message)
    return mine


def deliver(stack: Any, message: dict[str, Any]) -> None:
    """The worker handles one message, as the queue's event source mapping would deliver it."""
    event = sqs_event([message], stack.arns["ExportQueue"])
    assert stack.invoke("ExportWorkerFunction", event) == {"batchItemFailures": []}


def get(job: Job) -> Job:
    found = wiring.jobs().get(job.organization_id, job.job_id)
    assert found is not None
    return found


def archives(stack: Any, job: Job) -> list[str]:
    listing = stack.client("s3").list_objects_v2(
        Bucket=stack.physical["ExportsBucket"], Prefix=f"exports/{job.organization_id}/{job.job_id}/"
    )
    return [item["Key"] for item in listing.get("Contents", [])]


def test_a_job_waiting_in_a_busy_queue_is_never_failed_and_is_built_once(
    stack: Any, queue: PrivateQueue, queue_url: str
) -> None:
    now = datetime.now(UTC)
    job = create_job(ACME, created_at=now - timedelta(hours=1))
    sqs = stack.client("sqs")
    sqs.send_message(
        QueueUrl=queue_url, MessageBody=json.dumps({"organization_id": ACME, "job_id": job.job_id})
    )
    # Past the grace period behind a queue that does not move: never failed (queued again, harmlessly).
    for minutes in (0, 16, 60, 180):
        report = sweeper_at(stack, queue, now + timedelta(minutes=minutes)).sweep()
        assert job.job_id not in report.failed
        assert get(job).status is JobStatus.PENDING
    # In flight: a worker received it and is still at it (not visible, not deleted).
    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60)
    assert received.get("Messages")
    report = sweeper_at(stack, queue, now + timedelta(hours=5)).sweep()
    assert job.job_id not in report.failed and get(job).status is JobStatus.PENDING
    for message in received["Messages"]:  # back to the queue, as after a worker's crash
        sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    # Its request and every copy the sweeper queued reach the worker: one build, the rest do nothing.
    mine = take_messages(stack, queue_url, job)
    assert len(mine) >= 2
    for message in mine:
        deliver(stack, message)
    built = get(job)
    assert built.status is JobStatus.COMPLETED and built.requeued >= 1
    assert archives(stack, job) == [built.object_key]


def test_a_lost_request_is_queued_again_and_its_job_completes_once(
    stack: Any, queue: PrivateQueue, queue_url: str
) -> None:
    now = datetime.now(UTC)
    job = create_job(ACME, created_at=now - timedelta(hours=1))  # its message never reached the queue
    take_messages(stack, queue_url, job)
    report = sweeper_at(stack, queue, now).sweep()
    assert job.job_id in report.requeued and job.job_id not in report.failed
    mine = take_messages(stack, queue_url, job)
    assert [json.loads(m["Body"]) for m in mine] == [{"organization_id": ACME, "job_id": job.job_id}]
    deliver(stack, mine[0])
    deliver(stack, mine[0])  # delivered twice (SQS delivers at least once): built once
    built = get(job)
    assert built.status is JobStatus.COMPLETED
    assert archives(stack, job) == [built.object_key]
    report = sweeper_at(stack, queue, now + timedelta(minutes=16)).sweep()
    assert job.job_id not in report.failed + report.requeued


def test_execution_slots_on_dynamodb(stack: Any) -> None:
    slots = ExecutionSlots(stack.client("dynamodb"), stack.physical["JobsTable"])
    jobs = [f"slot-test-{new_id()}" for _ in range(3)]
    before = set(slots.holders() or {})
    limit = len(before) + 2
    assert slots.take(jobs[0], limit=limit, now=100) and slots.take(jobs[1], limit=limit, now=101)
    assert not slots.take(jobs[2], limit=limit, now=102)
    assert slots.take(jobs[0], limit=limit, now=103)  # held already: taken again, since unchanged
    assert {job: since for job, since in (slots.holders() or {}).items() if job in jobs} == {
        jobs[0]: 100,
        jobs[1]: 101,
    }
    assert not slots.release(jobs[0], since=99)  # a reclaim of an older holding frees nothing
    assert slots.release(jobs[0]) and slots.take(jobs[2], limit=limit, now=104)
    assert slots.release(jobs[1]) and slots.release(jobs[2], since=104)
    assert set(slots.holders() or {}) == before
    # The item is no job: the sweeper's index and the organizations' lists never see it.
    assert all(job.organization_id != "#admission" for job in wiring.jobs().iter_open())


def test_a_slot_of_an_execution_that_died_is_reclaimed(stack: Any, queue: PrivateQueue) -> None:
    admission = wiring.admission()
    dead = new_id()  # no execution of that name: its worker died before StartExecution, long ago
    assert admission.slots.take(dead, limit=100, now=int(time.time()) - START_GRACE_SECONDS - 1)
    report = sweeper_at(stack, queue, datetime.now(UTC)).sweep()
    assert dead in report.reclaimed and dead not in (admission.slots.holders() or {})


@pytest.fixture
def one_slot_dispatcher(stack: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The worker's dispatcher with every export big, small units, one execution slot (16 unit builders)
    and a 1 s wait in the queue; it records what it did, and the unit builds record when they ran."""
    real = wiring.dispatcher()
    settings = dataclasses.replace(
        real.settings,
        fast_path_max_bytes=0,
        chunk_max_records=4,
        max_concurrent_unit_builds=16,
        admission_retry_seconds=1,
    )
    dispatcher: ExportDispatcher = dataclasses.replace(real, settings=settings)
    record: dict[str, Any] = {"outcomes": [], "errors": [], "builds": [], "lock": threading.Lock()}
    dispatch = dispatcher.dispatch

    def recorded_dispatch(organization_id: str, job_id: str) -> Dispatch:
        try:
            outcome = dispatch(organization_id, job_id)
        except Exception as error:  # the message goes back to the queue, for a visibility timeout
            record["errors"].append((job_id, repr(error)))
            raise
        record["outcomes"].append((job_id, outcome))
        return outcome

    monkeypatch.setattr(dispatcher, "dispatch", recorded_dispatch)
    monkeypatch.setattr(wiring, "dispatcher", lambda: dispatcher)
    chunked = wiring.chunked_export()
    build_unit = chunked.build_unit

    def timed_build_unit(organization_id: str, job_id: str, run_id: str, unit: Any) -> Any:
        started = time.monotonic()
        try:
            return build_unit(organization_id, job_id, run_id, unit)
        finally:
            with record["lock"]:
                record["builds"].append((job_id, started, time.monotonic()))

    monkeypatch.setattr(chunked, "build_unit", timed_build_unit)
    return record


def test_more_big_exports_than_slots_all_complete_one_at_a_time(
    stack: Any, api_url: str, one_slot_dispatcher: dict[str, Any]
) -> None:
    assert wiring.dispatcher().settings.execution_slots == 1
    jobs = [create_job(ACME) for _ in range(3)]
    queue = ExportQueue(stack.client("sqs"), stack.physical["ExportQueue"])
    for job in jobs:  # three requests at once, as a burst of clicks in three organizations would be
        queue.send(ExportRequestMessage(organization_id=ACME, job_id=job.job_id))
    seen: set[tuple[str, JobStatus]] = set()
    deadline = time.monotonic() + 300
    while not all(get(job).status is JobStatus.COMPLETED for job in jobs):
        assert time.monotonic() < deadline, [get(job).status for job in jobs]
        statuses = {job.job_id: get(job).status for job in jobs}
        assert JobStatus.FAILED not in statuses.values(), [get(job).error for job in jobs]
        assert not one_slot_dispatcher["errors"], one_slot_dispatcher["errors"]
        if JobStatus.PROCESSING in statuses.values():
            seen |= {(job_id, status) for job_id, status in statuses.items()}
        time.sleep(0.2)
    # Some waited their turn, pending, while another was being built.
    outcomes = one_slot_dispatcher["outcomes"]
    assert any(outcome is Dispatch.DEFERRED for _, outcome in outcomes), outcomes
    assert sum(1 for _, outcome in outcomes if outcome is Dispatch.STARTED) == len(jobs)
    assert any(status is JobStatus.PENDING for _, status in seen), seen
    # One slot: the unit builds of two exports never overlap in time.
    spans: dict[str, tuple[float, float]] = {}
    for job_id, started, ended in one_slot_dispatcher["builds"]:
        first, last = spans.get(job_id, (started, ended))
        spans[job_id] = (min(first, started), max(last, ended))
    ordered = sorted(spans.values())
    assert len(ordered) == len(jobs)
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(ordered)), ordered
    for job in jobs:
        done = get(job)
        assert done.units_total > 1 and len(done.units_done) == done.units_total
        assert archives(stack, job) == [done.object_key]
    assert not set(wiring.admission().slots.holders() or {}) & {job.job_id for job in jobs}


def test_a_worker_reclaims_the_slot_of_an_execution_that_died(
    stack: Any, api_url: str, one_slot_dispatcher: dict[str, Any]
) -> None:
    """The one slot is held by an export whose execution is gone (stopped by a cancel, say): the next request
    that finds no slot free checks the holder's execution, frees the slot and starts at once."""
    slots = wiring.admission().slots
    assert not set(slots.holders() or {}), "no export of another test holds a slot"
    dead = new_id()
    assert slots.take(dead, limit=1, now=int(time.time()) - START_GRACE_SECONDS - 1)
    job = create_job(ACME)
    ExportQueue(stack.client("sqs"), stack.physical["ExportQueue"]).send(
        ExportRequestMessage(organization_id=ACME, job_id=job.job_id)
    )
    deadline = time.monotonic() + 120
    while not (outcomes := [o for j, o in one_slot_dispatcher["outcomes"] if j == job.job_id]):
        assert time.monotonic() < deadline, get(job)
        assert not one_slot_dispatcher["errors"], one_slot_dispatcher["errors"]
        time.sleep(0.1)
    assert outcomes == [Dispatch.STARTED]  # at once, not deferred: the dead execution's slot was freed
    assert dead not in (slots.holders() or {})
    while (status := get(job).status) is not JobStatus.COMPLETED:
        assert time.monotonic() < deadline and status is not JobStatus.FAILED, get(job)
        time.sleep(0.2)
    assert [o for j, o in one_slot_dispatcher["outcomes"] if j == job.job_id] == [Dispatch.STARTED]


def test_the_sweeper_function_queues_a_lost_request_again(stack: Any) -> None:
    """Run as the scheduled function, with its own role, on the export queue itself: a pending job that no
    request reached is queued again (a worker of the session may then build it)."""
    job = create_job(ACME, created_at=datetime.now(UTC) - timedelta(hours=1))
    report = stack.invoke("ExportSweeperFunction", {"detail-type": "Scheduled Event", "detail": {}})
    assert job.job_id in report["requeued"]
    assert get(job).requeued == 1


def test_the_sweeper_function_counts_the_queue(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as the scheduled function, with its own role: it reads the queue's counts, without which it
    could never tell a lost request from a waiting one (and so would never fail a job as never started)."""
    queue = wiring.sweeper().queue
    counted: list[int | None] = []
    depth = queue.depth
    monkeypatch.setattr(queue, "depth", lambda: counted.append(depth()) or counted[-1])
    report = stack.invoke("ExportSweeperFunction", {"detail-type": "Scheduled Event", "detail": {}})
    assert set(report) == {"requeued", "failed", "alive"}
    assert len(counted) == 1 and counted[0] is not None
