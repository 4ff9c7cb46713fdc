"""The Step Functions tasks of an import: validate, apply (repeated until done), fail.

Validate verifies the whole archive (restore.archive) and plans the import (restore.plan) without writing
anything to the organization; the plan goes to S3 beside the upload, and the job says what would happen.
Apply carries the plan out in archive order, binaries first and then records (so a record never names a
binary that is not there yet), checkpointing its cursor on the job; it stops well before its Lambda's
time runs out and the state machine calls it again, so an archive of any size is applied in as many steps
as it needs, and a failed run started again resumes from the last checkpoint. Every write of a run is
conditional on the run still owning the job: a cancel stops it at the next checkpoint."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from data_export.models import (
    ArchiveFormat,
    ArchiveProblem,
    ImportErrorCode,
    ImportMode,
    ImportSectionReport,
    ImportStatus,
)
from data_export.restore.plan import (
    ARCHIVE_SECTIONS,
    ImportPlan,
    PlannedBinary,
    PlannedRecord,
    plan_import,
)
from data_export.restore.service import IMPORT_FAILURES, archive_key, plan_key
from data_export.storage.imports import ImportJob, ImportJobRepository

if TYPE_CHECKING:
    from data_export.storage.uploads import ImportTarget, UploadedArchives

logger = Logger(child=True)

# The apply checkpoints this often, and stops for the next step when less than STOP_BEFORE_END of its
# Lambda's time is left.
CHECKPOINT_SECONDS = 5.0
CHECKPOINT_ITEMS = 500
STOP_BEFORE_END_SECONDS = 120.0
SMALL_BINARY_BYTES = 8 * 1024 * 1024  # read whole and uploaded in parallel; bigger ones are streamed
UPLOADS_IN_FLIGHT = 8
_TIMEOUT_ERRORS = frozenset({"States.Timeout", "States.HeartbeatTimeout", "Sandbox.Timedout"})

ImportFinished = Callable[[ImportJob], None]


@dataclass
class ImportRunner:
    imports: ImportJobRepository
    archives: UploadedArchives
    target: ImportTarget
    on_finished: ImportFinished | None = None

    # -- validate ----------------------------------------------------------------------------------------
    def validate(self, organization_id: str, import_id: str, run_id: str) -> bool:
        """Verify and plan; True when the run goes on to apply."""
        job = self._owned(organization_id, import_id, run_id, ImportStatus.VALIDATING)
        if job is None:
            return False
        if not job.dry_run and job.cursor > 0:  # a failed apply started again: same archive, same plan
            plan = self._plan(job)
            if plan is not None and plan.archive_etag == job.archive_etag:
                return self._to_apply(job)
        from data_export.restore.archive import ArchiveRefused, detect_format, scan_archive

        assert job.archive_etag is not None
        archive_format = detect_format(self.archives.head_bytes(job.object_key, job.archive_etag, 8))
        if archive_format is None:
            problem = ArchiveProblem(
                code="not_an_archive", message="The upload is neither a zip nor a gzip file (tar.gz)"
            )
            return self._refuse(job, [problem], ImportErrorCode.ARCHIVE_REFUSED)
        if not self.imports.update(
            job, {"archive_format": archive_format.value}, statuses=[ImportStatus.VALIDATING], run_id=run_id
        ):
            return False  # canceled meanwhile: its archive is gone
        try:
            scanned = scan_archive(self._opener(job, archive_format), archive_format)
        except ArchiveRefused as refused:
            return self._refuse(job, refused.problems, ImportErrorCode.ARCHIVE_REFUSED)
        entries = {entry.path: (entry.index, entry.size, entry.sha256) for entry in scanned.entries}
        plan = plan_import(
            mode=job.mode,
            overwrite=job.overwrite,
            target_organization_id=organization_id,
            manifest=scanned.manifest,
            entries=entries,
            yaml_files=scanned.yaml_files,
            existing_records=lambda section, ids: self.target.existing_records(organization_id, section, ids),
            existing_objects=self.target.existing_objects,
        )
        plan.archive_etag = job.archive_etag
        plan.top = scanned.top
        plan.archive_format = archive_format.value
        described = {
            "format_version": plan.format_version,
            "source_organization_id": plan.source_organization_id or None,
            "source_job_id": plan.source_job_id,
            "sections": _section_items(plan.sections),
            "binaries_total": len(plan.binaries),
            "bytes_total": plan.bytes_total,
            "records_total": len(plan.records),
        }
        if plan.problems or plan.invalid_count:
            # A restore into another organization refuses the archive whole; anything else is its records.
            wrong = any(problem.code == "wrong_organization" for problem in plan.problems)
            code = ImportErrorCode.ARCHIVE_REFUSED if wrong else ImportErrorCode.ARCHIVE_INVALID
            self.imports.update(job, described, statuses=[ImportStatus.VALIDATING], run_id=run_id)
            return self._refuse(job, plan.problems, code)
        if job.dry_run:
            described |= {"status": ImportStatus.COMPLETED.value, "completed_at": _now()}
            if self.imports.update(job, described, statuses=[ImportStatus.VALIDATING], run_id=run_id):
                self._announce(job)
            return False
        self.archives.put_json(plan_key(organization_id, import_id), plan.to_json())
        if not self._to_apply(job, described):
            # Canceled while planning: the cancel may have deleted the folder before the plan was written.
            self.archives.delete(plan_key(organization_id, import_id))
            return False
        return True

    def _to_apply(self, job: ImportJob, described: dict[str, Any] | None = None) -> bool:
        """The import goes on to its apply (with what the plan says of it, when just planned)."""
        return self.imports.update(
            job,
            {**(described or {}), "status": ImportStatus.IMPORTING.value, "applied_from": _now()},
            statuses=[ImportStatus.VALIDATING],
            run_id=job.run_id,
        )

    def _refuse(self, job: ImportJob, problems: list[ArchiveProblem], code: ImportErrorCode) -> bool:
        values = {
            "status": ImportStatus.FAILED.value,
            "problems": [problem.model_dump(mode="json") for problem in problems[:100]],
            "error_code": code.value,
            "error": IMPORT_FAILURES[code],
            "completed_at": _now(),
        }
        if self.imports.update(job, values, statuses=[ImportStatus.VALIDATING], run_id=job.run_id):
            self._announce(job)
        return False

    # -- apply -------------------------------------------------------------------------------------------
    def apply(
        self, organization_id: str, import_id: str, run_id: str, seconds_left: Callable[[], float]
    ) -> bool:
        """Apply the plan from the job's cursor until done (True) or until time is short (False)."""
        job = self._owned(organization_id, import_id, run_id, ImportStatus.IMPORTING)
        if job is None:
            return True  # canceled or started again: this run has nothing more to do
        plan = self._plan(job)
        if plan is None or plan.archive_etag != job.archive_etag:
            raise RuntimeError("the import's plan is missing or is not of its archive")
        progress = _Progress(self, job, plan, seconds_left)
        if job.cursor < len(plan.binaries) and not self._apply_binaries(job, plan, progress):
            return progress.stopped
        if not self._apply_records(job, plan, progress):
            return progress.stopped
        finished = {
            "status": ImportStatus.COMPLETED.value,
            "completed_at": _now(),
            **progress.values(),
        }
        if self.imports.update(job, finished, statuses=[ImportStatus.IMPORTING], run_id=run_id):
            self.archives.delete(
                archive_key(organization_id, import_id), plan_key(organization_id, import_id)
            )
            self._announce(job)
        return True

    def _apply_binaries(self, job: ImportJob, plan: ImportPlan, progress: _Progress) -> bool:
        from data_export.restore.archive import ArchiveEntry, ScannedArchive, iter_files

        archive_format = ArchiveFormat(plan.archive_format)
        todo = plan.binaries[job.cursor :]
        by_path = {binary.path: binary for binary in todo}
        scanned = ScannedArchive(
            archive_format=archive_format,
            top=plan.top,
            manifest={},
            entries=[ArchiveEntry(b.entry_index, b.path, b.size, b.sha256) for b in todo],
            yaml_files={},
        )
        files = iter_files(self._opener(job, archive_format), scanned, by_path, todo[0].entry_index)
        with ThreadPoolExecutor(UPLOADS_IN_FLIGHT) as pool:
            in_flight: list[Future[None]] = []
            for entry, reader in files:
                binary = by_path[entry.path]
                if binary.size <= SMALL_BINARY_BYTES:
                    data = reader.read()
                    in_flight.append(
                        pool.submit(self.target.put_object, binary.key, io.BytesIO(data), binary.size)
                    )
                else:
                    self.target.put_object(binary.key, reader, binary.size)
                progress.binary_done(binary)
                if len(in_flight) >= 2 * UPLOADS_IN_FLIGHT or progress.due() or progress.short_of_time():
                    _wait_for(in_flight)
                    if not progress.checkpoint():
                        return False
            _wait_for(in_flight)
        return progress.checkpoint(force=True)

    def _apply_records(self, job: ImportJob, plan: ImportPlan, progress: _Progress) -> bool:
        start = job.cursor - len(plan.binaries)
        records = plan.records[start:]
        with ThreadPoolExecutor(UPLOADS_IN_FLIGHT) as pool:
            index = 0
            while index < len(records):
                # A batch of one section at a time: what a record refers to (an earlier section) is written.
                section = records[index].section
                batch: list[PlannedRecord] = []
                while index < len(records) and records[index].section == section and len(batch) < 100:
                    batch.append(records[index])
                    index += 1
                if plan.mode is ImportMode.COPY:
                    # Ids a copy derived itself: no one else writes them, and the plan found none of them,
                    # so they go 25 to a BatchWriteItem; a run resumed re-writes the same content.
                    groups = [batch[i : i + 25] for i in range(0, len(batch), 25)]
                    records_of = [[planned.record for planned in group] for group in groups]
                    for _ in pool.map(
                        self.target.put_records,
                        [job.organization_id] * len(groups),
                        [section] * len(groups),
                        records_of,
                    ):
                        pass
                    written: Iterable[bool] = [True] * len(batch)
                else:  # a restore writes only where none exists, whoever wrote it meanwhile
                    written = pool.map(
                        lambda planned: self.target.put_record(
                            job.organization_id, planned.section, planned.record, replace=planned.replaces
                        ),
                        batch,
                    )
                for planned, created in zip(batch, written, strict=True):
                    progress.record_done(planned, created)
                # After every batch: a failed run resumes after the last whole batch, counting none twice.
                if not progress.checkpoint(force=True) and (progress.stopped or index < len(records)):
                    return False  # the last batch written, the import is finished even with no time left
        return True

    # -- fail ----------------------------------------------------------------------------------------------
    def fail(self, organization_id: str, import_id: str, run_id: str, error: dict[str, Any]) -> None:
        job = self.imports.get(organization_id, import_id)
        if job is None or job.run_id != run_id:
            return
        name = str(error.get("Error") or "")
        code = ImportErrorCode.TIMED_OUT if name in _TIMEOUT_ERRORS else ImportErrorCode.IMPORT_FAILED
        values = {
            "status": ImportStatus.FAILED.value,
            "error_code": code.value,
            "error": IMPORT_FAILURES[code],
            "completed_at": _now(),
        }
        details = {"import_id": import_id, "error": name, "cause": error.get("Cause")}
        if self.imports.update(
            job, values, statuses=[ImportStatus.VALIDATING, ImportStatus.IMPORTING], run_id=run_id
        ):
            logger.error("Import failed", extra=details)
            self._announce(job)
        else:  # a run that went on after a cancel (its archive deleted under it): the job says canceled
            logger.info("Import run ended after its import was finished", extra=details)

    # -- helpers -------------------------------------------------------------------------------------------
    def _owned(
        self, organization_id: str, import_id: str, run_id: str, status: ImportStatus
    ) -> ImportJob | None:
        job = self.imports.get(organization_id, import_id)
        if job is None or job.run_id != run_id or job.status is not status:
            logger.info("Import run no longer owns the job", extra={"import_id": import_id, "run_id": run_id})
            return None
        return job

    def _plan(self, job: ImportJob) -> ImportPlan | None:
        from botocore.exceptions import ClientError

        try:
            return ImportPlan.from_json(self.archives.get_json(plan_key(job.organization_id, job.import_id)))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def _opener(self, job: ImportJob, archive_format: ArchiveFormat) -> Callable[[], IO[bytes]]:
        assert job.archive_etag is not None
        etag = job.archive_etag
        if archive_format is ArchiveFormat.ZIP:
            return lambda: self.archives.open_seekable(job.object_key, etag, job.size_bytes)
        return lambda: self.archives.open_stream(job.object_key, etag)

    def _announce(self, job: ImportJob) -> None:
        if self.on_finished is not None:
            self.on_finished(job)


class _Progress:
    """The apply's counters and cursor, written to the job at checkpoints (one conditional update each)."""

    def __init__(
        self, runner: ImportRunner, job: ImportJob, plan: ImportPlan, seconds_left: Callable[[], float]
    ) -> None:
        self.runner, self.job, self.seconds_left = runner, job, seconds_left
        self.cursor = job.cursor
        self.sections = {report.key: report for report in job.sections} or dict(plan.sections)
        self.binaries_done, self.bytes_done, self.records_done = (
            job.binaries_done,
            job.bytes_done,
            job.records_done,
        )
        self.items_since = 0
        self.last = time.monotonic()
        self.stopped = False  # the run lost the job (canceled): nothing more to do

    def binary_done(self, binary: PlannedBinary) -> None:
        self.cursor += 1
        self.binaries_done += 1
        self.bytes_done += binary.size
        self.sections[binary.section].binaries_restored += 1
        self.items_since += 1

    def record_done(self, planned: PlannedRecord, created: bool) -> None:
        self.cursor += 1
        self.records_done += 1
        report = self.sections[planned.section]
        if not created:
            report.skipped_existing += 1  # created meanwhile (by someone else, or before a checkpoint)
        elif not planned.replaces:
            report.created += 1
        self.items_since += 1

    def short_of_time(self) -> bool:
        return self.seconds_left() <= STOP_BEFORE_END_SECONDS

    def due(self) -> bool:
        return self.items_since >= CHECKPOINT_ITEMS or time.monotonic() - self.last >= CHECKPOINT_SECONDS

    def values(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor,
            "binaries_done": self.binaries_done,
            "bytes_done": self.bytes_done,
            "records_done": self.records_done,
            "sections": _section_items(self.sections),
        }

    def checkpoint(self, force: bool = False) -> bool:
        """Write progress; False when the run must stop: it lost the job, or its time is short."""
        if not force and not self.due() and not self.short_of_time():
            return True
        if not self.runner.imports.update(
            self.job, self.values(), statuses=[ImportStatus.IMPORTING], run_id=self.job.run_id
        ):
            self.stopped = True
            return False
        self.items_since, self.last = 0, time.monotonic()
        return not self.short_of_time()


def _section_items(sections: dict[str, ImportSectionReport]) -> list[dict[str, Any]]:
    """The job's ``sections``, in archive order."""
    return [sections[key].model_dump(mode="json") for key in ARCHIVE_SECTIONS if key in sections]


def _wait_for(uploads: list[Future[None]]) -> None:
    """Every upload in flight done (raising the first failure), the list emptied."""
    for future in uploads:
        future.result()
    uploads.clear()


def _now() -> str:
    return datetime.now(UTC).isoformat()
