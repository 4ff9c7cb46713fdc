"""The store behind the per-key rate limits: fixed-window counters.

Rate-limits table (RATE_LIMITS_TABLE_NAME): partition key ``bucket`` (S) = ``"<key_id>#m#<epoch minute>"``
or ``"<key_id>#d#<epoch day>"``, attribute ``hits`` (N), TTL attribute ``expires_at_epoch`` (N)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class RateLimitCounters:
    """Fixed-window counters: one conditional ADD per request and window, atomic across Lambdas."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    def take(self, bucket: str, quota: int, expires_at_epoch: int) -> int | None:
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key={"bucket": {"S": bucket}},
                UpdateExpression="SET expires_at_epoch = :expires ADD hits :one",
                ConditionExpression="attribute_not_exists(hits) OR hits < :quota",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":quota": {"N": str(quota)},
                    ":expires": {"N": str(expires_at_epoch)},
                },
                ReturnValues="UPDATED_NEW",
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return None
        return int(response["Attributes"]["hits"]["N"])
