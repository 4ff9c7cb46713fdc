"""The import API's domain: create an import with an upload target, renew it, start, poll, list, cancel.

An import is ``pending`` until started; a start completes the upload, pins the archive (its ETag) and hands
the import to a Step Functions run (``validating``, then ``importing`` unless it is a dry run). A dry run
that completed, or an import that failed for a reason other than its archive, can be started again: a
failed apply resumes where it stopped."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from data_export.errors import ConflictError, InvalidRequestError, NotFoundError
from data_export.ids import new_id
from data_export.models import (
    ImportErrorCode,
    ImportJobList,
    ImportJobResponse,
    ImportMode,
    ImportProgress,
    ImportStatus,
    UploadPart,
    UploadTarget,
)
from data_export.storage.imports import ImportJob, ImportJobRepository, expires_ttl
from data_export.storage.uploads import (
    MAX_ARCHIVE_BYTES,
    ArchiveNotUploadedError,
    UploadedArchives,
    import_prefix,
    missing_parts,
    part_layout,
    part_size_for,
)

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

    from data_export.settings import Settings
    from data_export.storage.signing import DownloadSigner

# What a client is told of a failed import: a fixed sentence per code, never an internal error's text.
IMPORT_FAILURES = {
    ImportErrorCode.ARCHIVE_REFUSED: "The archive was refused: see problems; nothing was written",
    ImportErrorCode.ARCHIVE_INVALID: "The archive holds invalid records: see each section's invalid; "
    "nothing was written",
    ImportErrorCode.NOT_UPLOADED: "The archive was not uploaded",
    ImportErrorCode.IMPORT_FAILED: "The import failed because of an internal error; start it again to resume",
    ImportErrorCode.TIMED_OUT: "A step of the import took too long; start it again to resume",
}
RUNNING = (ImportStatus.VALIDATING, ImportStatus.IMPORTING)
# Started again: a pending import, a completed dry run, or a failed one whose archive was not at fault.
RESTARTABLE_FAILURES = (ImportErrorCode.IMPORT_FAILED, ImportErrorCode.TIMED_OUT)


def archive_key(organization_id: str, import_id: str) -> str:
    return f"{import_prefix(organization_id, import_id)}archive"


def plan_key(organization_id: str, import_id: str) -> str:
    return f"{import_prefix(organization_id, import_id)}plan.json"


class ImportService:
    def __init__(
        self,
        *,
        imports: ImportJobRepository,
        archives: UploadedArchives,
        signer: DownloadSigner,
        stepfunctions: SFNClient,
        settings: Settings,
        on_finished: Callable[[ImportJob], None] | None = None,
    ) -> None:
        self.on_finished = on_finished  # told of an import a cancel finished (Import Failed)
        self.imports = imports
        self.archives = archives
        self.signer = signer
        self.stepfunctions = stepfunctions
        self.settings = settings

    def create(
        self, organization_id: str, mode: ImportMode, size_bytes: int, overwrite: bool
    ) -> tuple[ImportJob, UploadTarget]:
        if not 0 < size_bytes <= MAX_ARCHIVE_BYTES:
            raise InvalidRequestError(f"size_bytes must be between 1 and {MAX_ARCHIVE_BYTES} (5 TiB)")
        if overwrite and mode is ImportMode.COPY:
            raise InvalidRequestError("overwrite applies to mode=restore only")
        now = datetime.now(UTC)
        import_id = new_id()
        key = archive_key(organization_id, import_id)
        job = ImportJob(
            organization_id=organization_id,
            import_id=import_id,
            mode=mode,
            overwrite=overwrite,
            size_bytes=size_bytes,
            object_key=key,
            created_at=now,
            expires_ttl=expires_ttl(now, self.settings.job_retention_days),
        )
        if size_bytes > self.settings.import_single_put_max_bytes:
            job.part_size_bytes = part_size_for(size_bytes, self.settings.import_part_size_bytes)
            job.upload_id = self.archives.create_multipart(key)
        self.imports.create(job)
        return job, self.upload_target(job, now)

    def upload_target(self, job: ImportJob, now: datetime | None = None) -> UploadTarget:
        """Fresh URLs for what is still to upload (all of it, or the parts S3 does not have)."""
        if job.status is not ImportStatus.PENDING:
            raise ConflictError("This import is no longer waiting for its upload", "not_pending")
        now = now or datetime.now(UTC)
        signing = self.signer.signing(now, self.settings.download_url_ttl_seconds)
        lifetime = self.settings.download_url_ttl_seconds
        expires_at = now + timedelta(seconds=lifetime)
        if signing.expires_at is not None and signing.expires_at < expires_at:
            expires_at = signing.expires_at
            lifetime = max(1, int((expires_at - now).total_seconds()))
        bucket = self.archives.bucket
        if job.upload_id is None:
            url = self.archives.presign_put(signing.s3, bucket, job.object_key, lifetime)
            return UploadTarget(
                size_bytes=job.size_bytes, url=url, expires_at=expires_at.replace(microsecond=0)
            )
        assert job.part_size_bytes is not None  # set with upload_id
        part_size = job.part_size_bytes
        layout = part_layout(job.size_bytes, part_size)
        missing = set(missing_parts(layout, self.archives.uploaded_parts(job.object_key, job.upload_id)))
        done = [number for number, _, _ in layout if number not in missing]
        parts = [
            UploadPart(
                part_number=number,
                offset=offset,
                size_bytes=size,
                url=self.archives.presign_part(
                    signing.s3, bucket, job.object_key, job.upload_id, number, lifetime
                ),
            )
            for number, offset, size in layout
            if number in missing
        ]
        return UploadTarget(
            size_bytes=job.size_bytes,
            part_size_bytes=part_size,
            parts=parts,
            parts_uploaded=done,
            expires_at=expires_at.replace(microsecond=0),
        )

    def get(self, organization_id: str, import_id: str) -> ImportJob:
        job = self.imports.get(organization_id, import_id)
        if job is None:
            raise NotFoundError("No such import for this organization")
        return job

    def list(self, organization_id: str, limit: int, next_token: str | None) -> ImportJobList:
        jobs, token = self.imports.list(organization_id, limit, next_token)
        return ImportJobList(imports=[self.describe(job) for job in jobs], next_token=token)

    def start(self, organization_id: str, import_id: str, dry_run: bool) -> ImportJob:
        job = self.get(organization_id, import_id)
        if job.status in RUNNING:
            raise ConflictError("This import is already running", "already_running")
        if job.status is ImportStatus.COMPLETED and not job.dry_run:
            raise ConflictError("This import is completed", "already_completed")
        if job.status is ImportStatus.FAILED and job.error_code not in RESTARTABLE_FAILURES:
            raise ConflictError(
                f"This import failed ({job.error_code}) and cannot be started again; create a new one",
                "not_restartable",
            )
        if job.upload_id is not None:
            assert job.part_size_bytes is not None  # set with upload_id
            try:
                self.archives.complete(job.object_key, job.upload_id, job.size_bytes, job.part_size_bytes)
            except ArchiveNotUploadedError as error:
                missing = error.missing_parts
                raise ConflictError(
                    f"The upload is incomplete: {len(missing)} part(s) missing or of the wrong size "
                    f"(first: {missing[:10]}); upload them (POST .../upload for fresh URLs), then start",
                    "upload_incomplete",
                ) from None
            self.imports.update(job, {"upload_id": None}, statuses=[job.status])
        head = self.archives.head(job.object_key)
        if head is None:
            raise ConflictError("The archive has not been uploaded yet", "not_uploaded")
        size, etag = head
        if size != job.size_bytes:
            raise ConflictError(
                f"The uploaded archive is {size} bytes, not the {job.size_bytes} declared: upload it again",
                "upload_size_mismatch",
            )
        run_id = new_id()
        resume = job.status is ImportStatus.FAILED and job.archive_etag == etag and job.cursor > 0
        values: dict[str, Any] = {
            "status": ImportStatus.VALIDATING.value,
            "dry_run": dry_run,
            "run_id": run_id,
            "archive_etag": etag,
            "started_at": datetime.now(UTC).isoformat(),
            "completed_at": None,
            "error": None,
            "error_code": None,
            "problems": [],
        }
        if not resume:
            values |= {"cursor": 0, "binaries_done": 0, "bytes_done": 0, "records_done": 0}
        if not self.imports.update(job, values, statuses=[job.status]):
            raise ConflictError("This import changed meanwhile; poll it and try again", "conflict")
        payload = {"organization_id": organization_id, "import_id": import_id, "run_id": run_id}
        try:
            self.stepfunctions.start_execution(
                stateMachineArn=self.settings.import_state_machine_arn, name=run_id, input=json.dumps(payload)
            )
        except Exception:
            self.imports.update(
                job,
                {
                    "status": ImportStatus.FAILED.value,
                    "error_code": ImportErrorCode.IMPORT_FAILED.value,
                    "error": IMPORT_FAILURES[ImportErrorCode.IMPORT_FAILED],
                    "completed_at": datetime.now(UTC).isoformat(),
                },
                statuses=[ImportStatus.VALIDATING],
                run_id=run_id,
            )
            raise
        return ImportJob.model_validate(job.model_dump())

    def cancel(self, organization_id: str, import_id: str) -> ImportJob:
        """Cancel a pending or running import (what it wrote stays: each record and binary is whole, and a
        new import of the same archive skips them); a finished one's uploaded archive is deleted."""
        job = self.get(organization_id, import_id)
        if job.status is ImportStatus.PENDING or job.status in RUNNING:
            was_running = job.status in RUNNING
            now = datetime.now(UTC)
            canceled = self.imports.update(
                job,
                {
                    "status": ImportStatus.FAILED.value,
                    "error_code": ImportErrorCode.CANCELED.value,
                    "error": f"Canceled by request at {now.isoformat()}",
                    "completed_at": now.isoformat(),
                },
                statuses=[job.status],
            )
            if not canceled:
                return self.cancel(organization_id, import_id)  # it moved on meanwhile: answer its new state
            if job.run_id and was_running:
                self._stop(job.run_id)
            if self.on_finished is not None:
                self.on_finished(job)
        if job.upload_id is not None:
            self.archives.abort(job.object_key, job.upload_id)
        self.archives.delete(job.object_key, plan_key(organization_id, import_id))
        return ImportJob.model_validate(job.model_dump())

    def _stop(self, run_id: str) -> None:
        from botocore.exceptions import ClientError

        arn = self.settings.import_state_machine_arn.replace(":stateMachine:", ":execution:") + f":{run_id}"
        try:
            self.stepfunctions.stop_execution(executionArn=arn, cause="canceled")
        except ClientError as error:  # already ended: nothing to stop
            if error.response.get("Error", {}).get("Code") != "ExecutionDoesNotExist":
                raise

    @staticmethod
    def describe(job: ImportJob, upload: UploadTarget | None = None) -> ImportJobResponse:
        progress = None
        if job.status is not ImportStatus.PENDING and (job.binaries_total or job.records_total):
            progress = import_progress(job)
        return ImportJobResponse(
            import_id=job.import_id,
            organization_id=job.organization_id,
            status=job.status,
            mode=job.mode,
            dry_run=job.dry_run,
            overwrite=job.overwrite,
            size_bytes=job.size_bytes,
            archive_format=job.archive_format,
            format_version=job.format_version,
            source_organization_id=job.source_organization_id,
            source_job_id=job.source_job_id,
            sections=job.sections,
            problems=job.problems,
            progress=progress,
            error=job.error,
            error_code=job.error_code,
            created_at=job.created_at,
            started_at=job.started_at,
            completed_at=job.completed_at,
            upload=upload,
        )


def import_progress(job: ImportJob, now: datetime | None = None) -> ImportProgress:
    """Progress weighs each binary byte and each record (as 1 KiB) alike; the ETA extrapolates this run's
    rate once it has done a twentieth of the work or run for ten seconds."""
    weight_total = job.bytes_total + 1024 * job.records_total
    weight_done = job.bytes_done + 1024 * job.records_done
    finished = job.status is ImportStatus.COMPLETED and not job.dry_run
    fraction = 1.0 if finished else (weight_done / weight_total if weight_total else 0.0)
    eta = None
    if job.status is ImportStatus.IMPORTING and job.applied_from is not None and 0 < fraction < 1:
        elapsed = ((now or datetime.now(UTC)) - job.applied_from).total_seconds()
        if fraction >= 0.05 or elapsed >= 10:
            eta = int(elapsed * (1 - fraction) / fraction)
    return ImportProgress(
        binaries_total=job.binaries_total,
        binaries_done=job.binaries_done,
        bytes_total=job.bytes_total,
        bytes_done=job.bytes_done,
        records_total=job.records_total,
        records_done=job.records_done,
        percent=round(100 * min(fraction, 1.0), 1),
        eta_seconds=eta,
    )
