"""Export lifecycle events on EventBridge, so that other services (emails, webhooks, audits) can follow.

Source ``data-export``; detail-type ``Export Completed`` or ``Export Failed``; the detail carries ids and
outcome only (no records, no URLs). Sent after the job's write that finished it succeeded: at most once per
job (a Lambda dying between the two writes loses the event; the job itself is always right)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from data_export.jobs import Job
from data_export.models import ImportStatus, JobStatus

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

    from data_export.storage.imports import ImportJob

logger = Logger(child=True)

EVENT_SOURCE = "data-export"
COMPLETED = "Export Completed"
FAILED = "Export Failed"


def event_detail(job: Job) -> dict[str, Any]:
    return {
        "organization_id": job.organization_id,
        "job_id": job.job_id,
        "status": job.status.value,
        "archive_format": job.archive_format.value,
        "file_size_bytes": job.file_size_bytes,
        "archive_sha256": job.archive_sha256,
        "output_filename": job.output_filename,
        "completed_at": job.completed_at.isoformat() if job.completed_at else None,
        "error": job.error,
        "error_code": job.error_code.value if job.error_code else None,
    }


class ExportEvents:
    def __init__(self, client: EventBridgeClient, bus_name: str) -> None:
        self._client = client
        self._bus = bus_name

    def job_finished(self, job: Job) -> None:
        """Publish the job's outcome. A failure to publish is logged, never raised: the job is finished
        either way, and the export must not fail for want of a notification."""
        try:
            response = self._client.put_events(
                Entries=[
                    {
                        "Source": EVENT_SOURCE,
                        "DetailType": COMPLETED if job.status is JobStatus.COMPLETED else FAILED,
                        "Detail": json.dumps(event_detail(job)),
                        "EventBusName": self._bus,
                    }
                ]
            )
        except Exception:
            logger.exception("Export event not published", extra={"job_id": job.job_id})
            return
        if response.get("FailedEntryCount"):
            logger.error(
                "Export event not published",
                extra={"job_id": job.job_id, "error": response["Entries"][0].get("ErrorCode")},
            )


IMPORT_COMPLETED = "Import Completed"
IMPORT_FAILED = "Import Failed"


class ImportEvents:
    """``Import Completed`` / ``Import Failed`` on the same bus and source as exports: ids and counts only."""

    def __init__(self, client: EventBridgeClient, bus_name: str) -> None:
        self._client = client
        self._bus = bus_name

    def import_finished(self, job: ImportJob) -> None:
        detail = {
            "organization_id": job.organization_id,
            "import_id": job.import_id,
            "status": job.status.value,
            "mode": job.mode.value,
            "dry_run": job.dry_run,
            "source_organization_id": job.source_organization_id,
            "records_done": job.records_done,
            "binaries_done": job.binaries_done,
            "completed_at": job.completed_at.isoformat() if job.completed_at else None,
            "error_code": job.error_code.value if job.error_code else None,
        }
        detail_type = IMPORT_COMPLETED if job.status is ImportStatus.COMPLETED else IMPORT_FAILED
        try:
            response = self._client.put_events(
                Entries=[
                    {
                        "Source": EVENT_SOURCE,
                        "DetailType": detail_type,
                        "Detail": json.dumps(detail),
                        "EventBusName": self._bus,
                    }
                ]
            )
        except Exception:
            logger.exception("Import event not published", extra={"import_id": job.import_id})
            return
        if response.get("FailedEntryCount"):
            logger.error("Import event not published", extra={"import_id": job.import_id})
