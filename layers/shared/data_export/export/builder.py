"""Builds one export job: every section streamed into one archive in an S3 multipart upload.

The job's state moves pending -> processing -> completed | failed. A build attempt first *claims* the job
(conditional write), so a duplicate SQS delivery finds it taken or finished and does nothing; an attempt
whose Lambda died leaves its lease to expire, and the next delivery takes over, aborting the dead attempt's
upload. Each attempt writes its own object key, and only the attempt that owns the job may complete it, so a
partial or stale archive is never what a ``completed`` job points at.

Every job write of the build is conditional on that ownership, so a job canceled by its owner (or taken
over) refuses the build's next progress save: the build then stops, aborts its upload and writes nothing.
A completed job carries the archive's SHA-256 (hashed as it is uploaded), S3's own checksum of the object,
and the manifest lists every file with its size and SHA-256 (docs/archive-format.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from data_export.errors import JobOwnershipLostError, failure_message
from data_export.export.entries import ArchiveEntries, ArchiveFile, open_entries
from data_export.export.plan import WorkTotals, measure, record_weight
from data_export.export.sections import MissingAsset, SectionFolder, missing_summary, write_section
from data_export.ids import new_id
from data_export.jobs import Job, archive_expiry
from data_export.models import SECTION_KEYS, ErrorCode, JobStatus, SectionReport
from data_export.naming import safe_slug
from data_export.settings import Settings
from data_export.storage.jobs import JobRepository
from data_export.storage.layout import export_prefix
from data_export.storage.objects import AssetStore, ExportStore, MultipartWriter
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


@dataclass(frozen=True)
class BuiltArchive:
    """A completed archive object and its checksums."""

    key: str
    size: int
    sha256: str | None  # hex SHA-256 of the object's bytes (None: too big to hash in time, chunked only)
    s3_checksum_sha256: str | None  # the object's checksum as S3 keeps it (base64, of its parts' SHA-256s)


@dataclass
class BuildProgress:
    """Saves the job's progress now and then while the fast path writes it; any refused write (the job was
    canceled, or another attempt took it over) stops the build with JobOwnershipLostError."""

    jobs: JobRepository
    job: Job
    attempt_id: str
    sink: MultipartWriter
    section: str = ""
    last_save: float = field(default_factory=time.monotonic)

    def record_written(self, record: dict[str, Any]) -> None:
        self.job.done_weight += record_weight(record, self.section)
        if time.monotonic() - self.last_save >= PROGRESS_INTERVAL_SECONDS:
            self.save()

    def save(self) -> None:
        self.job.bytes_written = self.sink.bytes_written
        if not self.jobs.save_progress(
            self.job,
            attempt_id=self.attempt_id,
            sections=self.job.sections,
            done_weight=self.job.done_weight,
            bytes_written=self.job.bytes_written,
        ):
            raise JobOwnershipLostError(f"job {self.job.job_id} was canceled or taken over")
        self.last_save = time.monotonic()


@dataclass
class ExportBuilder:
    jobs: JobRepository
    org_data: OrgDataRepository
    api_keys: ApiKeyRepository
    assets: AssetStore
    exports: ExportStore
    settings: Settings
    clock: Callable[[], datetime] = utcnow

    def build(self, organization_id: str, job_id: str, totals: WorkTotals | None = None) -> Job | None:
        """Build the job unless it is unknown, finished or owned by a live attempt; returns it as left.

        ``totals``: the export's records and weight if the caller measured them (the dispatcher does), else
        the builder reads every record once more to measure them for the job's progress."""
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
        return self._run(job, attempt_id, totals or self._measure(organization_id))

    def _measure(self, organization_id: str) -> WorkTotals:
        sections = {
            key: iter_section(self.org_data, self.api_keys, organization_id, key) for key in SECTION_KEYS
        }
        return measure(sections) or WorkTotals(0, 0)

    def _run(self, job: Job, attempt_id: str, totals: WorkTotals) -> Job:
        object_key = f"{export_prefix(job.organization_id, job.job_id)}{attempt_id}/{job.output_filename}"
        sink = self.exports.start_upload(
            object_key, job.archive_format.content_type, part_size=self.settings.part_size_bytes, digest=True
        )
        job.object_key = object_key
        job.total_records, job.total_weight, job.done_weight, job.bytes_written = (
            totals.records,
            totals.weight,
            0,
            0,
        )
        completed = False
        try:
            if not self.jobs.save_progress(
                job,
                attempt_id=attempt_id,
                object_key=object_key,
                upload_id=sink.upload_id,
                total_records=totals.records,
                total_weight=totals.weight,
                done_weight=0,
                bytes_written=0,
            ):
                raise JobOwnershipLostError(f"job {job.job_id} was canceled or taken over")
            entries = open_entries(job.archive_format, sink, job.created_at)
            self._write_archive(job, entries, BuildProgress(self.jobs, job, attempt_id, sink))
            entries.close()
            size = sink.complete()
            completed = True
            archive = BuiltArchive(object_key, size, sink.sha256, self.exports.checksum_sha256(object_key))
        except JobOwnershipLostError:
            self._discard(sink, object_key, completed)
            logger.warning(
                "Export stopped: the job was canceled or taken over; nothing kept",
                extra={"job_id": job.job_id},
            )
            return self.jobs.get(job.organization_id, job.job_id) or job
        except Exception as exc:
            self._discard(sink, object_key, completed)
            section = exc.section if isinstance(exc, SectionFailedError) else None
            # The detail (the exception, its traceback) is for the logs; the client is told a fixed sentence.
            logger.exception(
                "Export build failed",
                extra={"job_id": job.job_id, "section": section, "error_code": ErrorCode.EXPORT_FAILED.value},
            )
            return self._fail(job, attempt_id, ErrorCode.EXPORT_FAILED, section)
        if not complete_or_discard(
            self.jobs, self.exports, job, attempt_id, archive, self.clock(), self.settings.job_retention_days
        ):
            logger.warning(
                "Export attempt lost the job (canceled or lease ran out); archive discarded",
                extra={"job_id": job.job_id},
            )
            return self.jobs.get(job.organization_id, job.job_id) or job
        return job

    def _discard(self, sink: MultipartWriter, object_key: str, completed: bool) -> None:
        """Leave nothing of this attempt's archive: abort its upload, or delete the object if completed."""
        sink.close_pool()
        self.exports.abort_upload(object_key, sink.upload_id)
        if completed:
            self.exports.delete(object_key)

    def _fail(self, job: Job, attempt_id: str, code: ErrorCode, section_key: str | None) -> Job:
        for section in job.sections:
            if section.status is JobStatus.PROCESSING:
                section.status, section.error = JobStatus.FAILED, failure_message(code)
        message = failure_message(code, section_key)
        job.status, job.error, job.error_code = JobStatus.FAILED, message, code
        job.completed_at = self.clock()
        self.jobs.finish(
            job,
            attempt_id=attempt_id,
            status=JobStatus.FAILED,
            sections=job.sections,
            completed_at=job.completed_at,
            error=message,
            error_code=code,
        )
        return job

    def _write_archive(self, job: Job, entries: ArchiveEntries, progress: BuildProgress) -> None:
        top = archive_folder(job)
        missing: list[MissingAsset] = []
        for report in job.sections:
            report.status = JobStatus.PROCESSING
            progress.section = report.key
            progress.save()
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
                    progress.record_written,
                    organization_id=job.organization_id,
                    read_ahead=self.settings.asset_read_ahead,
                )
            except JobOwnershipLostError:
                raise
            except Exception as exc:
                raise SectionFailedError(report.key, exc) from exc
            missing.extend(section_missing)
            report.error = missing_summary(section_missing)
            report.status = JobStatus.COMPLETED
            progress.save()
        files = ManifestFiles(top)
        files.add(entries.files)
        entries.add_file(f"{top}/manifest.yaml", self._manifest(job, missing, files))

    def _manifest(self, job: Job, missing: list[MissingAsset], files: ManifestFiles) -> bytes:
        organization = (
            self.org_data.get_record(job.organization_id, "organization", job.organization_id) or {}
        )
        return manifest_yaml(manifest_document(job, organization, missing, self.clock()), files)


def complete_or_discard(
    jobs: JobRepository,
    exports: ExportStore,
    job: Job,
    attempt_id: str,
    archive: BuiltArchive,
    now: datetime,
    retention_days: int,
) -> bool:
    """Mark the job completed with this archive if the attempt still owns it; else delete the archive, which
    is not the one (the job was canceled, or the attempt's lease ran out and another took over). True when
    completed."""
    # S3's lifecycle counts from the object's creation, which for a multipart upload is when the upload
    # began, after the build started: counting from the start promises no more than S3 keeps.
    expires_at = archive_expiry(job.started_at or now, retention_days)
    job.object_key, job.status, job.file_size_bytes, job.completed_at = (
        archive.key,
        JobStatus.COMPLETED,
        archive.size,
        now,
    )
    job.archive_sha256, job.s3_checksum_sha256, job.archive_expires_at = (
        archive.sha256,
        archive.s3_checksum_sha256,
        expires_at,
    )
    completed = jobs.finish(
        job,
        attempt_id=attempt_id,
        status=JobStatus.COMPLETED,
        sections=job.sections,
        completed_at=now,
        file_size_bytes=archive.size,
        archive_sha256=archive.sha256,
        s3_checksum_sha256=archive.s3_checksum_sha256,
        archive_expires_at=expires_at,
    )
    if not completed:
        exports.delete(archive.key)
    return completed


def manifest_document(
    job: Job, organization: dict[str, Any], missing: list[MissingAsset], generated_at: datetime
) -> dict[str, Any]:
    """manifest.yaml but its last key, ``files``: what the archive is, and the same sections inventory as
    the API."""
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
        "missing_assets": [m.manifest_entry() for m in missing],
    }


class ManifestFiles:
    """The manifest's ``files`` key: every other file of the archive (its path under the top folder, size
    and SHA-256), in archive order. Rendered to YAML in batches as files are added, so that a big export
    holds ~165 bytes per file instead of Python objects (350,000 files: ~55 MB)."""

    BATCH = 1000
    KEY = b"files:\n"

    def __init__(self, top: str) -> None:
        self._prefix = f"{top}/"
        self._rendered: list[bytes] = []
        self._pending: list[dict[str, Any]] = []

    def add(self, files: Iterable[ArchiveFile]) -> None:
        for file in files:
            self._pending.append(
                {"path": file.path.removeprefix(self._prefix), "size": file.size, "sha256": file.sha256}
            )
            if len(self._pending) >= self.BATCH:
                self._render()

    def _render(self) -> None:
        if self._pending:
            rendered = dump_document({"files": self._pending})
            if not rendered.startswith(self.KEY):
                raise AssertionError(f"unexpected YAML for a list of files: {rendered[:40]!r}")
            self._rendered.append(rendered[len(self.KEY) :])
            self._pending = []

    def yaml(self) -> list[bytes]:
        """The key and its list, as pieces to join."""
        self._render()
        return [self.KEY, *self._rendered] if self._rendered else [b"files: []\n"]


def manifest_yaml(document: dict[str, Any], files: ManifestFiles) -> bytes:
    """manifest.yaml: the document, then its ``files`` key (last, so that it can be rendered apart)."""
    head = dump_document(document)
    if not head.endswith(b"\n"):
        raise AssertionError("a YAML document ends with a newline")
    return b"".join([head, *files.yaml()])
