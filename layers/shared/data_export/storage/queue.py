"""The export queue (SQS): one message per job to build."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from data_export.models import ExportRequestMessage

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

# What may still hold a job's request: messages waiting (visible or delayed) and in flight (being handled).
QUEUE_DEPTH_ATTRIBUTES: list[QueueAttributeNameType] = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


class ExportQueue:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def send(self, message: ExportRequestMessage, *, delay_seconds: int = 0) -> None:
        """Queue the request; ``delay_seconds`` (at most 900) keeps it invisible that long first."""
        params: dict[str, Any] = {"QueueUrl": self._queue_url, "MessageBody": message.model_dump_json()}
        if delay_seconds > 0:
            params["DelaySeconds"] = min(delay_seconds, 900)
        self._client.send_message(**params)

    def depth(self) -> int | None:
        """Messages in the queue, waiting (visible or delayed) or being handled (in flight): SQS's
        approximate counts, which lag by up to a minute. None when they cannot be read."""
        names = QUEUE_DEPTH_ATTRIBUTES
        try:
            attributes = self._client.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=names)
        except self._client.exceptions.ClientError:
            return None
        return sum(int(attributes.get("Attributes", {}).get(name, 0)) for name in names)
