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
    """Lambda's SQS event source mappings: for each queue wired to a function, receive a batch only while
    the function has free concurrency and fewer batches are in flight than the event source's
    ``ScalingConfig.MaximumConcurrency``, invoke the function with it in a thread of its own, and delete
    what the function did not report as failed. What is not deleted comes back after the queue's visibility
    timeout, and moto moves a message received more than ``maxReceiveCount`` times to the dead-letter
    queue on its next receive, as SQS does."""

    # How long a poller waits for free concurrency before it looks again (and notices stop()).
    _WAIT = 0.25

    def __init__(self, stack: LocalStack, wait_seconds: int = 1) -> None:
        self.stack = stack
        self.wait_seconds = wait_seconds  # long polling of each receive
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
        """Deliver one batch, in this thread, once the function has free concurrency; returns how many
        messages were received (0 when it had none for ``wait_seconds``)."""
        environment = self.stack.reserve(function_id, timeout=wait_seconds)
        if environment is None:
            return 0
        received = self._receive(queue_id, function_id, batch_size, wait_seconds, environment)
        if received:
            self._deliver(queue_id, function_id, received, environment)
        return len(received)

    def _receive(
        self, queue_id: str, function_id: str, batch_size: int, wait_seconds: int, environment: Any
    ) -> list[dict[str, Any]]:
        """A batch (the environment handed on with it), or none (the environment given back). Lambda's poller
        receives and deletes with the function's role (SAM grants it AWSLambdaSQSQueueExecutionRole)."""
        try:
            with self.stack.acting_as(function_id):
                received: list[dict[str, Any]] = self._sqs.receive_message(
                    QueueUrl=self.stack.physical[queue_id],
                    MaxNumberOfMessages=min(batch_size, 10),
                    WaitTimeSeconds=wait_seconds,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
        except BaseException:
            self.stack.release(environment)
            raise
        if not received:
            self.stack.release(environment)
        return received

    def _deliver(
        self, queue_id: str, function_id: str, received: list[dict[str, Any]], environment: Any
    ) -> None:
        counts = self.stack.concurrency
        receive_count = max(int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)) for m in received)
        counts.count_queue(queue_id, batches=1, received=len(received), receive_count=receive_count)
        try:
            event = sqs_event(received, self.stack.arns[queue_id])
        except BaseException:
            self.stack.release(environment)
            raise
        try:
            response = self.stack.invoke(function_id, event, environment=environment)
        except Exception:
            logger.exception(
                "Function failed on a batch; its messages return after their visibility timeout",
                extra={"function": function_id, "queue": queue_id},
            )
            counts.count_queue(queue_id, returned=len(received))
            return
        failed = {item["itemIdentifier"] for item in (response or {}).get("batchItemFailures", [])}
        with self.stack.acting_as(function_id):
            for message in received:
                if message["MessageId"] in failed:
                    counts.count_queue(queue_id, returned=1)
                    continue
                self._sqs.delete_message(
                    QueueUrl=self.stack.physical[queue_id], ReceiptHandle=message["ReceiptHandle"]
                )
                counts.count_queue(queue_id, deleted=1)

    def _poll(self, queue_id: str, function_id: str, batch_size: int) -> None:
        maximum = self.stack.event_source_concurrency(function_id, queue_id)
        batches = threading.BoundedSemaphore(maximum) if maximum else None
        while not self._stop.is_set():
            if batches is not None and not batches.acquire(timeout=self._WAIT):
                continue  # MaximumConcurrency batches in flight already
            handed_on = False
            try:
                environment = self.stack.reserve(function_id, timeout=self._WAIT)
                if environment is None:
                    continue  # the function has no free concurrency: receive nothing
                received = self._receive(queue_id, function_id, batch_size, self.wait_seconds, environment)
                if received:
                    threading.Thread(
                        target=self._deliver_and_release,
                        args=(queue_id, function_id, received, environment, batches),
                        name=f"sqs-{queue_id}-batch",
                        daemon=True,
                    ).start()
                    handed_on = True
            except Exception:
                if not self._stop.is_set():
                    logger.exception("Polling failed", extra={"queue": queue_id})
                    self._stop.wait(1)
            finally:
                if batches is not None and not handed_on:
                    batches.release()

    def _deliver_and_release(
        self,
        queue_id: str,
        function_id: str,
        received: list[dict[str, Any]],
        environment: Any,
        batches: threading.BoundedSemaphore | None,
    ) -> None:
        try:
            self._deliver(queue_id, function_id, received, environment)
        except Exception:
            logger.exception("Deleting delivered messages failed", extra={"queue": queue_id})
        finally:
            if batches is not None:
                batches.release()


class Scheduler:
    """A local EventBridge schedule: invokes each function with a Schedule event every `rate(...)`, or every
    ``every[function]`` seconds (a test's accelerated clock)."""

    def __init__(self, stack: LocalStack, every: dict[str, float] | None = None) -> None:
        self.stack = stack
        self.every = every or {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Scheduler:
        for spec in self.stack.functions.values():
            for rate in spec.schedules:
                seconds = self.every.get(spec.logical_id, rate)
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

    def _run(self, function_id: str, seconds: float) -> None:
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
