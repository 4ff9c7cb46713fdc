"""Export jobs in DynamoDB. Every state change of a build is conditional on the attempt that owns the job,
so two workers can never both build it and a late worker cannot overwrite a newer state."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from data_export.errors import failure_message
from data_export.jobs import OPEN_MARKER, Job
from data_export.models import ErrorCode, JobStatus, SectionReport
from data_export.storage.dynamo import from_item, newest_first, to_item
from data_export.storage.layout import JOBS_OPEN_INDEX

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Told of every job that reached completed or failed (once: only the write that made it so calls it).
FinishedListener = Callable[[Job], None]


class JobRepository:
    def __init__(
        self, client: DynamoDBClient, table: str, on_finished: FinishedListener | None = None
    ) -> None:
        self._client = client
        self._table = table
        self._on_finished = on_finished

    def _finished(self, job: Job, values: dict[str, Any]) -> None:
        if self._on_finished is not None:
            self._on_finished(Job.model_validate({**job.model_dump(), **values}))

    @staticmethod
    def _key(organization_id: str, job_id: str) -> dict[str, Any]:
        return {"organization_id": {"S": organization_id}, "job_id": {"S": job_id}}

    def create(self, job: Job) -> None:
        self._client.put_item(
            TableName=self._table,
            Item=to_item(job.model_dump(mode="json", exclude={"units_done"})),  # a string set, added per unit
            ConditionExpression="attribute_not_exists(job_id)",
        )

    # -- pointers: items beside the jobs whose sort key is not a job id ("open#zip", "idempotency#<hash>"),
    # naming one job. They carry no created_at, status or open_marker, so no index and no job query sees them.
    def pointer(self, organization_id: str, name: str) -> str | None:
        """The job a pointer names (None when absent)."""
        response = self._client.get_item(
            TableName=self._table, Key=self._key(organization_id, name), ConsistentRead=True
        )
        item = response.get("Item")
        return item["target_job_id"]["S"] if item else None

    def create_holding(
        self, job: Job, pointer: str, previous: str | None, new_pointer: str | None = None
    ) -> bool:
        """Create the job and point ``pointer`` at it, in one transaction that holds only if the pointer
        still names ``previous`` (absent when None), and ``new_pointer`` too if given, only if that one
        names no job yet. False, and nothing written, when another request moved either first."""
        condition, values = "attribute_not_exists(job_id)", {}
        if previous is not None:
            condition, values = "target_job_id = :previous", {":previous": {"S": previous}}
        pointer_put: dict[str, Any] = {
            "TableName": self._table,
            "Item": self._pointer_item(job.organization_id, pointer, job.job_id, job.expires_ttl),
            "ConditionExpression": condition,
        }
        if values:
            pointer_put["ExpressionAttributeValues"] = values
        items: list[Any] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_item(job.model_dump(mode="json", exclude={"units_done"})),
                    "ConditionExpression": "attribute_not_exists(job_id)",
                }
            },
            {"Put": pointer_put},
        ]
        if new_pointer is not None:
            new_put = {
                "TableName": self._table,
                "Item": self._pointer_item(job.organization_id, new_pointer, job.job_id, job.expires_ttl),
                "ConditionExpression": "attribute_not_exists(job_id)",
            }
            items.append({"Put": new_put})
        try:
            self._client.transact_write_items(TransactItems=items)
        except self._client.exceptions.TransactionCanceledException:
            return False
        return True

    def add_pointer(self, organization_id: str, pointer: str, job_id: str, expires_ttl: int) -> bool:
        """Point ``pointer`` at the job unless it already names one (False then)."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=self._pointer_item(organization_id, pointer, job_id, expires_ttl),
                ConditionExpression="attribute_not_exists(job_id)",
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _pointer_item(self, organization_id: str, pointer: str, job_id: str, expires_ttl: int) -> Any:
        return {
            **self._key(organization_id, pointer),
            "target_job_id": {"S": job_id},
            "expires_ttl": {"N": str(expires_ttl)},
        }

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
        error_code: ErrorCode | None = None,
        file_size_bytes: int = 0,
        archive_sha256: str | None = None,
        s3_checksum_sha256: str | None = None,
        archive_expires_at: datetime | None = None,
    ) -> bool:
        """Complete or fail the job; attempt_id=None fails a job no attempt ever claimed. A failure's
        ``error`` is what the client is told (errors.failure_message), never an internal error's text."""
        if status is JobStatus.FAILED:
            error_code = error_code or ErrorCode.EXPORT_FAILED
            error = error or failure_message(error_code)
        values: dict[str, Any] = {
            "status": status.value,
            "sections": [section.model_dump(mode="json") for section in sections],
            "completed_at": completed_at.isoformat(),
            "file_size_bytes": file_size_bytes,
            "error": error,
            "error_code": error_code.value if error_code else None,
            "archive_sha256": archive_sha256,
            "s3_checksum_sha256": s3_checksum_sha256,
            "archive_expires_at": archive_expires_at.isoformat() if archive_expires_at else None,
            "upload_id": None,
            "lease_until": None,
            "open_marker": None,
        }
        if attempt_id is None:
            done = self._update(job, values, "#status = :pending", {":pending": JobStatus.PENDING.value})
        else:
            done = self._update(
                job,
                values,
                "#status = :processing AND #attempt_id = :attempt",
                {":processing": JobStatus.PROCESSING.value, ":attempt": attempt_id},
            )
        if done:
            self._finished(job, values)
        return done

    def cancel(self, job: Job, *, now: datetime) -> bool:
        """Fail a pending or processing job on its owner's request. Every build step writes conditionally
        on the job being processing, so from here on none of them can write, and each stops at its next
        write; the caller cleans up what they left."""
        values: dict[str, Any] = {
            "status": JobStatus.FAILED.value,
            "sections": [
                section.model_dump(mode="json")
                | ({"status": JobStatus.FAILED.value} if section.status is not JobStatus.COMPLETED else {})
                for section in job.sections
            ],
            "completed_at": now.isoformat(),
            "error": f"Canceled by request at {now.isoformat()}",
            "error_code": ErrorCode.CANCELED.value,
            "lease_until": None,
            "open_marker": None,
        }
        done = self._update(
            job,
            values,
            "#status IN (:pending, :processing)",
            {":pending": JobStatus.PENDING.value, ":processing": JobStatus.PROCESSING.value},
        )
        if done:
            self._finished(job, values)
        return done

    def mark_archive_deleted(self, job: Job, *, now: datetime) -> bool:
        """Record that a completed job's archive was deleted on request (once)."""
        return self._update(
            job,
            {"archive_deleted_at": now.isoformat()},
            "#status = :completed AND attribute_not_exists(archive_deleted_at)",
            {":completed": JobStatus.COMPLETED.value},
        )

    def list_recent(
        self, organization_id: str, *, limit: int, start_key: dict[str, Any] | None = None
    ) -> tuple[list[Job], dict[str, Any] | None]:
        """One page of the organization's jobs, newest first, and the key to continue from (or None)."""
        items, last_key = newest_first(self._client, self._table, organization_id, limit, start_key)
        return [Job.model_validate(item) for item in items], last_key

    def count_unit(
        self,
        job: Job,
        *,
        attempt_id: str,
        unit_id: str,
        section_index: int,
        records: int,
        binaries: int,
        weight: int = 0,
        size: int = 0,
    ) -> bool:
        """Add a built unit's counts to its section, and its weight and size to the job's progress, once
        per unit however often the unit is retried."""
        section = f"sections[{section_index}]"
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(job.organization_id, job.job_id),
                UpdateExpression=(
                    f"SET {section}.record_count = {section}.record_count + :records, "
                    f"{section}.binary_count = {section}.binary_count + :binaries, "
                    f"{section}.#status = :processing, "
                    "done_weight = if_not_exists(done_weight, :zero) + :weight, "
                    "bytes_written = if_not_exists(bytes_written, :zero) + :size "
                    "ADD units_done :unit_set"
                ),
                ConditionExpression=(
                    "#status = :processing AND #attempt_id = :attempt"
                    " AND (attribute_not_exists(units_done) OR NOT contains(units_done, :unit_id))"
                ),
                ExpressionAttributeNames={"#status": "status", "#attempt_id": "attempt_id"},
                ExpressionAttributeValues={
                    ":records": {"N": str(records)},
                    ":binaries": {"N": str(binaries)},
                    ":weight": {"N": str(weight)},
                    ":size": {"N": str(size)},
                    ":zero": {"N": "0"},
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

    def mark_requeued(self, job: Job, *, now: datetime) -> bool:
        """Record that a pending job was queued again (once per count seen: racing sweeps queue it once)."""
        return self._update(
            job,
            {"requeued": job.requeued + 1, "last_seen_at": now.isoformat()},
            "#status = :pending AND #requeued = :seen",
            {":pending": JobStatus.PENDING.value, ":seen": job.requeued},
        )

    def mark_seen(self, job: Job, *, now: datetime, chunked: bool) -> bool:
        """Record that a worker handled the pending job's request (its sign of life for the sweeper), and
        whether it is built by Step Functions. False when the job is no longer pending."""
        return self._update(
            job,
            {"last_seen_at": now.isoformat(), "chunked": chunked},
            "#status = :pending",
            {":pending": JobStatus.PENDING.value},
        )

    def fail_abandoned(
        self,
        job: Job,
        *,
        now: datetime,
        sections: list[SectionReport],
        error: str,
        error_code: ErrorCode = ErrorCode.EXPORT_FAILED,
    ) -> bool:
        """Fail a job nobody builds: pending, or processing by the attempt found dead (not a newer one).
        ``error`` is what the client is told (errors.failure_message), never an internal error's text."""
        values: dict[str, Any] = {
            "status": JobStatus.FAILED.value,
            "sections": [section.model_dump(mode="json") for section in sections],
            "completed_at": now.isoformat(),
            "error": error,
            "error_code": error_code.value,
            "upload_id": None,
            "lease_until": None,
            "open_marker": None,
        }
        done = self._update(
            job,
            values,
            "#status = :pending OR (#status = :processing AND #attempt_id = :attempt)",
            {
                ":pending": JobStatus.PENDING.value,
                ":processing": JobStatus.PROCESSING.value,
                ":attempt": job.attempt_id or "",
            },
        )
        if done:
            self._finished(job, values)
        return done
