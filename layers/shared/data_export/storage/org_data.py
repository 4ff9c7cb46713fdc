"""Read side of the platform's stores that an export needs: org records and API-key metadata.

The reads that decide access (a key by its hash, a member's role) are strongly consistent
(``ConsistentRead``): a revocation or a demotion written a moment ago is seen by the next request, at
1 read unit per item of up to 4 KB instead of 0.5 (docs/operations.md, "Throttling and capacity")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from data_export.auth import StoredApiKey, StoredRecordError, UnknownKeyCache
from data_export.storage.layout import API_KEYS_BY_ORGANIZATION_INDEX, partition_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class OrgDataRepository:
    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    def iter_records(
        self, organization_id: str, section: str, first: str | None = None, last: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Records of one section in id order, a page at a time (constant memory); with ``first``/``last``
        only the record ids in that inclusive range (a work unit of a big section)."""
        condition = "#partition = :partition"
        values: dict[str, Any] = {":partition": {"S": partition_key(organization_id, section)}}
        if first is not None and last is not None:
            condition += " AND record_id BETWEEN :first AND :last"
            values |= {":first": {"S": first}, ":last": {"S": last}}
        paginator = self._client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ExpressionAttributeNames={"#partition": "partition"},
        ):
            for item in page["Items"]:
                yield json.loads(item["record"]["S"])

    def get_record(
        self, organization_id: str, section: str, record_id: str, *, consistent: bool = False
    ) -> dict[str, Any] | None:
        response = self._client.get_item(
            TableName=self._table,
            Key={
                "partition": {"S": partition_key(organization_id, section)},
                "record_id": {"S": record_id},
            },
            ConsistentRead=consistent,
        )
        item = response.get("Item")
        return json.loads(item["record"]["S"]) if item else None

    def member_role(self, organization_id: str, member_id: str) -> str | None:
        """The member's role, read strongly consistent (a demotion counts from the next request); None when
        the member is gone. A member record without the layout's shape raises StoredRecordError."""
        try:
            member = self.get_record(organization_id, "members", member_id, consistent=True)
        except (KeyError, TypeError, ValueError):
            raise StoredRecordError("member record", "not a string of JSON") from None
        if member is None:
            return None
        role = member.get("role") if isinstance(member, dict) else None
        if not isinstance(role, str):
            raise StoredRecordError("member role", "missing or not a string")
        return role


class ApiKeyRepository:
    """The key store, read by key hash. Misses are remembered for a short while (``UnknownKeyCache``): a
    well-formed key that the store does not know costs one read per container and TTL."""

    def __init__(self, client: DynamoDBClient, table: str, unknown: UnknownKeyCache | None = None) -> None:
        self._client = client
        self._table = table
        self.unknown = UnknownKeyCache() if unknown is None else unknown

    def get_by_hash(self, key_hash: str) -> StoredApiKey | None:
        """The key's record, read strongly consistent (a revocation counts from the next request)."""
        if self.unknown.is_unknown(key_hash):
            return None
        item = self._client.get_item(
            TableName=self._table, Key={"key_hash": {"S": key_hash}}, ConsistentRead=True
        ).get("Item")
        if item is None:
            self.unknown.remember(key_hash)
            return None
        return StoredApiKey.from_item(item)

    def iter_metadata(self, organization_id: str) -> Iterator[dict[str, Any]]:
        """The organization's keys as metadata records: never the raw key, never its hash."""
        paginator = self._client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            IndexName=API_KEYS_BY_ORGANIZATION_INDEX,
            KeyConditionExpression="organization_id = :org",
            ExpressionAttributeValues={":org": {"S": organization_id}},
        ):
            for item in page["Items"]:
                yield json.loads(item["record"]["S"])


def iter_section(
    org_data: OrgDataRepository,
    api_keys: ApiKeyRepository,
    organization_id: str,
    section: str,
    first: str | None = None,
    last: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Records of any export section in id order: API keys (metadata only) from the key store, the rest
    from the org-data store, optionally only ids first..last (API keys are never split into ranges)."""
    if section == "api_keys":
        return api_keys.iter_metadata(organization_id)
    return org_data.iter_records(organization_id, section, first, last)
