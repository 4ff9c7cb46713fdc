"""The export queue (SQS): one message per job to build."""

from __future__ import annotations

from typing import TYPE_CHECKING

from data_export.models import ExportRequestMessage

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


class ExportQueue:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def send(self, message: ExportRequestMessage) -> None:
        self._client.send_message(QueueUrl=self._queue_url, MessageBody=message.model_dump_json())
