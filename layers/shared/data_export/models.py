"""Contract shapes (pydantic): one model per shape, shared by handlers, the OpenAPI document and tests."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

FORMAT_VERSION = "1.0"

# Timestamps always carry an explicit offset ("+00:00"), never a bare "Z".
Timestamp = Annotated[datetime, PlainSerializer(lambda value: value.isoformat(), return_type=str)]


class ArchiveFormat(StrEnum):
    ZIP = "zip"
    TAR_GZ = "tar.gz"

    @property
    def extension(self) -> str:
        return self.value

    @property
    def content_type(self) -> str:
        return "application/zip" if self is ArchiveFormat.ZIP else "application/gzip"


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


SECTION_KEYS = ("organization", "members", "api_keys", "brands", "products", "offers", "locations")


class ContractModel(BaseModel):
    """Schemas are built on first use, not at import: a function builds only the models it uses."""

    model_config = ConfigDict(defer_build=True)


class SectionReport(ContractModel):
    """Progress and outcome of one section (a folder of the archive)."""

    key: str
    status: JobStatus = JobStatus.PENDING
    record_count: int = 0
    binary_count: int = 0
    error: str | None = None


class ErrorCode(StrEnum):
    """Why a job carries an error: machine-readable, beside the sentence in ``error``. A failed job's
    sentence is fixed by its code (errors.failure_message), never an internal error's own text."""

    EXPORT_FAILED = "export_failed"  # the build failed (internal); ``error`` may name the section
    CANCELED = "canceled"  # canceled by a DELETE while pending or processing (status failed)
    TIMED_OUT = "timed_out"  # a build step ran out of time
    TOO_LARGE = "too_large"  # too big to build (e.g. more work units than one build can carry)
    NEVER_STARTED = "never_started"  # its request was lost, or could not be queued
    INTERRUPTED = "interrupted"  # its build stopped making progress (the build died)
    REQUEST_FAILED = "request_failed"  # its request failed repeatedly (dead-lettered)
    ARCHIVE_DELETED = "archive_deleted"  # a completed job's archive deleted by a DELETE
    ARCHIVE_EXPIRED = "archive_expired"  # a completed job's archive past its retention


class ExportProgress(ContractModel):
    """How far the build has got. ``percent`` weighs records and binary bytes as the plan estimated them."""

    sections_done: int = Field(description="Sections completed")
    sections_total: int = Field(description="Sections in the archive")
    records_written: int = Field(description="Records written so far, all sections")
    binaries_written: int = Field(description="Binary files written so far, all sections")
    bytes_written: int = Field(description="Archive bytes uploaded so far")
    percent: float = Field(ge=0, le=100, description="0-100; 100 only once completed")
    eta_seconds: int | None = Field(
        default=None, description="Estimated seconds left; null until it can be estimated honestly"
    )


class ExportJobResponse(ContractModel):
    """What the endpoints answer: the export job as the client sees it."""

    model_config = ConfigDict(json_schema_extra={"additionalProperties": True})

    job_id: str = Field(description="22-character shortuuid of the export job")
    status: JobStatus
    archive_format: ArchiveFormat
    format_version: str = Field(description="Version of the archive layout (see docs/archive-format.md)")
    file_size_bytes: int = Field(description="Size of the archive; 0 until the export is completed")
    output_filename: str = Field(description="File name the archive downloads as")
    download_url: str | None = Field(description="Time-limited signed URL of the archive once completed")
    expires_at: Timestamp | None = Field(description="When download_url stops working")
    sections: list[SectionReport]
    error: str | None = None
    # Additions to the original contract: all optional for older clients.
    error_code: ErrorCode | None = Field(default=None, description="Machine-readable reason for error")
    created_at: Timestamp | None = Field(default=None, description="When the export was requested")
    started_at: Timestamp | None = Field(default=None, description="When the build started")
    completed_at: Timestamp | None = Field(default=None, description="When the job completed or failed")
    progress: ExportProgress | None = None
    archive_sha256: str | None = Field(
        default=None, description="SHA-256 (hex) of the whole archive, once completed"
    )
    s3_checksum_sha256: str | None = Field(
        default=None,
        description="The archive object's SHA-256 checksum as S3 stores it (base64; a multipart object's "
        "is composite, '<base64>-<parts>'): verify with S3 itself (HeadObject, ChecksumMode=ENABLED)",
    )
    archive_expires_at: Timestamp | None = Field(
        default=None, description="When the archive is deleted (retention); polls after it say so"
    )


class ExportJobList(ContractModel):
    """A page of the organization's exports, newest first. Items carry no download_url: use the job's
    /download endpoint, which signs a fresh one."""

    exports: list[ExportJobResponse]
    next_token: str | None = Field(default=None, description="Pass as next_token for the next page")


class ErrorResponse(ContractModel):
    """Body of every error answer."""

    error: str = Field(description="Machine-readable code, e.g. unauthorized, forbidden, not_found")
    message: str = Field(description="What was wrong, for people")
    details: list[dict[str, object]] | None = None


class ExportRequestMessage(ContractModel):
    """Body of the SQS message that asks the worker to build one job."""

    organization_id: str
    job_id: str


class StepInput(ContractModel):
    """What every Step Functions task of a chunked build receives; run_id is the execution's name."""

    organization_id: str
    job_id: str
    run_id: str


class PlanInput(StepInput):
    chunk_target_bytes: int
    chunk_max_records: int


class BuildUnitInput(StepInput):
    """One unit of the run's plan, by its index: the plan itself stays in S3 (ChunkedExport.plan_key)."""

    unit_index: int = Field(ge=0)


class AssembleInput(StepInput):
    """Assemble reads the run's unit ids from its plan in S3."""


class FailInput(StepInput):
    error: dict[str, Any] = Field(default_factory=dict, description="Step Functions' {Error, Cause}")

    def _details(self) -> tuple[str, str, str]:
        """The caught error's name, type (the Lambda error's, else its name) and message (or cause)."""
        name = str(self.error.get("Error") or "Error")
        cause = self.error.get("Cause") or ""
        try:
            details = json.loads(cause)
        except (TypeError, ValueError):
            details = None
        if isinstance(details, dict) and "errorMessage" in details:
            return name, str(details.get("errorType") or name), str(details["errorMessage"])
        return name, name, str(cause)

    def message(self) -> str:
        """The caught error for the logs (the Lambda error's type and message): internal, never for clients,
        who see error_code()'s sentence."""
        name, kind, message = self._details()
        return f"Export failed: {kind}: {message}" if message else f"Export failed: {name}"

    def error_code(self) -> ErrorCode:
        """Why the build failed, as the client is told."""
        name, kind, message = self._details()
        if {name, kind} & _TOO_LARGE_ERRORS:
            return ErrorCode.TOO_LARGE
        if {name, kind} & _TIMEOUT_ERRORS or "Task timed out" in message:
            return ErrorCode.TIMED_OUT
        return ErrorCode.EXPORT_FAILED


# Step Functions' names for a state's result or input over its size limit, and for a task out of time.
_TOO_LARGE_ERRORS = frozenset({"States.DataLimitExceeded"})
_TIMEOUT_ERRORS = frozenset({"States.Timeout", "States.HeartbeatTimeout", "Sandbox.Timedout"})


# --- imports (restore): docs/archive-format.md, "Importing an archive" ----------------------------------


class ImportMode(StrEnum):
    COPY = "copy"  # into another (normally empty) organization: new ids, profile merged where empty
    RESTORE = "restore"  # back into the organization it came from: only what is missing is re-created


class ImportStatus(StrEnum):
    PENDING = "pending"  # created; waiting for its upload and a start
    VALIDATING = "validating"  # the archive is being verified and planned: nothing written yet
    IMPORTING = "importing"  # binaries, then records, are being written
    COMPLETED = "completed"  # a dry run that finished, or an apply that wrote everything
    FAILED = "failed"


class ImportErrorCode(StrEnum):
    """Why an import failed, machine-readable beside ``error``."""

    ARCHIVE_REFUSED = "archive_refused"  # the archive failed verification (see ``problems``)
    ARCHIVE_INVALID = "archive_invalid"  # records are invalid (see each section's ``invalid``)
    NOT_UPLOADED = "not_uploaded"  # started before the archive was uploaded, or its upload is incomplete
    CANCELED = "canceled"  # canceled by a DELETE
    IMPORT_FAILED = "import_failed"  # an internal failure; starting it again resumes where it stopped
    TIMED_OUT = "timed_out"  # a step ran out of time; starting it again resumes


class ArchiveProblem(ContractModel):
    """One reason the archive as a whole is refused (nothing is written)."""

    code: str = Field(
        description="traversal, absolute_path, link, special_file, duplicate_path, too_many_entries, "
        "too_large, compression_ratio, tampered, size_mismatch, not_in_manifest, missing_file, "
        "no_manifest, bad_manifest, format_version, truncated, not_an_archive, encrypted, outside_top, "
        "changed, unknown_section, wrong_organization"
    )
    path: str | None = Field(default=None, description="The archive path concerned, when there is one")
    message: str


class InvalidRecord(ContractModel):
    path: str = Field(description="The record's file in the archive, below the top folder")
    reason: str


class ImportSectionReport(ContractModel):
    """What the import does, or did, with one section of the archive."""

    key: str
    records: int = Field(default=0, description="Records of this section in the archive")
    would_create: int = Field(default=0, description="Records the apply creates (or a dry run would)")
    created: int = Field(default=0, description="Records created so far")
    skipped_existing: int = Field(default=0, description="Records left alone: the target already has them")
    overwritten: int = Field(default=0, description="Existing records replaced (overwrite=true)")
    invalid: list[InvalidRecord] = Field(default_factory=list, description="Invalid records (first 100)")
    invalid_count: int = 0
    binaries: int = Field(default=0, description="Binary files of this section in the archive")
    binaries_would_restore: int = 0
    binaries_restored: int = 0
    binaries_skipped_existing: int = 0
    skipped_reason: str | None = Field(
        default=None, description="Why the whole section is not imported (members, api_keys)"
    )
    merged_fields: list[str] = Field(
        default_factory=list, description="organization, copy: profile fields filled in where empty"
    )


class ImportProgress(ContractModel):
    binaries_total: int
    binaries_done: int
    bytes_total: int = Field(description="Bytes of binaries to restore")
    bytes_done: int
    records_total: int
    records_done: int
    percent: float = Field(ge=0, le=100)
    eta_seconds: int | None = Field(default=None, description="Estimated seconds left; null until known")


class UploadPart(ContractModel):
    part_number: int = Field(ge=1, le=10_000)
    offset: int = Field(description="Where the part starts in the archive file")
    size_bytes: int
    url: str = Field(description="Presigned PUT of this part; keep the ETag S3 answers")


class UploadTarget(ContractModel):
    """Where to PUT the archive: one presigned URL (small archives), or one per part (multipart, resumable:
    ask again with POST .../upload for fresh URLs of the parts still missing)."""

    size_bytes: int
    url: str | None = Field(default=None, description="Presigned PUT of the whole archive (single upload)")
    part_size_bytes: int | None = Field(default=None, description="Multipart: every part but the last")
    parts: list[UploadPart] = Field(default_factory=list, description="Multipart: the parts still to upload")
    parts_uploaded: list[int] = Field(default_factory=list, description="Multipart: part numbers S3 has")
    expires_at: Timestamp = Field(description="When the URLs stop working")


class ImportJobResponse(ContractModel):
    model_config = ConfigDict(json_schema_extra={"additionalProperties": True})

    import_id: str = Field(description="22-character shortuuid of the import job")
    organization_id: str = Field(description="The organization imported into")
    status: ImportStatus
    mode: ImportMode
    dry_run: bool | None = Field(description="Whether the last start was a dry run (null before any start)")
    overwrite: bool = False
    size_bytes: int = Field(description="Size of the archive to upload")
    archive_format: ArchiveFormat | None = Field(default=None, description="Known once validated")
    format_version: str | None = None
    source_organization_id: str | None = Field(default=None, description="From the archive's manifest")
    source_job_id: str | None = None
    sections: list[ImportSectionReport] = Field(default_factory=list)
    problems: list[ArchiveProblem] = Field(default_factory=list, description="Why the archive is refused")
    progress: ImportProgress | None = None
    error: str | None = None
    error_code: ImportErrorCode | None = None
    created_at: Timestamp
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    upload: UploadTarget | None = Field(default=None, description="Only in answers to create and upload")


class ImportJobList(ContractModel):
    imports: list[ImportJobResponse]
    next_token: str | None = None


class ImportStepInput(ContractModel):
    """What every Step Functions task of an import receives; run_id is the execution's name."""

    organization_id: str
    import_id: str
    run_id: str


class ImportFailInput(ImportStepInput):
    error: dict[str, Any] = Field(default_factory=dict, description="Step Functions' {Error, Cause}")
