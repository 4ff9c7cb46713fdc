"""Export jobs in DynamoDB. Every state change of a build is conditional on the attempt that owns the job,
so two workers can never both build it and a late worker cannot overwrite a newer state."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from data_export.jobs import OPEN_MARKER, Job
from data_export.models import JobStatus, SectionReport
from data_export.storage.dynamo import from_item, to_item
from data_export.storage.layout import JOBS_OPEN_INDEX

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class JobRepository:
    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    @staticmethod
    def _key(organization_id: str, job_id: str) -> dict[str, Any]:
        return {"organization_id": {"S": organization_id}, "job_id": {"S": job_id}}

    def create(self, job: Job) -> None:
        self._client.put_item(
            TableName=self._table,
            Item=to_item(job.model_dump(mode="json", exclude={"units_done"})),  # a string set, added per unit
            ConditionExpression="attribute_not_exists(job_id)",
        )

    def get(self, organization_id: str, job_id: str) -> Job | None:
        response = self._client.get_item(
            TableName=self._table, Key=self._key(organization_id, job_id), ConsistentRead=True
        )
        item = response.get("Item")
        return Job.model_validate(from_item(item)) if item else None

    def _update(
        self, job: Job, values: dict[str, Any], condition: str, condition_values: dict[str, Any]
    ) -> bool:
        """SET the given attributes (REMOVE those given as None) if the condition holds."""
        kept = [name for name, value in values.items() if value is not None]
        removed = [name for name, value in values.items() if value is None]
        expression = "SET " + ", ".join(f"#{name} = :{name}" for name in kept)
        if removed:
            expression += " REMOVE " + ", ".join(f"#{name}" for name in removed)
        names = {f"#{name}": name for name in values}
        names |= {
            f"#{name}": name for name in ("status", "attempt_id", "lease_until") if f"#{name}" in condition
        }
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(job.organization_id, job.job_id),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item({**{f":{n}": values[n] for n in kept}, **condition_values}),
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def claim(self, job: Job, *, attempt_id: str, now: datetime, lease_until: int) -> bool:
        """Take the job for one build attempt: pending, or processing with its owner's lease run out."""
        return self._update(
            job,
            {
                "status": JobStatus.PROCESSING.value,
                "attempt_id": attempt_id,
                "lease_until": lease_until,
                "started_at": (job.started_at or now).isoformat(),
            },
            "#status = :pending OR (#status = :processing AND #lease_until < :now)",
            {
                ":pending": JobStatus.PENDING.value,
                ":processing": JobStatus.PROCESSING.value,
                ":now": int(now.timestamp()),
            },
        )

    def save_progress(self, job: Job, *, attempt_id: str, **values: Any) -> bool:
        """Write build state (sections, upload id, ...) if this attempt still owns the job."""
        plain = {
            name: [section.model_dump(mode="json") for section in value] if name == "sections" else value
            for name, value in values.items()
        }
        return self._update(
            job,
            plain,
            "#status = :processing AND #attempt_id = :attempt",
            {":processing": JobStatus.PROCESSING.value, ":attempt": attempt_id},
        )

    def finish(
        self,
        job: Job,
        *,
        attempt_id: str | None,
        status: JobStatus,
        sections: list[SectionReport],
        completed_at: datetime,
        error: str | None = None,
        file_size_bytes: int = 0,
    ) -> bool:
        """Complete or fail the job; attempt_id=None fails a job no attempt ever claimed."""
        values: dict[str, Any] = {
            "status": status.value,
            "sections": [section.model_dump(mode="json") for section in sections],
            "completed_at": completed_at.isoformat(),
            "file_size_bytes": file_size_bytes,
            "error": error,
            "upload_id": None,
            "lease_until": None,
            "open_marker": None,
        }
        if attempt_id is None:
            return self._update(job, values, "#status = :pending", {":pending": JobStatus.PENDING.value})
        return self._update(
            job,
            values,
            "#status = :processing AND #attempt_id = :attempt",
            {":processing": JobStatus.PROCESSING.value, ":attempt": attempt_id},
        )

    def count_unit(
        self, job: Job, *, attempt_id: str, unit_id: str, section_index: int, records: int, binaries: int
    ) -> bool:
        """Add a built unit's counts to its section, once per unit however often the unit is retried."""
        section = f"sections[{section_index}]"
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(job.organization_id, job.job_id),
                UpdateExpression=(
                    f"SET {section}.record_count = {section}.record_count + :records, "
                    f"{section}.binary_count = {section}.binary_count + :binaries, "
                    f"{section}.#status = :processing ADD units_done :unit_set"
                ),
                ConditionExpression=(
                    "#status = :processing AND #attempt_id = :attempt"
                    " AND (attribute_not_exists(units_done) OR NOT contains(units_done, :unit_id))"
                ),
                ExpressionAttributeNames={"#status": "status", "#attempt_id": "attempt_id"},
                ExpressionAttributeValues={
                    ":records": {"N": str(records)},
                    ":binaries": {"N": str(binaries)},
                    ":processing": {"S": JobStatus.PROCESSING.value},
                    ":attempt": {"S": attempt_id},
                    ":unit_id": {"S": unit_id},
                    ":unit_set": {"SS": [unit_id]},
                },
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def iter_open(self) -> Iterator[Job]:
        """Every pending or processing job, across organizations (the sparse by_open index)."""
        paginator = self._client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            IndexName=JOBS_OPEN_INDEX,
            KeyConditionExpression="open_marker = :open",
            ExpressionAttributeValues={":open": {"S": OPEN_MARKER}},
        ):
            for item in page["Items"]:
                yield Job.model_validate(from_item(item))

    def mark_requeued(self, job: Job) -> bool:
        """Record that a lost pending job was queued again (once)."""
        return self._update(
            job,
            {"requeued": job.requeued + 1},
            "#status = :pending AND #requeued = :seen",
            {":pending": JobStatus.PENDING.value, ":seen": job.requeued},
        )

    def fail_abandoned(self, job: Job, *, now: datetime, sections: list[SectionReport], error: str) -> bool:
        """Fail a job nobody builds: pending, or processing by the attempt found dead (not a newer one)."""
        values: dict[str, Any] = {
            "status": JobStatus.FAILED.value,
            "sections": [section.model_dump(mode="json") for section in sections],
            "completed_at": now.isoformat(),
            "error": error,
            "upload_id": None,
            "lease_until": None,
            "open_marker": None,
        }
        return self._update(
            job,
            values,
            "#status = :pending OR (#status = :processing AND #attempt_id = :attempt)",
            {
                ":pending": JobStatus.PENDING.value,
                ":processing": JobStatus.PROCESSING.value,
                ":attempt": job.attempt_id or "",
            },
        )
