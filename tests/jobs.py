"""Test helpers: pending jobs as the API stores them (without a queue message, so no worker of the test
session takes them), and the worker's dispatcher with limits that send an export to Step Functions."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from data_export import wiring
from data_export.export.dispatch import ExportDispatcher
from data_export.ids import new_id
from data_export.jobs import Job
from data_export.models import ArchiveFormat

MIB = 1024 * 1024


def create_job(
    organization_id: str,
    archive_format: ArchiveFormat = ArchiveFormat.ZIP,
    *,
    created_at: datetime | None = None,
    job_id: str | None = None,
    slug: str = "acme-coffee",
) -> Job:
    job_id = job_id or new_id()
    job = Job.new(
        organization_id=organization_id,
        job_id=job_id,
        archive_format=archive_format,
        output_filename=f"{slug}-export-{job_id}.{archive_format.extension}",
        created_at=created_at or datetime.now(UTC),
        retention_days=7,
    )
    wiring.export_builder().jobs.create(job)
    return job


def held_open_job(organization_id: str, archive_format: ArchiveFormat = ArchiveFormat.ZIP) -> Job:
    """A pending job holding its format's open-export pointer, as the API creates it, with no queue
    message: nobody builds it, and a new request of that format is answered this job."""
    job_id = new_id()
    job = Job.new(
        organization_id=organization_id,
        job_id=job_id,
        archive_format=archive_format,
        output_filename=f"held-{job_id}.{archive_format.extension}",
        created_at=datetime.now(UTC),
        retention_days=7,
    )
    assert wiring.jobs().create_holding(job, f"open#{archive_format.value}", None)
    return job


def chunking_dispatcher(*, chunk_target_bytes: int, chunk_max_records: int) -> ExportDispatcher:
    """The worker's dispatcher, sending every export to Step Functions in units of the given size."""
    real = wiring.dispatcher()
    settings = dataclasses.replace(
        real.settings,
        fast_path_max_bytes=0,
        chunk_target_bytes=chunk_target_bytes,
        chunk_max_records=chunk_max_records,
    )
    return dataclasses.replace(real, settings=settings)


class Sweeper:
    """The scheduled sweep at a given time, run as ExportSweeperFunction (its queue the test's own)."""

    def __init__(self, sweeper: Any) -> None:
        self.sweeper = sweeper

    def sweep(self) -> Any:
        from tests.credentials import as_function

        with as_function("ExportSweeperFunction"):
            return self.sweeper.sweep()


def sweeper_at(stack: Any, queue: Any, now: datetime) -> Sweeper:
    """The sweeper as it would run at ``now``, queueing again onto ``queue`` (a PrivateQueue)."""
    return Sweeper(dataclasses.replace(wiring.sweeper(), queue=queue, clock=lambda: now))
