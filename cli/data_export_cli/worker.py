"""A local SQS event source mapping: polls each queue the template wires to a function, invokes the function
with an SQS event, and deletes what the function did not report as failed (ReportBatchItemFailures)."""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from data_export_cli.stack import ACCOUNT_ID, REGION, LocalStack

logger = Logger(service="data-export-local")


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": message.get("MessageAttributes", {}),
                "md5OfBody": hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324 - SQS's own digest
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for message in messages
        ]
    }


class QueuePoller:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sqs = stack.client("sqs")

    def start(self) -> QueuePoller:
        for queue_id in self.stack.template.of_type("AWS::SQS::Queue"):
            target = self.stack.function_for_queue(queue_id)
            if target is None:
                continue
            thread = threading.Thread(
                target=self._poll, args=(queue_id, *target), name=f"sqs-{queue_id}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def poll_once(self, queue_id: str, function_id: str, batch_size: int, wait_seconds: int = 1) -> int:
        """Deliver one batch; returns how many messages were received. Lambda's poller receives and deletes
        with the function's role (SAM grants it AWSLambdaSQSQueueExecutionRole for the event source)."""
        with self.stack.acting_as(function_id):
            return self._poll_once(queue_id, function_id, batch_size, wait_seconds)

    def _poll_once(self, queue_id: str, function_id: str, batch_size: int, wait_seconds: int) -> int:
        queue_url = self.stack.physical[queue_id]
        received = self._sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(batch_size, 10),
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not received:
            return 0
        try:
            response = self.stack.invoke(function_id, sqs_event(received, self.stack.arns[queue_id]))
        except Exception:
            logger.exception("Function failed on a batch; messages return after their visibility timeout")
            return len(received)
        failed = {item["itemIdentifier"] for item in (response or {}).get("batchItemFailures", [])}
        for message in received:
            if message["MessageId"] not in failed:
                self._sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(received)

    def _poll(self, queue_id: str, function_id: str, batch_size: int) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once(queue_id, function_id, batch_size)
            except Exception:
                if not self._stop.is_set():
                    logger.exception("Polling failed", extra={"queue": queue_id})
                    self._stop.wait(1)


class Scheduler:
    """A local EventBridge schedule: invokes each function with a Schedule event every `rate(...)`."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Scheduler:
        for spec in self.stack.functions.values():
            for seconds in spec.schedules:
                thread = threading.Thread(
                    target=self._run,
                    args=(spec.logical_id, seconds),
                    name=f"schedule-{spec.logical_id}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, function_id: str, seconds: int) -> None:
        while not self._stop.wait(seconds):
            event = {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": ACCOUNT_ID,
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": REGION,
                "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{function_id}"],
                "detail": {},
            }
            try:
                self.stack.invoke(function_id, event)
            except Exception:
                logger.exception("Scheduled function failed", extra={"function": function_id})
