"""Execution slots of big exports: one item in the jobs table whose map ``holders`` names the jobs whose Step
Functions executions may build units now (job id -> epoch second the slot was taken). A slot is taken with
one conditional update (free while the map holds fewer than the limit), so racing workers never admit more
than the limit; it is given back by Assemble or Fail, or reclaimed once its execution is no longer running.

The item's key (``#admission`` / ``execution-slots``) is no organization's: no organization id starts with
``#``. It carries no ``created_at``, ``status`` or ``open_marker``, so no index and no job query sees it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

SLOTS_KEY: dict[str, Any] = {"organization_id": {"S": "#admission"}, "job_id": {"S": "execution-slots"}}


class ExecutionSlots:
    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    def take(self, job_id: str, *, limit: int, now: int) -> bool:
        """Take a slot for the job's execution (True also when it holds one already); False when all
        ``limit`` slots are held by other jobs."""
        for _ in range(2):
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=SLOTS_KEY,
                    UpdateExpression="SET holders.#job = if_not_exists(holders.#job, :now)",
                    ConditionExpression=(
                        "attribute_exists(holders)"
                        " AND (attribute_exists(holders.#job) OR size(holders) < :limit)"
                    ),
                    ExpressionAttributeNames={"#job": job_id},
                    ExpressionAttributeValues={":now": {"N": str(now)}, ":limit": {"N": str(limit)}},
                )
                return True
            except self._client.exceptions.ConditionalCheckFailedException:
                if self.holders(create=True) is not None:
                    return False
        return False

    def release(self, job_id: str, *, since: int | None = None) -> bool:
        """Give the job's slot back (a no-op when it holds none). ``since``: only if the slot is still the
        one taken then (a reclaim must not free a slot the job took again meanwhile)."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "Key": SLOTS_KEY,
            "UpdateExpression": "REMOVE holders.#job",
            "ExpressionAttributeNames": {"#job": job_id},
            "ConditionExpression": "attribute_exists(holders)",
        }
        if since is not None:
            params["ConditionExpression"] = "holders.#job = :since"
            params["ExpressionAttributeValues"] = {":since": {"N": str(since)}}
        try:
            self._client.update_item(**params)
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def holders(self, *, create: bool = False) -> dict[str, int] | None:
        """The jobs holding a slot and since when (None before the item exists, unless ``create``)."""
        item = self._client.get_item(TableName=self._table, Key=SLOTS_KEY, ConsistentRead=True).get("Item")
        if item is None or "holders" not in item:
            if not create:
                return None
            self._client.update_item(
                TableName=self._table,
                Key=SLOTS_KEY,
                UpdateExpression="SET holders = if_not_exists(holders, :empty)",
                ExpressionAttributeValues={":empty": {"M": {}}},
            )
            return None
        return {job_id: int(value["N"]) for job_id, value in item["holders"]["M"].items()}
