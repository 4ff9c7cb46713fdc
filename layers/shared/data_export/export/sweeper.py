"""No export stays stuck: a scheduled sweep finds jobs that stopped making progress and either resumes
them (a pending job whose queue message may be lost is queued again) or fails them with a reason and
cleans up after them; it also frees the execution slots of executions that ended. A pending job is failed
only when the queue holds no message that could be its request. The dead-letter consumer fails the job of a
request that failed repeatedly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from data_export.errors import failure_message
from data_export.export.builder import utcnow
from data_export.jobs import Job
from data_export.models import ErrorCode, ExportRequestMessage, JobStatus
from data_export.settings import Settings
from data_export.storage.jobs import JobRepository
from data_export.storage.layout import export_prefix, temporary_prefix
from data_export.storage.objects import ExportStore
from data_export.storage.queue import ExportQueue

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

    from data_export.export.admission import Admission

logger = Logger(child=True)

# Why a stuck job is failed: its error code, whose fixed sentence the client is told (errors.failure_message).
NEVER_STARTED = ErrorCode.NEVER_STARTED
INTERRUPTED = ErrorCode.INTERRUPTED
DEAD_LETTER = ErrorCode.REQUEST_FAILED


@dataclass
class SweepReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    alive: int = 0
    reclaimed: list[str] = field(default_factory=list)  # jobs whose execution slot was freed


@dataclass
class JobSweeper:
    jobs: JobRepository
    queue: ExportQueue
    exports: ExportStore
    stepfunctions: SFNClient
    settings: Settings
    clock: Callable[[], datetime] = utcnow
    admission: Admission | None = None  # reclaims the slots of executions that ended

    def sweep(self) -> SweepReport:
        report = SweepReport()
        now = self.clock()
        # Counted before the jobs are read: a job found pending below was pending then too, so a queue
        # empty then held none of its requests, neither waiting nor being handled.
        queued = self.queue.depth()
        if queued is None:  # no job is failed as never started until the queue can be counted again
            logger.warning("The export queue's message counts could not be read (sqs:GetQueueAttributes)")
        for job in self.jobs.iter_open():
            if job.status is JobStatus.PENDING:
                outcome = self._sweep_pending(job, now, queued)
                if outcome == "requeued":
                    report.requeued.append(job.job_id)
                elif outcome == "failed":
                    report.failed.append(job.job_id)
                else:
                    report.alive += 1
            elif self._is_alive(job, now):
                report.alive += 1
            elif self._fail(job, now, INTERRUPTED):
                report.failed.append(job.job_id)
        if self.admission is not None:
            report.reclaimed = self.admission.reclaim(int(now.timestamp()))
        if report.requeued or report.failed:
            logger.warning(
                "Stuck exports handled",
                extra={"requeued": report.requeued, "failed": report.failed, "queued": queued},
            )
        return report

    def _sweep_pending(self, job: Job, now: datetime, queued: int | None) -> str:
        """A pending job: "alive" while it shows signs of life, "requeued" when its request may be lost,
        "failed" once it surely is. Never failed while the queue may still hold its request."""
        last_sign = max(job.created_at, job.last_seen_at or job.created_at)
        if (now - last_sign).total_seconds() < self.settings.pending_grace_seconds:
            return "alive"  # created, handled by a worker (waiting for a slot) or queued again lately
        if job.chunked and self.settings.state_machine_arn:
            status = self._execution_status(job.job_id)
            if status == "RUNNING":
                return "alive"  # its execution has not claimed it yet (Plan waiting out throttles)
            if status is not None:  # its execution ended without ever claiming it
                return "failed" if self._fail(job, now, INTERRUPTED) else "alive"
        if job.requeued == 0 or queued is None or queued > 0:
            # Its request may be lost, or still be waiting behind others: queue it again. A duplicate
            # request is harmless (claims are conditional, the execution is named after the job).
            if not self.jobs.mark_requeued(job, now=now):
                return "alive"  # it moved on meanwhile, or another sweep queued it
            self.queue.send(ExportRequestMessage(organization_id=job.organization_id, job_id=job.job_id))
            return "requeued"
        # Queued again a grace period ago, handled by no worker since, and the queue holds no message at all
        # (waiting, delayed or in flight): both requests are gone.
        return "failed" if self._fail(job, now, NEVER_STARTED) else "alive"

    def _execution_status(self, name: str) -> str | None:
        arn = f"{self.settings.state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"
        try:
            return self.stepfunctions.describe_execution(executionArn=arn)["status"]
        except self.stepfunctions.exceptions.ExecutionDoesNotExist:
            return None

    def fail_dead_letter(self, organization_id: str, job_id: str) -> bool:
        """A request the worker failed on repeatedly: fail its job unless a live build owns it."""
        job = self.jobs.get(organization_id, job_id)
        if job is None or job.is_finished:
            return False
        now = self.clock()
        if job.status is JobStatus.PROCESSING and self._is_alive(job, now):
            return False
        return self._fail(job, now, DEAD_LETTER)

    def _is_alive(self, job: Job, now: datetime) -> bool:
        """A Step Functions run is alive while its execution runs (an aborted or timed-out execution never
        reached its Fail step); a worker's build, while its lease runs (longer than a Lambda can)."""
        run_by_step_functions = bool(
            job.attempt_id and self.settings.state_machine_arn and job.attempt_id.startswith(job.job_id)
        )
        if not run_by_step_functions:
            return job.lease_until is not None and job.lease_until > now.timestamp()
        execution_arn = (
            f"{self.settings.state_machine_arn.replace(':stateMachine:', ':execution:')}:{job.attempt_id}"
        )
        try:
            status = self.stepfunctions.describe_execution(executionArn=execution_arn)["status"]
        except self.stepfunctions.exceptions.ExecutionDoesNotExist:
            return False
        return status == "RUNNING"

    def _fail(self, job: Job, now: datetime, reason: ErrorCode) -> bool:
        message = failure_message(reason)
        sections = [
            section.model_copy(update={"status": JobStatus.FAILED, "error": message})
            if section.status is JobStatus.PROCESSING
            else section
            for section in job.sections
        ]
        if not self.jobs.fail_abandoned(job, now=now, sections=sections, error=message, error_code=reason):
            return False  # it moved on meanwhile: someone owns it again, or it finished
        logger.warning(
            "Stuck export failed",
            extra={"job_id": job.job_id, "error_code": reason.value, "was": job.status.value},
        )
        self.exports.discard(
            temporary_prefix(job.organization_id, job.job_id), export_prefix(job.organization_id, job.job_id)
        )
        return True
