"""Starting an export and describing one: what the API functions call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from data_export.errors import DataExportError, NotFoundError, ServiceUnavailableError
from data_export.export.builder import output_filename, utcnow
from data_export.ids import new_id
from data_export.jobs import Job
from data_export.models import ArchiveFormat, ExportJobResponse, ExportRequestMessage, JobStatus
from data_export.settings import Settings
from data_export.storage.jobs import JobRepository
from data_export.storage.objects import ExportStore
from data_export.storage.org_data import OrgDataRepository
from data_export.storage.queue import ExportQueue


class TooManyExportsError(DataExportError):
    status_code = 429
    code = "too_many_exports"


class OpenExportCounter(Protocol):
    def count(self, organization_id: str) -> int:
        """The organization's pending and processing export jobs."""
        ...


@dataclass
class ExportService:
    jobs: JobRepository
    org_data: OrgDataRepository
    queue: ExportQueue
    exports: ExportStore
    settings: Settings
    open_exports: OpenExportCounter
    clock: Callable[[], datetime] = utcnow

    def start(self, organization_id: str, archive_format: ArchiveFormat) -> Job:
        organization = self.org_data.get_record(organization_id, "organization", organization_id)
        if organization is None:
            raise NotFoundError("Organization not found")
        # Counted, then created: two requests racing may both pass, so the limit can be overshot by the
        # number of simultaneous requests. It bounds load, it is not a security boundary.
        limit = self.settings.max_open_exports_per_organization
        if self.open_exports.count(organization_id) >= limit:
            raise TooManyExportsError(
                f"This organization already has {limit} exports pending or processing; "
                "wait for one to finish before starting another"
            )
        job_id = new_id()
        now = self.clock()
        job = Job.new(
            organization_id=organization_id,
            job_id=job_id,
            archive_format=archive_format,
            output_filename=output_filename(
                str(organization.get("slug") or ""), job_id, archive_format.extension
            ),
            created_at=now,
            retention_days=self.settings.job_retention_days,
        )
        self.jobs.create(job)
        try:
            self.queue.send(ExportRequestMessage(organization_id=organization_id, job_id=job_id))
        except Exception as exc:
            # Never leave a job pending that no worker will ever see.
            message = "The export could not be queued; please try again"
            self.jobs.finish(
                job,
                attempt_id=None,
                status=JobStatus.FAILED,
                sections=job.sections,
                completed_at=now,
                error=message,
            )
            raise ServiceUnavailableError(message) from exc
        return job

    def get(self, organization_id: str, job_id: str) -> Job:
        job = self.jobs.get(organization_id, job_id)
        if job is None:
            raise NotFoundError("Export job not found")
        return job

    def describe(self, job: Job) -> ExportJobResponse:
        """The job as the client sees it; a completed job carries a freshly signed download URL."""
        if job.status is not JobStatus.COMPLETED or job.object_key is None:
            return job.to_response()
        ttl = self.settings.download_url_ttl_seconds
        expires_at = (self.clock() + timedelta(seconds=ttl)).replace(microsecond=0)
        url = self.exports.presign_download(job.object_key, job.output_filename, ttl)
        return job.to_response(download_url=url, expires_at=expires_at)
