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


class SectionReport(BaseModel):
    """Progress and outcome of one section (a folder of the archive)."""

    key: str
    status: JobStatus = JobStatus.PENDING
    record_count: int = 0
    binary_count: int = 0
    error: str | None = None


class ExportJobResponse(BaseModel):
    """What both endpoints answer: the export job as the client sees it."""

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


class ErrorResponse(BaseModel):
    """Body of every error answer."""

    error: str = Field(description="Machine-readable code, e.g. unauthorized, forbidden, not_found")
    message: str = Field(description="What was wrong, for people")
    details: list[dict[str, object]] | None = None


class ExportRequestMessage(BaseModel):
    """Body of the SQS message that asks the worker to build one job."""

    organization_id: str
    job_id: str


class StepInput(BaseModel):
    """What every Step Functions task of a chunked build receives; run_id is the execution's name."""

    organization_id: str
    job_id: str
    run_id: str


class PlanInput(StepInput):
    chunk_target_bytes: int
    chunk_max_records: int


class BuildUnitInput(StepInput):
    unit: dict[str, Any]


class AssembleInput(StepInput):
    units: list[dict[str, Any]]


class FailInput(StepInput):
    error: dict[str, Any] = Field(default_factory=dict, description="Step Functions' {Error, Cause}")

    def message(self) -> str:
        """A useful sentence from the caught error (the Lambda error's type and message)."""
        name = str(self.error.get("Error") or "Error")
        cause = self.error.get("Cause") or ""
        try:
            details = json.loads(cause)
        except (TypeError, ValueError):
            details = None
        if isinstance(details, dict) and "errorMessage" in details:
            return f"Export failed: {details.get('errorType', name)}: {details['errorMessage']}"
        return f"Export failed: {name}: {cause}" if cause else f"Export failed: {name}"
