"""What the API functions call: start, describe, list, download, cancel and delete exports."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from data_export.errors import (
    ConflictError,
    GoneError,
    NotFoundError,
    ServiceUnavailableError,
    failure_message,
)
from data_export.export.builder import output_filename, utcnow
from data_export.ids import new_id
from data_export.jobs import Job
from data_export.models import (
    ArchiveFormat,
    ErrorCode,
    ExportJobList,
    ExportJobResponse,
    ExportRequestMessage,
    JobStatus,
)
from data_export.settings import Settings
from data_export.storage.dynamo import decode_page_token, encode_page_token
from data_export.storage.jobs import JobRepository
from data_export.storage.layout import export_prefix, temporary_prefix
from data_export.storage.objects import ExportStore
from data_export.storage.org_data import OrgDataRepository
from data_export.storage.queue import ExportQueue

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

    from data_export.storage.signing import DownloadSigner

logger = Logger(child=True)

# Attempts at creating a job when concurrent requests keep moving the format's open-export pointer.
_CREATE_ATTEMPTS = 4


def _open_pointer(archive_format: ArchiveFormat) -> str:
    """Names the organization's open export of this format: there is at most one at a time."""
    return f"open#{archive_format.value}"


def _idempotency_pointer(idempotency_key: str) -> str:
    return "idempotency#" + hashlib.sha256(idempotency_key.encode()).hexdigest()


@dataclass
class ExportService:
    jobs: JobRepository
    org_data: OrgDataRepository
    queue: ExportQueue
    exports: ExportStore
    settings: Settings
    stepfunctions: SFNClient | None = None
    clock: Callable[[], datetime] = utcnow
    # The credentials that sign download URLs and their expiry (storage.signing): a URL never outlives
    # them. None: the exports store's own client signs, its credentials' expiry unknown.
    signer: DownloadSigner | None = None

    # -- starting ------------------------------------------------------------------------------------
    def start(
        self, organization_id: str, archive_format: ArchiveFormat, idempotency_key: str | None = None
    ) -> tuple[Job, bool]:
        """The organization's export of this format: the one already pending or processing (or the one an
        Idempotency-Key already made), else a new one. Returns the job and whether it was created.

        A job is created only together with its pointers (the format's open export and the key's), in one
        transaction, and every job created is queued: a request that loses a race on the key to a request
        of the other format (409) has created nothing, so no job is left pending that nobody queued."""
        organization = self.org_data.get_record(organization_id, "organization", organization_id)
        if organization is None:
            raise NotFoundError("Organization not found")
        idempotency = _idempotency_pointer(idempotency_key) if idempotency_key else None
        if idempotency:
            earlier = self._pointed_job(organization_id, idempotency)
            if earlier is not None:
                return self._same_format(earlier, archive_format), False
        job, created = self._open_or_create(
            organization_id, archive_format, str(organization.get("slug") or ""), idempotency
        )
        if created:
            self._enqueue(job)
            return job, True
        if idempotency and not self.jobs.add_pointer(
            organization_id, idempotency, job.job_id, job.expires_ttl
        ):
            # A concurrent request with the same key got there first: answer what it answered.
            earlier = self._pointed_job(organization_id, idempotency)
            if earlier is not None and earlier.job_id != job.job_id:
                return self._same_format(earlier, archive_format), False
        return job, False

    def _pointed_job(self, organization_id: str, pointer: str) -> Job | None:
        job_id = self.jobs.pointer(organization_id, pointer)
        return self.jobs.get(organization_id, job_id) if job_id else None

    @staticmethod
    def _same_format(job: Job, archive_format: ArchiveFormat) -> Job:
        if job.archive_format is not archive_format:
            raise ConflictError(
                f"This Idempotency-Key was used for a {job.archive_format.value} export ({job.job_id}); "
                f"use a new key for a {archive_format.value} export",
                "idempotency_conflict",
            )
        return job

    def _open_or_create(
        self, organization_id: str, archive_format: ArchiveFormat, slug: str, idempotency: str | None
    ) -> tuple[Job, bool]:
        """One open export per organization and format, race-free: the job is created in one transaction
        with the pointer to it, conditional on the pointer still naming the (finished) job seen before,
        and with the Idempotency-Key's pointer (if any), conditional on that one naming no job yet. When
        a concurrent request took the key first, nothing is created: its job is the answer (409 if it is
        of the other format)."""
        pointer = _open_pointer(archive_format)
        for _ in range(_CREATE_ATTEMPTS):
            holder_id = self.jobs.pointer(organization_id, pointer)
            holder = self.jobs.get(organization_id, holder_id) if holder_id else None
            if holder is not None and not holder.is_finished:
                return holder, False
            job_id = new_id()
            job = Job.new(
                organization_id=organization_id,
                job_id=job_id,
                archive_format=archive_format,
                output_filename=output_filename(slug, job_id, archive_format.extension),
                created_at=self.clock(),
                retention_days=self.settings.job_retention_days,
                history_days=self.settings.job_history_days,
            )
            if self.jobs.create_holding(job, pointer, holder_id, idempotency):
                return job, True
            earlier = self._pointed_job(organization_id, idempotency) if idempotency else None
            if earlier is not None:
                return self._same_format(earlier, archive_format), False
        raise ServiceUnavailableError("Too many concurrent requests for this organization; please retry")

    def _enqueue(self, job: Job) -> None:
        try:
            self.queue.send(ExportRequestMessage(organization_id=job.organization_id, job_id=job.job_id))
        except Exception as exc:
            # Never leave a job pending that no worker will ever see.
            logger.exception("Export request not queued", extra={"job_id": job.job_id})
            self.jobs.finish(
                job,
                attempt_id=None,
                status=JobStatus.FAILED,
                sections=job.sections,
                completed_at=self.clock(),
                error=failure_message(ErrorCode.NEVER_STARTED),
                error_code=ErrorCode.NEVER_STARTED,
            )
            raise ServiceUnavailableError("The export could not be queued; please try again") from exc

    # -- reading -------------------------------------------------------------------------------------
    def get(self, organization_id: str, job_id: str) -> Job:
        job = self.jobs.get(organization_id, job_id)
        if job is None:
            raise NotFoundError("Export job not found")
        return job

    def describe(self, job: Job) -> ExportJobResponse:
        """The job as the client sees it; a completed job carries a freshly signed download URL."""
        now = self.clock()
        if job.status is not JobStatus.COMPLETED or job.object_key is None or job.archive_unavailable(now):
            return job.to_response(now)
        url, expires_at = self._signed_url(job, now)
        return job.to_response(now, download_url=url, expires_at=expires_at)

    def download_url(self, job: Job) -> tuple[str, datetime]:
        """A freshly signed URL of the archive, or why there is none (409 not yet, 410 no longer)."""
        now = self.clock()
        if job.status is JobStatus.FAILED:
            raise ConflictError(f"The export failed: {job.error}", "export_failed")
        if job.status is not JobStatus.COMPLETED or job.object_key is None:
            raise ConflictError(
                f"The export is {job.status.value}; poll the job until it is completed", "not_ready"
            )
        gone = job.archive_unavailable(now)
        if gone is not None:
            raise GoneError(str(job.to_response(now).error), gone.value)
        return self._signed_url(job, now)

    def _signed_url(self, job: Job, now: datetime) -> tuple[str, datetime]:
        """URL and its honest expiry: the earliest of the configured lifetime, the archive's expiry and
        the signing credentials' expiry (a URL dies with the credentials that signed it), in whole seconds."""
        assert job.object_key is not None
        lifetime = self.settings.download_url_ttl_seconds
        store, credentials_expire_at = self.exports, None
        if self.signer is not None:
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                signing = self.signer.signing(now, lifetime)
            except (BotoCoreError, ClientError) as exc:  # AssumeRole denied, throttled, unreachable
                cause = type(exc).__name__
                if isinstance(exc, ClientError):
                    cause = str(exc.response.get("Error", {}).get("Code", cause))
                logger.error("Download URL signing failed", extra={"job_id": job.job_id, "cause": cause})
                raise ServiceUnavailableError("The download URL cannot be signed right now; retry") from exc
            store = ExportStore(signing.s3, self.settings.exports_bucket)
            credentials_expire_at = signing.expires_at
        signed_at = now.replace(microsecond=0)  # what the URL's X-Amz-Date says, at the earliest
        expires_at = now + timedelta(seconds=lifetime)
        for limit in (job.archive_expires_at, credentials_expire_at):
            if limit is not None:
                expires_at = min(expires_at, limit)
        # Rounded down: S3 counts X-Amz-Expires from the signing second, so the URL lasts until then.
        ttl = max(1, int((expires_at - signed_at).total_seconds()))
        url = store.presign_download(job.object_key, job.output_filename, ttl)
        return url, signed_at + timedelta(seconds=ttl)

    def list(self, organization_id: str, limit: int, next_token: str | None) -> ExportJobList:
        """A page of the organization's exports, newest first."""
        start_key = decode_page_token(next_token, organization_id, "job_id") if next_token else None
        jobs, last_key = self.jobs.list_recent(organization_id, limit=limit, start_key=start_key)
        now = self.clock()
        return ExportJobList(
            exports=[job.to_response(now) for job in jobs],
            next_token=encode_page_token(last_key) if last_key else None,
        )

    # -- canceling and deleting ----------------------------------------------------------------------
    def cancel_or_delete(self, organization_id: str, job_id: str) -> Job:
        """Cancel a pending or processing export, or delete a completed export's archive. A failed job is
        left as it is. Idempotent: repeating it changes nothing more."""
        job = self.get(organization_id, job_id)
        now = self.clock()
        if not job.is_finished and self.jobs.cancel(job, now=now):
            self._stop_build(job)
        elif job.status is JobStatus.COMPLETED:
            # Marked first, so that no URL is signed for it from now on; deleted on every call, so that a
            # retry finishes a delete that failed half-way.
            if job.archive_deleted_at is None:
                self.jobs.mark_archive_deleted(job, now=now)
            self.exports.discard(export_prefix(organization_id, job_id))
        return self.get(organization_id, job_id)

    def _stop_build(self, job: Job) -> None:
        """After a cancel: stop the Step Functions run, and leave nothing half-written. A build step still
        running stops at its next (conditional) write and cleans up its own upload."""
        if self.stepfunctions is not None and self.settings.state_machine_arn:
            execution_arn = (
                f"{self.settings.state_machine_arn.replace(':stateMachine:', ':execution:')}:{job.job_id}"
            )
            # No execution: the worker's fast path builds it, or it has not started.
            with contextlib.suppress(self.stepfunctions.exceptions.ExecutionDoesNotExist):
                self.stepfunctions.stop_execution(executionArn=execution_arn, cause="Canceled by request")
        self.exports.discard(
            export_prefix(job.organization_id, job.job_id), temporary_prefix(job.organization_id, job.job_id)
        )
        logger.info("Export canceled", extra={"job_id": job.job_id})
