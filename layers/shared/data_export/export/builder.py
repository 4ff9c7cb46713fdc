"""Builds one export job: every section streamed into one archive in an S3 multipart upload.

The job's state moves pending -> processing -> completed | failed. A build attempt first *claims* the job
(conditional write), so a duplicate SQS delivery finds it taken or finished and does nothing; an attempt
whose Lambda died leaves its lease to expire, and the next delivery takes over, aborting the dead attempt's
upload. Each attempt writes its own object key, and only the attempt that owns the job may complete it, so a
partial or stale archive is never what a ``completed`` job points at.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from data_export.export.entries import ArchiveEntries, open_entries
from data_export.export.sections import MissingAsset, SectionFolder, missing_summary, write_section
from data_export.ids import new_id
from data_export.jobs import Job
from data_export.models import JobStatus, SectionReport
from data_export.naming import safe_slug
from data_export.settings import Settings
from data_export.storage.jobs import JobRepository
from data_export.storage.layout import export_prefix
from data_export.storage.objects import AssetStore, ExportStore
from data_export.storage.org_data import ApiKeyRepository, OrgDataRepository, iter_section
from data_export.yaml_emit import dump_document

logger = Logger(child=True)

PROGRESS_INTERVAL_SECONDS = 2.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def archive_folder(job: Job) -> str:
    """The archive's single top-level folder: the download's file name without its extension."""
    suffix = "." + job.archive_format.extension
    return job.output_filename.removesuffix(suffix)


def output_filename(slug: str, job_id: str, extension: str) -> str:
    return f"{safe_slug(slug)}-export-{job_id}.{extension}"


class SectionFailedError(Exception):
    def __init__(self, section: str, cause: Exception) -> None:
        super().__init__(f"section '{section}': {type(cause).__name__}: {cause}")
        self.section = section


@dataclass
class ExportBuilder:
    jobs: JobRepository
    org_data: OrgDataRepository
    api_keys: ApiKeyRepository
    assets: AssetStore
    exports: ExportStore
    settings: Settings
    clock: Callable[[], datetime] = utcnow

    def build(self, organization_id: str, job_id: str) -> Job | None:
        """Build the job unless it is unknown, finished or owned by a live attempt; returns it as left."""
        job = self.jobs.get(organization_id, job_id)
        if job is None:
            logger.warning("Export job not found; message dropped", extra={"job_id": job_id})
            return None
        if job.is_finished:
            logger.info("Export job already finished; duplicate delivery ignored", extra={"job_id": job_id})
            return job
        attempt_id = new_id()
        now = self.clock()
        lease_until = int(now.timestamp()) + self.settings.job_lease_seconds
        if not self.jobs.claim(job, attempt_id=attempt_id, now=now, lease_until=lease_until):
            logger.info("Export job is being built by another attempt", extra={"job_id": job_id})
            return self.jobs.get(organization_id, job_id)
        if job.upload_id and job.object_key:  # a previous attempt died mid-build
            self.exports.abort_upload(job.object_key, job.upload_id)
        job.status, job.attempt_id = JobStatus.PROCESSING, attempt_id
        job.started_at = job.started_at or now
        job.sections = [SectionReport(key=section.key) for section in job.sections]
        return self._run(job, attempt_id)

    def _run(self, job: Job, attempt_id: str) -> Job:
        object_key = f"{export_prefix(job.organization_id, job.job_id)}{attempt_id}/{job.output_filename}"
        sink = self.exports.start_upload(
            object_key, job.archive_format.content_type, part_size=self.settings.part_size_bytes
        )
        job.object_key = object_key
        self.jobs.save_progress(job, attempt_id=attempt_id, object_key=object_key, upload_id=sink.upload_id)
        try:
            entries = open_entries(job.archive_format, sink, job.created_at)
            self._write_archive(job, attempt_id, entries)
            entries.close()
            size = sink.complete()
        except Exception as exc:
            sink.close_pool()
            self.exports.abort_upload(object_key, sink.upload_id)
            logger.exception("Export build failed", extra={"job_id": job.job_id})
            return self._fail(
                job,
                attempt_id,
                f"Export failed in {exc}"
                if isinstance(exc, SectionFailedError)
                else f"Export failed: {type(exc).__name__}: {exc}",
            )
        if not complete_or_discard(self.jobs, self.exports, job, attempt_id, object_key, size, self.clock()):
            logger.warning("Export attempt lost its lease; archive discarded", extra={"job_id": job.job_id})
        return job

    def _fail(self, job: Job, attempt_id: str, message: str) -> Job:
        for section in job.sections:
            if section.status is JobStatus.PROCESSING:
                section.status = JobStatus.FAILED
        job.status, job.error, job.completed_at = JobStatus.FAILED, message, self.clock()
        self.jobs.finish(
            job,
            attempt_id=attempt_id,
            status=JobStatus.FAILED,
            sections=job.sections,
            completed_at=job.completed_at,
            error=message,
        )
        return job

    def _write_archive(self, job: Job, attempt_id: str, entries: ArchiveEntries) -> None:
        top = archive_folder(job)
        missing: list[MissingAsset] = []
        last_save = time.monotonic()

        def save_now_and_then() -> None:
            nonlocal last_save
            if time.monotonic() - last_save >= PROGRESS_INTERVAL_SECONDS:
                self.jobs.save_progress(job, attempt_id=attempt_id, sections=job.sections)
                last_save = time.monotonic()

        for report in job.sections:
            report.status = JobStatus.PROCESSING
            self.jobs.save_progress(job, attempt_id=attempt_id, sections=job.sections)
            section_missing: list[MissingAsset] = []
            records = iter_section(self.org_data, self.api_keys, job.organization_id, report.key)
            try:
                write_section(
                    entries,
                    top,
                    SectionFolder(report.key),
                    records,
                    self.assets.open,
                    report,
                    section_missing,
                    save_now_and_then,
                )
            except Exception as exc:
                raise SectionFailedError(report.key, exc) from exc
            missing.extend(section_missing)
            report.error = missing_summary(section_missing)
            report.status = JobStatus.COMPLETED
            self.jobs.save_progress(job, attempt_id=attempt_id, sections=job.sections)
            last_save = time.monotonic()
        entries.add_file(f"{top}/manifest.yaml", self._manifest(job, missing))

    def _manifest(self, job: Job, missing: list[MissingAsset]) -> bytes:
        organization = (
            self.org_data.get_record(job.organization_id, "organization", job.organization_id) or {}
        )
        return dump_document(manifest_document(job, organization, missing, self.clock()))


def complete_or_discard(
    jobs: JobRepository,
    exports: ExportStore,
    job: Job,
    attempt_id: str,
    object_key: str,
    size: int,
    now: datetime,
) -> bool:
    """Mark the job completed with this archive if the attempt still owns it; else delete the archive, which
    is not the one (the attempt's lease ran out and another took over). True when completed."""
    job.object_key, job.status, job.file_size_bytes, job.completed_at = (
        object_key,
        JobStatus.COMPLETED,
        size,
        now,
    )
    completed = jobs.finish(
        job,
        attempt_id=attempt_id,
        status=JobStatus.COMPLETED,
        sections=job.sections,
        completed_at=now,
        file_size_bytes=size,
    )
    if not completed:
        exports.delete(object_key)
    return completed


def manifest_document(
    job: Job, organization: dict[str, Any], missing: list[MissingAsset], generated_at: datetime
) -> dict[str, Any]:
    """manifest.yaml: what the archive is, and the same sections inventory as the API."""
    return {
        "format_version": job.format_version,
        "job_id": job.job_id,
        "archive_format": job.archive_format.value,
        "organization": {
            "id": job.organization_id,
            "name": organization.get("name"),
            "slug": organization.get("slug"),
        },
        "requested_at": job.created_at.isoformat(),
        "generated_at": generated_at.isoformat(),
        "sections": [section.model_dump(mode="json") for section in job.sections],
        "missing_assets": [
            {"section": m.section, "record_id": m.record_id, "field": m.field, "filename": m.filename}
            for m in missing
        ],
    }
