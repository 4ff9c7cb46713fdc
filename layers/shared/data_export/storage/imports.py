"""Import jobs in DynamoDB (IMPORTS_TABLE_NAME: organization_id, import_id; LSI by_created_at).

Every write of a run is conditional on the run that owns the job (``run_id``) and on its status, so a
canceled import, or one started again, cannot be written to by a run that is still finishing."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from data_export.models import (
    ArchiveFormat,
    ArchiveProblem,
    ImportErrorCode,
    ImportMode,
    ImportSectionReport,
    ImportStatus,
)
from data_export.storage.dynamo import (
    decode_page_token,
    encode_page_token,
    from_item,
    newest_first,
    to_item,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class ImportJob(BaseModel):
    organization_id: str
    import_id: str
    status: ImportStatus = ImportStatus.PENDING
    mode: ImportMode
    overwrite: bool = False
    dry_run: bool | None = None
    size_bytes: int
    object_key: str  # the uploaded archive in the exports bucket (imports/...)
    upload_id: str | None = None  # multipart upload, until completed by the start
    part_size_bytes: int | None = None
    archive_etag: str | None = (
        None  # the uploaded object the runs read (If-Match): it cannot change under them
    )
    archive_format: ArchiveFormat | None = None
    format_version: str | None = None
    source_organization_id: str | None = None
    source_job_id: str | None = None
    sections: list[ImportSectionReport] = []
    problems: list[ArchiveProblem] = []
    error: str | None = None
    error_code: ImportErrorCode | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    # The run (Step Functions execution name) that owns the job, and where the apply has got to.
    run_id: str | None = None
    applied_from: datetime | None = None  # when this run's apply started (for the ETA)
    cursor: int = 0  # plan items done: binaries first, then records
    binaries_total: int = 0
    binaries_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    records_total: int = 0
    records_done: int = 0
    expires_ttl: int


class ImportJobRepository:
    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    @staticmethod
    def _key(organization_id: str, import_id: str) -> dict[str, Any]:
        return {"organization_id": {"S": organization_id}, "import_id": {"S": import_id}}

    def create(self, job: ImportJob) -> None:
        self._client.put_item(
            TableName=self._table,
            Item=to_item(job.model_dump(mode="json")),
            ConditionExpression="attribute_not_exists(import_id)",
        )

    def get(self, organization_id: str, import_id: str) -> ImportJob | None:
        item = self._client.get_item(
            TableName=self._table, Key=self._key(organization_id, import_id), ConsistentRead=True
        ).get("Item")
        return ImportJob.model_validate(from_item(item)) if item else None

    def update(
        self,
        job: ImportJob,
        values: dict[str, Any],
        *,
        statuses: Iterable[ImportStatus],
        run_id: str | None = None,
    ) -> bool:
        """Write ``values`` (None removes the attribute) if the job is in one of ``statuses`` and, given
        ``run_id``, still owned by that run. False, and nothing written, otherwise."""
        names: dict[str, str] = {"#status": "status"}
        expression_values: dict[str, Any] = {}
        sets, removes = [], []
        for index, (name, value) in enumerate(values.items()):
            names[f"#f{index}"] = name
            if value is None:
                removes.append(f"#f{index}")
            else:
                sets.append(f"#f{index} = :v{index}")
                expression_values[f":v{index}"] = to_item({"v": value})["v"]
        update = ("SET " + ", ".join(sets) if sets else "") + (
            " REMOVE " + ", ".join(removes) if removes else ""
        )
        allowed = [f":s{index}" for index, _ in enumerate(statuses)]
        for index, status in enumerate(statuses):
            expression_values[f":s{index}"] = {"S": status.value}
        condition = f"#status IN ({', '.join(allowed)})"
        if run_id is not None:
            names["#run"] = "run_id"
            expression_values[":run"] = {"S": run_id}
            condition += " AND #run = :run"
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(job.organization_id, job.import_id),
                UpdateExpression=update.strip(),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=expression_values,
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        updated = ImportJob.model_validate({**job.model_dump(mode="json"), **values})
        for name in values:
            setattr(job, name, getattr(updated, name))
        return True

    def list(
        self, organization_id: str, limit: int, next_token: str | None
    ) -> tuple[list[ImportJob], str | None]:
        """The organization's imports, newest first, a page at a time."""
        start_key = decode_page_token(next_token, organization_id, "import_id") if next_token else None
        items, last_key = newest_first(self._client, self._table, organization_id, limit, start_key)
        jobs = [ImportJob.model_validate(item) for item in items]
        return jobs, encode_page_token(last_key) if last_key else None


def expires_ttl(created_at: datetime, days: int) -> int:
    return int((created_at + timedelta(days=days)).timestamp())
