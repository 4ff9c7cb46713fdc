"""The chunked build of big exports, driven by Step Functions: plan -> build units (Map) -> assemble,
with a fail step that cleans up. Each step is idempotent, so Step Functions may retry any of them.

- ``plan`` claims the job for the execution (its name is the run id), cuts it into work units and stores
  the export's totals (records, weight) for its progress.
- ``build_unit`` streams one unit's entries into a temporary object (zip: local entries without a central
  directory; tar.gz: one gzip member without the end blocks) and stores the unit's index beside it (with
  each file's size and SHA-256, for the manifest). A retry rewrites the same keys; the job's section
  counters and progress take each unit once.
- ``assemble`` concatenates the units server-side (S3 UploadPartCopy) and appends the tail: the manifest,
  then the zip central directory with every entry's offset shifted by its unit's base (or the tar end).
  Then it reads the archive once to compute its SHA-256 (a SHA-256 cannot be combined from the units').
- ``fail`` aborts every multipart upload of the run, deletes its temporary objects and fails the job.

A job canceled (or taken over) while a step runs refuses that step's writes: the step then deletes what it
wrote and raises JobOwnershipLostError, and the state machine's Catch runs ``fail``, which cleans up the run
whatever the job's state (failing an already failed job is a no-op).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from data_export.archive.compression import crc32_combine
from data_export.archive.tar import GZIP_HEADER, TarGzStreamWriter
from data_export.archive.zip import ZipEntry, ZipStreamWriter, write_central_directory
from data_export.errors import IncompleteBuildError, JobOwnershipLostError, failure_message
from data_export.export.builder import (
    PROGRESS_INTERVAL_SECONDS,
    BuiltArchive,
    ManifestFiles,
    archive_folder,
    complete_or_discard,
    manifest_document,
    manifest_yaml,
    utcnow,
)
from data_export.export.entries import ArchiveFile, open_entries
from data_export.export.plan import MAX_UNITS, WorkUnit, plan_units, unit_totals
from data_export.export.sections import MissingAsset, SectionFolder, missing_summary, write_section
from data_export.jobs import Job
from data_export.models import SECTION_KEYS, ArchiveFormat, ErrorCode, JobStatus, SectionReport
from data_export.settings import Settings
from data_export.storage.concat import SourceObject
from data_export.storage.jobs import JobRepository
from data_export.storage.layout import export_prefix, temporary_prefix
from data_export.storage.objects import AssetStore, ExportStore
from data_export.storage.org_data import ApiKeyRepository, OrgDataRepository, iter_section

if TYPE_CHECKING:
    from data_export.export.admission import Admission

logger = Logger(child=True)

# The Assemble Lambda's timeout (template.yaml: 900 s) less a minute to complete the job and clean up.
ASSEMBLE_BUDGET_SECONDS = 840.0


@dataclass(frozen=True)
class UnitIndex:
    """What assembling needs to know of a built unit (stored as JSON beside its bytes)."""

    unit_id: str
    section: str
    size: int
    records: int
    binaries: int
    missing: list[dict[str, str]]
    zip_entries: list[dict[str, Any]]
    tar_crc32: int = 0  # tar.gz: the segment's CRC-32 and size of its tar bytes (for the member's trailer)
    tar_size: int = 0
    files: list[list[Any]] = field(default_factory=list)  # [path, size, sha256] of each file, in order


@dataclass
class ChunkedExport:
    jobs: JobRepository
    org_data: OrgDataRepository
    api_keys: ApiKeyRepository
    assets: AssetStore
    exports: ExportStore
    settings: Settings
    clock: Callable[[], datetime] = utcnow
    # Execution slots: the run's slot is given back once its units are done (Assemble) or it failed.
    admission: Admission | None = None

    # -- keys ----------------------------------------------------------------------------------------
    @staticmethod
    def run_prefix(job: Job, run_id: str) -> str:
        return f"{temporary_prefix(job.organization_id, job.job_id)}{run_id}/"

    def _unit_key(self, job: Job, run_id: str, unit_id: str) -> str:
        return f"{self.run_prefix(job, run_id)}{unit_id}.part"

    def _index_key(self, job: Job, run_id: str, unit_id: str) -> str:
        return f"{self.run_prefix(job, run_id)}{unit_id}.index.json"

    @staticmethod
    def plan_key(organization_id: str, job_id: str, run_id: str, unit_index: int | None = None) -> str:
        """The plan of a run, beside its units: ``plan.json`` (the unit ids in archive order) and one
        ``plan/<index>.json`` per unit. The state machine carries only unit indexes (its payloads are
        capped at 256 KiB, whatever the organization's size), and each step reads what it needs here."""
        prefix = f"{temporary_prefix(organization_id, job_id)}{run_id}/"
        return f"{prefix}plan.json" if unit_index is None else f"{prefix}plan/{unit_index:05d}.json"

    # -- steps ---------------------------------------------------------------------------------------
    def plan(
        self,
        organization_id: str,
        job_id: str,
        run_id: str,
        *,
        target_bytes: int,
        max_records: int,
        max_units: int = MAX_UNITS,
    ) -> list[WorkUnit]:
        """Claim the job for the run, cut it into at most ``max_units`` units and store the plan in S3
        (``plan_key``); returns the units."""
        job = self._job(organization_id, job_id)
        if job.attempt_id != run_id:
            now = self.clock()
            lease_until = int(now.timestamp()) + self.settings.execution_lease_seconds
            if not self.jobs.claim(job, attempt_id=run_id, now=now, lease_until=lease_until):
                raise JobOwnershipLostError(f"job {job_id} is owned by another run")
        sections = {
            key: iter_section(self.org_data, self.api_keys, organization_id, key) for key in SECTION_KEYS
        }
        units = plan_units(sections, target_bytes=target_bytes, max_records=max_records, max_units=max_units)
        for index, unit in enumerate(units):
            self.exports.put_bytes(
                self.plan_key(organization_id, job_id, run_id, index), json.dumps(unit.to_json()).encode()
            )
        unit_ids = [unit.unit_id for unit in units]
        self.exports.put_bytes(
            self.plan_key(organization_id, job_id, run_id), json.dumps({"unit_ids": unit_ids}).encode()
        )
        reports = [SectionReport(key=key) for key in SECTION_KEYS]
        totals = unit_totals(units)
        if not self.jobs.save_progress(
            job,
            attempt_id=run_id,
            sections=reports,
            units_total=len(units),
            total_records=totals.records,
            total_weight=totals.weight,
            done_weight=0,
            bytes_written=0,
        ):
            raise JobOwnershipLostError(f"job {job_id} is owned by another run")
        logger.info("Export planned", extra={"job_id": job_id, "units": len(units)})
        return units

    def planned_unit(self, organization_id: str, job_id: str, run_id: str, unit_index: int) -> WorkUnit:
        """The run's unit at that index of its plan."""
        data = self._plan_object(organization_id, job_id, run_id, unit_index)
        return WorkUnit.from_json(json.loads(data))

    def planned_unit_ids(self, organization_id: str, job_id: str, run_id: str) -> list[str]:
        """The ids of the run's planned units, in archive order."""
        data = self._plan_object(organization_id, job_id, run_id, None)
        return [str(unit_id) for unit_id in json.loads(data)["unit_ids"]]

    def _plan_object(self, organization_id: str, job_id: str, run_id: str, unit_index: int | None) -> bytes:
        try:
            return self.exports.get_bytes(self.plan_key(organization_id, job_id, run_id, unit_index))
        except Exception:
            # Gone with the run's temporary objects (a cancel, a takeover): say so rather than NoSuchKey.
            self._owned_job(organization_id, job_id, run_id)
            raise

    def build_unit(self, organization_id: str, job_id: str, run_id: str, unit: WorkUnit) -> UnitIndex:
        job = self._owned_job(organization_id, job_id, run_id)
        key = self._unit_key(job, run_id, unit.unit_id)
        sink = self.exports.start_upload(
            key, "application/octet-stream", part_size=self.settings.part_size_bytes
        )
        report = SectionReport(key=unit.section)
        missing: list[MissingAsset] = []
        watch = OwnershipWatch(lambda: self._owned_job(organization_id, job_id, run_id))
        try:
            entries = open_entries(job.archive_format, sink, job.created_at, chunk=True)
            records = iter_section(
                self.org_data, self.api_keys, organization_id, unit.section, unit.first, unit.last
            )
            folder = SectionFolder(unit.section, renamed=unit.names)
            write_section(
                entries,
                archive_folder(job),
                folder,
                records,
                self.assets.open,
                report,
                missing,
                watch.check,
                organization_id=organization_id,
                read_ahead=self.settings.asset_read_ahead,
            )
            chunk = entries.close_chunk()
            size = sink.complete()
        except BaseException:
            sink.close_pool()
            self.exports.abort_upload(key, sink.upload_id)
            raise
        index = UnitIndex(
            unit_id=unit.unit_id,
            section=unit.section,
            size=size,
            records=report.record_count,
            binaries=report.binary_count,
            # vars, not dataclasses.asdict: these are flat, and asdict deep-copies (~10x the cost per entry).
            missing=[dict(vars(m)) for m in missing],
            zip_entries=[dict(vars(entry)) for entry in chunk.zip_entries],
            tar_crc32=chunk.tar_crc32,
            tar_size=chunk.tar_size,
            files=[list(file) for file in entries.files],
        )
        index_key = self._index_key(job, run_id, unit.unit_id)
        self.exports.put_bytes(index_key, json.dumps(vars(index)).encode())
        counted = self.jobs.count_unit(
            job,
            attempt_id=run_id,
            unit_id=unit.unit_id,
            section_index=SECTION_KEYS.index(unit.section),
            records=report.record_count,
            binaries=report.binary_count,
            weight=unit.estimated_bytes,
            size=size,
        )
        if not counted:  # counted by an earlier try of this unit, or the job is no longer this run's
            try:
                self._owned_job(organization_id, job_id, run_id)
            except JobOwnershipLostError:
                self.exports.delete(key)
                self.exports.delete(index_key)
                raise
        return index

    def assemble(
        self,
        organization_id: str,
        job_id: str,
        run_id: str,
        unit_ids: list[str],
        *,
        deadline: float | None = None,
    ) -> Job:
        """Concatenate the units into the archive, hash it and complete the job. ``deadline`` (a
        ``time.monotonic()`` value; default: ASSEMBLE_BUDGET_SECONDS from now): when hashing the archive
        could not finish by then at the rate measured, the job completes without ``archive_sha256`` rather
        than the step running out of time."""
        if deadline is None:
            deadline = time.monotonic() + ASSEMBLE_BUDGET_SECONDS
        if self.admission is not None:  # the Map is over: its unit builders are free for another export
            self.admission.release(job_id)
        job = self._owned_job(organization_id, job_id, run_id)
        if len(unit_ids) != job.units_total or set(unit_ids) != job.units_done:
            # Never complete an archive that lacks a planned unit, whatever the caller passes.
            raise IncompleteBuildError(
                f"{len(job.units_done)} of {job.units_total} units built; asked to assemble {len(unit_ids)}"
            )
        files = ManifestFiles(archive_folder(job))
        indexes: list[UnitIndex] = []
        for unit_id in unit_ids:  # the files' lines rendered unit by unit, not kept as objects
            index = json.loads(self.exports.get_bytes(self._index_key(job, run_id, unit_id)))
            files.add(ArchiveFile(*file) for file in index.pop("files", []))
            indexes.append(UnitIndex(**index))
        job.sections = _section_reports(indexes)
        missing = [MissingAsset(**m) for index in indexes for m in index.missing]
        body_size = sum(index.size for index in indexes)
        document = manifest_document(job, self._organization(job), missing, self.clock())
        manifest = manifest_yaml(document, files)
        del files
        tail = _tail(job, indexes, manifest, body_size)
        object_key = f"{export_prefix(job.organization_id, job.job_id)}{run_id}/{job.output_filename}"
        upload_id = self.exports.create_upload(object_key, job.archive_format.content_type)
        if not self.jobs.save_progress(job, attempt_id=run_id, object_key=object_key, upload_id=upload_id):
            self.exports.abort_upload(object_key, upload_id)
            raise JobOwnershipLostError(f"job {job_id} is owned by another run")
        sources = [SourceObject(self._unit_key(job, run_id, index.unit_id), index.size) for index in indexes]
        if job.archive_format is ArchiveFormat.TAR_GZ:  # the one gzip member's header, then its segments
            head_key = f"{self.run_prefix(job, run_id)}gzip-header"
            self.exports.put_bytes(head_key, GZIP_HEADER)
            sources.insert(0, SourceObject(head_key, len(GZIP_HEADER)))
        size = self.exports.concatenate(sources, tail, object_key, upload_id)
        try:
            sha256 = self._archive_sha256(job, run_id, object_key, size, deadline)
        except JobOwnershipLostError:
            self.exports.delete(object_key)
            raise
        archive = BuiltArchive(object_key, size, sha256, self.exports.checksum_sha256(object_key))
        if not complete_or_discard(
            self.jobs, self.exports, job, run_id, archive, self.clock(), self.settings.job_retention_days
        ):
            raise JobOwnershipLostError(f"job {job_id} is owned by another run")
        self.exports.delete_prefix(self.run_prefix(job, run_id))
        logger.info("Export assembled", extra={"job_id": job_id, "units": len(indexes), "size": size})
        return job

    def fail(
        self,
        organization_id: str,
        job_id: str,
        run_id: str,
        detail: str,
        code: ErrorCode = ErrorCode.EXPORT_FAILED,
    ) -> None:
        """Fail the run's job with ``code``'s fixed sentence; ``detail`` (the caught error: internal, may
        name accounts, roles, resources) is logged with the job id, never stored for the client."""
        logger.error(
            "Export failed",
            extra={"job_id": job_id, "run_id": run_id, "error_code": code.value, "error": detail},
        )
        if self.admission is not None:
            self.admission.release(job_id)
        job = self.jobs.get(organization_id, job_id)
        if job is None:
            return
        if job.status is JobStatus.COMPLETED and job.attempt_id == run_id:
            # This run completed it (Assemble's answer was lost, and its retry found the job finished): keep
            # the archive, remove only what is left of the run's temporary objects.
            self.exports.discard(self.run_prefix(job, run_id))
            return
        message = failure_message(code)
        for section in job.sections:
            if section.status is not JobStatus.COMPLETED:
                section.status, section.error = JobStatus.FAILED, message
        # Failed first, then cleaned: a unit of the Map still running can no longer count itself once the
        # job is failed, so it removes what it wrote; what units wrote before is removed here.
        self.jobs.finish(
            job,
            # Pending: the run failed before claiming it (in Plan), and no other build will take it.
            attempt_id=None if job.status is JobStatus.PENDING else run_id,
            status=JobStatus.FAILED,
            sections=job.sections,
            completed_at=self.clock(),
            error=message,
            error_code=code,
        )
        self.exports.discard(
            self.run_prefix(job, run_id), f"{export_prefix(job.organization_id, job.job_id)}{run_id}/"
        )

    # -- helpers ---------------------------------------------------------------------------------------
    def _archive_sha256(self, job: Job, run_id: str, key: str, size: int, deadline: float) -> str | None:
        """The archive's SHA-256, read back once; None when it would not be done by ``deadline``."""
        watch = OwnershipWatch(lambda: self._owned_job(job.organization_id, job.job_id, run_id))
        start = time.monotonic()

        def every_range(done: int) -> None:
            watch.check()
            now = time.monotonic()
            # Project from the rate so far once it means something (5% read or 10 s), to give up early.
            measured = done >= size / 20 or now - start >= 10
            if now > deadline or (measured and now + (now - start) * (size - done) / done > deadline):
                raise _OutOfTimeError

        try:
            return self.exports.sha256(key, size, every_range=every_range)
        except _OutOfTimeError:
            logger.warning(
                "Archive too big to hash in the time left; completed without its SHA-256",
                extra={"job_id": job.job_id, "size": size},
            )
            return None

    def _job(self, organization_id: str, job_id: str) -> Job:
        job = self.jobs.get(organization_id, job_id)
        if job is None:
            raise JobOwnershipLostError(f"job {job_id} does not exist")
        return job

    def _owned_job(self, organization_id: str, job_id: str, run_id: str) -> Job:
        job = self._job(organization_id, job_id)
        if job.status is not JobStatus.PROCESSING or job.attempt_id != run_id:
            raise JobOwnershipLostError(f"job {job_id} is not being built by run {run_id}")
        return job

    def _organization(self, job: Job) -> dict[str, Any]:
        return self.org_data.get_record(job.organization_id, "organization", job.organization_id) or {}


class _OutOfTimeError(Exception):
    """Hashing the archive would overrun the step's deadline."""


@dataclass
class OwnershipWatch:
    """Checks now and then (a consistent read) that the run still owns the job, so that a step with no job
    write of its own stops soon after a cancel: ``check`` raises JobOwnershipLostError once it does not."""

    owned_job: Callable[[], Job]
    last_check: float = field(default_factory=time.monotonic)

    def check(self, *_: object) -> None:
        if time.monotonic() - self.last_check >= PROGRESS_INTERVAL_SECONDS:
            self.owned_job()
            self.last_check = time.monotonic()


def _section_reports(indexes: list[UnitIndex]) -> list[SectionReport]:
    reports = {key: SectionReport(key=key, status=JobStatus.COMPLETED) for key in SECTION_KEYS}
    for index in indexes:
        report = reports[index.section]
        report.record_count += index.records
        report.binary_count += index.binaries
    for key, report in reports.items():
        report.error = missing_summary(
            [MissingAsset(**m) for index in indexes if index.section == key for m in index.missing]
        )
    return list(reports.values())


def _tail(job: Job, indexes: list[UnitIndex], manifest: bytes, body_size: int) -> bytes:
    """The bytes after the units: the manifest entry, then the zip central directory or the tar end."""
    tail = io.BytesIO()
    mtime = job.created_at.timestamp()
    name = f"{archive_folder(job)}/manifest.yaml"
    if job.archive_format is ArchiveFormat.TAR_GZ:
        crc, size = 0, 0
        for index in indexes:
            crc, size = crc32_combine(crc, index.tar_crc32, index.tar_size), size + index.tar_size
        tar = TarGzStreamWriter(tail, gzip_header=False)
        tar.add_bytes(name, manifest, mtime=mtime)
        tar.close_final_segment(crc, size)
        return tail.getvalue()
    entries: list[ZipEntry] = []
    base = 0
    for index in indexes:
        entries.extend(ZipEntry(**entry).shifted(base) for entry in index.zip_entries)
        base += index.size
    writer = ZipStreamWriter(tail, offset=body_size)
    entries.append(writer.add_bytes(name, manifest, mtime=mtime))
    writer.close(central_directory=False)
    write_central_directory(tail, entries, cd_offset=writer.offset)
    return tail.getvalue()
