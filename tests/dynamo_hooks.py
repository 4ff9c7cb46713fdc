"""Watch or break the DynamoDB calls the in-process functions of the local stack make: botocore event hooks
on the one client they share (``wiring.client("dynamodb")``), removed on exit. Filtered by operation and
table, so that the worker's own calls meanwhile go on untouched."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any


def _shared_client() -> Any:
    from data_export import wiring

    return wiring.client("dynamodb")


@contextmanager
def recorded_calls(operation: str, table: str) -> Iterator[list[dict[str, Any]]]:
    """The parameters of every ``operation`` (e.g. "GetItem") on ``table`` made inside the block."""
    calls: list[dict[str, Any]] = []
    lock = threading.Lock()

    def record(params: dict[str, Any], **_: Any) -> None:
        if params.get("TableName") == table:
            with lock:
                calls.append(dict(params))

    events = _shared_client().meta.events
    event = f"provide-client-params.dynamodb.{operation}"
    events.register(event, record)
    try:
        yield calls
    finally:
        events.unregister(event, record)


@contextmanager
def failing_calls(operation: str, table: str, code: str, status: int) -> Iterator[list[str]]:
    """Every ``operation`` on ``table`` inside the block fails at once with AWS error ``code`` (botocore's
    retries are skipped: the answer replaces the request). Yields the tables of the calls it broke."""
    broken: list[str] = []

    def fail(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]] | None:
        body = params.get("body") or b"{}"
        if json.loads(body).get("TableName") != table:
            return None
        broken.append(table)
        parsed = {
            "Error": {"Code": code, "Message": "injected by the test"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return SimpleNamespace(status_code=status, headers={}, content=b""), parsed

    events = _shared_client().meta.events
    event = f"before-call.dynamodb.{operation}"
    events.register(event, fail)
    try:
        yield broken
    finally:
        events.unregister(event, fail)
