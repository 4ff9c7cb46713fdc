"""The export job: its stored state and how the client sees it."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

from data_export.models import (
    FORMAT_VERSION,
    SECTION_KEYS,
    ArchiveFormat,
    ErrorCode,
    ExportJobResponse,
    ExportProgress,
    JobStatus,
    SectionReport,
)

OPEN_MARKER = "open"


class Job(BaseModel):
    organization_id: str
    job_id: str
    status: JobStatus = JobStatus.PENDING
    archive_format: ArchiveFormat
    format_version: str = FORMAT_VERSION
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    output_filename: str
    object_key: str | None = None  # set by the build attempt that writes it
    file_size_bytes: int = 0
    sections: list[SectionReport]
    error: str | None = None
    error_code: ErrorCode | None = None
    # Progress: the plan's estimate of the work (records; weight = record bytes plus binary bytes, as
    # export.plan.record_weight counts it), the weight written so far, and the archive bytes uploaded.
    total_records: int = 0
    total_weight: int = 0
    done_weight: int = 0
    bytes_written: int = 0
    # Integrity, once completed: the archive's SHA-256 (hex) and the S3 object's own checksum.
    archive_sha256: str | None = None
    s3_checksum_sha256: str | None = None
    # Retention: when the archive is deleted (completed_at + retention), or when a DELETE removed it.
    archive_expires_at: datetime | None = None
    archive_deleted_at: datetime | None = None
    # Build ownership: the attempt that holds the job, until when, and its open multipart upload.
    attempt_id: str | None = None
    lease_until: int | None = None  # epoch seconds
    upload_id: str | None = None
    # Chunked builds: how many work units the plan made, and which are built.
    units_total: int = 0
    units_done: set[str] = set()
    # Present only while the job is pending or processing: the sparse index the sweeper reads.
    open_marker: str | None = OPEN_MARKER
    requeued: int = 0
    # A pending job's last sign of life: when a worker last handled its request (a big export waiting for an
    # execution slot is handled again every ADMISSION_RETRY_SECONDS) or the sweeper queued it again.
    last_seen_at: datetime | None = None
    # The worker found it too big for the fast path: it is built by Step Functions (redeliveries skip
    # measuring it again).
    chunked: bool = False
    expires_ttl: int

    @classmethod
    def new(
        cls,
        *,
        organization_id: str,
        job_id: str,
        archive_format: ArchiveFormat,
        output_filename: str,
        created_at: datetime,
        retention_days: int,
        history_days: int = 30,
    ) -> Job:
        return cls(
            organization_id=organization_id,
            job_id=job_id,
            archive_format=archive_format,
            created_at=created_at,
            output_filename=output_filename,
            sections=[SectionReport(key=key) for key in SECTION_KEYS],
            # The record outlives its archive so that a late poll is told the archive expired, not 404.
            expires_ttl=int(created_at.timestamp()) + (retention_days + history_days) * 86400,
        )

    @property
    def is_finished(self) -> bool:
        return self.status in (JobStatus.COMPLETED, JobStatus.FAILED)

    def archive_unavailable(self, now: datetime) -> ErrorCode | None:
        """Why a completed job's archive can no longer be downloaded (None while it can)."""
        if self.status is not JobStatus.COMPLETED:
            return None
        if self.archive_deleted_at is not None:
            return ErrorCode.ARCHIVE_DELETED
        if self.archive_expires_at is not None and now >= self.archive_expires_at:
            return ErrorCode.ARCHIVE_EXPIRED
        return None

    def progress(self, now: datetime) -> ExportProgress:
        done = sum(1 for section in self.sections if section.status is JobStatus.COMPLETED)
        if self.status is JobStatus.COMPLETED:
            percent = 100.0
        elif self.total_weight > 0:
            # Never 100 before the archive is complete: the manifest and the upload's end are still to come.
            percent = min(99.9, 100.0 * self.done_weight / self.total_weight)
        else:
            percent = 100.0 * done / len(self.sections) if self.sections else 0.0
        return ExportProgress(
            sections_done=done,
            sections_total=len(self.sections),
            records_written=sum(section.record_count for section in self.sections),
            binaries_written=sum(section.binary_count for section in self.sections),
            bytes_written=self.file_size_bytes if self.status is JobStatus.COMPLETED else self.bytes_written,
            percent=round(percent, 1),
            eta_seconds=self._eta_seconds(percent, now),
        )

    def _eta_seconds(self, percent: float, now: datetime) -> int | None:
        """Linear extrapolation of the elapsed build time, once there is enough behind it to mean something
        (at least 1% of the estimated work and 3 seconds)."""
        if self.status is not JobStatus.PROCESSING or self.started_at is None or self.total_weight <= 0:
            return None
        elapsed = (now - self.started_at).total_seconds()
        if percent < 1.0 or elapsed < 3.0:
            return None
        return max(1, round(elapsed * (100.0 - percent) / percent))

    def to_response(
        self, now: datetime, download_url: str | None = None, expires_at: datetime | None = None
    ) -> ExportJobResponse:
        error, error_code = self.error, self.error_code
        gone = self.archive_unavailable(now)
        if gone is ErrorCode.ARCHIVE_DELETED:
            error, error_code = (
                f"The archive was deleted at {self.archive_deleted_at}; start a new export",
                gone,
            )
        elif gone is ErrorCode.ARCHIVE_EXPIRED:
            error = f"The archive expired at {self.archive_expires_at} and was deleted; start a new export"
            error_code = gone
        completed = self.status is JobStatus.COMPLETED
        return ExportJobResponse(
            job_id=self.job_id,
            status=self.status,
            archive_format=self.archive_format,
            format_version=self.format_version,
            file_size_bytes=self.file_size_bytes if completed else 0,
            output_filename=self.output_filename,
            download_url=None if gone else download_url,
            expires_at=None if gone else expires_at,
            sections=self.sections,
            error=error,
            error_code=error_code,
            created_at=self.created_at,
            started_at=self.started_at,
            completed_at=self.completed_at,
            progress=self.progress(now),
            archive_sha256=self.archive_sha256 if completed else None,
            s3_checksum_sha256=self.s3_checksum_sha256 if completed else None,
            archive_expires_at=self.archive_expires_at if completed else None,
        )


def archive_expiry(completed_at: datetime, retention_days: int) -> datetime:
    return completed_at + timedelta(days=retention_days)
