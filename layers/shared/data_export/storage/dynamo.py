"""Conversion between plain Python values and DynamoDB's attribute-value format."""

from __future__ import annotations

import base64
import binascii
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in values.items() if value is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _plain(_deserializer.deserialize(value)) for key, value in item.items()}


def encode_page_token(last_key: dict[str, Any]) -> str:
    """An opaque page token: the DynamoDB key to continue from (ids and a timestamp, nothing secret)."""
    plain = {name: value["S"] for name, value in last_key.items()}
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_page_token(token: str, organization_id: str, id_name: str) -> dict[str, Any]:
    """The key a token names; refuses tokens that ``encode_page_token`` did not make for this organization's
    list (keyed by ``id_name``, e.g. job_id): the token is the caller's input."""
    from data_export.errors import InvalidRequestError
    from data_export.ids import is_valid_id

    malformed = "Malformed next_token: pass the value a previous page returned"
    try:
        plain = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequestError(malformed) from exc
    if (
        not isinstance(plain, dict)
        or set(plain) != {"organization_id", id_name, "created_at"}
        or plain["organization_id"] != organization_id
        or not isinstance(plain[id_name], str)
        or not is_valid_id(plain[id_name])
        or not isinstance(plain["created_at"], str)
    ):
        raise InvalidRequestError(malformed)
    return {name: {"S": value} for name, value in plain.items()}


def newest_first(
    client: DynamoDBClient, table: str, organization_id: str, limit: int, start_key: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One page of an organization's items by the table's by_created_at index, newest first (the export
    jobs and the import jobs), and the key to continue from (or None)."""
    from data_export.storage.layout import JOBS_BY_CREATED_AT_INDEX

    request: dict[str, Any] = {
        "TableName": table,
        "IndexName": JOBS_BY_CREATED_AT_INDEX,
        "KeyConditionExpression": "organization_id = :org",
        "ExpressionAttributeValues": {":org": {"S": organization_id}},
        "ScanIndexForward": False,
        "Limit": limit,
    }
    if start_key:
        request["ExclusiveStartKey"] = start_key
    response = client.query(**request)
    return [from_item(item) for item in response["Items"]], response.get("LastEvaluatedKey")
