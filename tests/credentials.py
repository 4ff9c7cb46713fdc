"""Credentials for a test's own moto server.

moto's IAM checks are per process: once a local stack in this pytest process enforces them (as the session's
``stack`` fixture does), only identities it knows may call any moto server in the process, so a test's own
server is called as the stack's admin (what the stack put in the environment); else anything goes."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Any


def moto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    }


def as_function(logical_id: str) -> AbstractContextManager[None]:
    """Test code doing what a function does (signing a download URL as the poll does) with its role, as the
    local stack runs that function: the admin may not, for one, assume the download-signing role."""
    from data_export_cli.iam import acting_as

    return acting_as(f"data-export-{logical_id}Role")


def as_admin() -> AbstractContextManager[None]:
    """The test harness or a person (seeding, deleting an asset, a fault injected into a store, reading
    results to assert on them) inside code that runs as a function: signed as the local admin user again."""
    from data_export_cli.iam import acting_as

    return acting_as(None)


class PrivateQueue:
    """A queue of the test's own standing in for ExportQueue (its messages are the test's to read: no worker
    of the session takes them). The functions' roles may rightly use ExportQueue only, so the stand-in is
    used as the admin; the functions' own sqs grants are proven through ExportQueue itself."""

    def __init__(self, stack: Any, name: str) -> None:
        from data_export.storage.queue import ExportQueue

        with as_admin():
            self.url = str(stack.client("sqs").create_queue(QueueName=name)["QueueUrl"])
        self._queue = ExportQueue(stack.client("sqs"), self.url)

    def send(self, message: Any, *, delay_seconds: int = 0) -> None:
        with as_admin():
            self._queue.send(message, delay_seconds=delay_seconds)

    def depth(self) -> int | None:
        with as_admin():
            return self._queue.depth()
