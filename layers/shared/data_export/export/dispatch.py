"""What the queue worker does with an export request: build a small export at once, or start the Step
Functions execution that builds a big one in parallel units. The execution is named after the job, so a
duplicate message can never start a second build; and it starts only with an execution slot
(export.admission), else the request waits in the queue."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from data_export.export.admission import Admission
from data_export.export.builder import ExportBuilder
from data_export.export.plan import WorkTotals, measure
from data_export.jobs import Job
from data_export.models import SECTION_KEYS, ExportRequestMessage, JobStatus
from data_export.settings import Settings
from data_export.storage.org_data import iter_section
from data_export.storage.queue import ExportQueue

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

logger = Logger(child=True)


class Dispatch(StrEnum):
    BUILT = "built"  # small: built by the worker itself
    STARTED = "started"  # big: handed to Step Functions
    ALREADY_STARTED = "already-started"  # a duplicate message; the execution exists
    DEFERRED = "deferred"  # big, and every execution slot taken: the request waits in the queue
    SKIPPED = "skipped"  # unknown or finished job, or one a live build owns


@dataclass
class ExportDispatcher:
    builder: ExportBuilder
    stepfunctions: SFNClient
    settings: Settings
    # Admission control of big exports, and the queue a request waits in for a slot (None: no control).
    admission: Admission | None = None
    queue: ExportQueue | None = None

    def dispatch(self, organization_id: str, job_id: str) -> Dispatch:
        job = self.builder.jobs.get(organization_id, job_id)
        if job is None or job.is_finished:
            return Dispatch.SKIPPED
        now = self.builder.clock()
        if job.status is JobStatus.PROCESSING and (job.lease_until or 0) > now.timestamp():
            # A live build owns it (a worker's lease, or its execution's): a duplicate or re-queued message.
            return Dispatch.ALREADY_STARTED if job.attempt_id == job_id else Dispatch.SKIPPED
        if not self.settings.state_machine_arn:
            # No state machine configured: the worker builds everything itself (and measures it).
            self.builder.build(organization_id, job_id)
            return Dispatch.BUILT
        totals = None if job.chunked else self._small_totals(organization_id)
        if totals is not None:
            self.builder.build(organization_id, job_id, totals)
            return Dispatch.BUILT
        return self._start_execution(job, now)

    def _start_execution(self, job: Job, now: datetime) -> Dispatch:
        """Start the big export's execution once it holds an execution slot; until then its request goes
        back to the queue for ``admission_retry_seconds`` (a new message: SQS counts receives towards the
        dead-letter queue, and waiting for a slot is no failure), and the job stays pending."""
        organization_id, job_id = job.organization_id, job.job_id
        if job.status is JobStatus.PENDING and not self.builder.jobs.mark_seen(job, now=now, chunked=True):
            return Dispatch.SKIPPED  # it moved on meanwhile: canceled, or claimed by its execution
        slots, epoch = self.settings.execution_slots, int(now.timestamp())
        if self.admission is not None and not self.admission.admit(job_id, limit=slots, now=epoch):
            if self.queue is None:
                raise RuntimeError("admission control needs the export queue to put waiting requests back")
            self.queue.send(
                ExportRequestMessage(organization_id=organization_id, job_id=job_id),
                delay_seconds=self.settings.admission_retry_seconds,
            )
            logger.info("No execution slot free; the request waits in the queue", extra={"job_id": job_id})
            return Dispatch.DEFERRED
        execution_input = {
            "organization_id": organization_id,
            "job_id": job_id,
            "chunk_target_bytes": self.settings.chunk_target_bytes,
            "chunk_max_records": self.settings.chunk_max_records,
        }
        try:
            self.stepfunctions.start_execution(
                stateMachineArn=self.settings.state_machine_arn,
                name=job_id,
                input=json.dumps(execution_input),
            )
        except self.stepfunctions.exceptions.ExecutionAlreadyExists:
            logger.info("Export execution already exists; duplicate message", extra={"job_id": job_id})
            return Dispatch.ALREADY_STARTED
        except Exception:
            if self.admission is not None:  # no execution holds the slot: give it back at once
                self.admission.release(job_id)
            raise
        logger.info("Export handed to Step Functions", extra={"job_id": job_id})
        return Dispatch.STARTED

    def _small_totals(self, organization_id: str) -> WorkTotals | None:
        """The export's totals when it is within the fast-path limits (the build's progress is measured
        against them), else None. Stops reading as soon as the answer is no."""
        sections = {
            section: iter_section(self.builder.org_data, self.builder.api_keys, organization_id, section)
            for section in SECTION_KEYS
        }
        return measure(
            sections,
            max_weight=self.settings.fast_path_max_bytes,
            max_records=self.settings.fast_path_max_records,
        )
