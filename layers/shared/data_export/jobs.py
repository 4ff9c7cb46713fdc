"""The export job: its stored state and how the client sees it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from data_export.models import (
    FORMAT_VERSION,
    SECTION_KEYS,
    ArchiveFormat,
    ExportJobResponse,
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
    ) -> Job:
        return cls(
            organization_id=organization_id,
            job_id=job_id,
            archive_format=archive_format,
            created_at=created_at,
            output_filename=output_filename,
            sections=[SectionReport(key=key) for key in SECTION_KEYS],
            expires_ttl=int(created_at.timestamp()) + (retention_days + 1) * 86400,
        )

    @property
    def is_finished(self) -> bool:
        return self.status in (JobStatus.COMPLETED, JobStatus.FAILED)

    def to_response(
        self, download_url: str | None = None, expires_at: datetime | None = None
    ) -> ExportJobResponse:
        return ExportJobResponse(
            job_id=self.job_id,
            status=self.status,
            archive_format=self.archive_format,
            format_version=self.format_version,
            file_size_bytes=self.file_size_bytes if self.status is JobStatus.COMPLETED else 0,
            output_filename=self.output_filename,
            download_url=download_url,
            expires_at=expires_at,
            sections=self.sections,
            error=self.error,
        )
