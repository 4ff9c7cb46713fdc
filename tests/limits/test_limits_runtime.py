"""The local runtime enforces Lambda's limits as Lambda's Invoke API reports them: a request over 6 MB is
refused (413 RequestEntityTooLargeException), an invocation past the function's concurrency is throttled
(429 TooManyRequestsException), a function past its timeout fails with Sandbox.Timedout, a response over
6 MB with Function.ResponseSizeTooLarge; the context counts the remaining time down; the limits can be
lowered through the environment (``data-export local serve``)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from data_export import wiring
from data_export_cli.limits import (
    HISTORY_EVENTS,
    INVOKE_PAYLOAD_BYTES,
    FunctionError,
    FunctionTimedOutError,
    Limits,
    TooManyRequestsError,
)
from data_export_cli.stack import LambdaContext

BUILD_UNIT = "ExportBuildUnitFunction"
PLAN = "ExportPlanFunction"


@pytest.fixture
def lambda_api(stack: Any) -> Any:
    """Lambda's Invoke API as the state machine calls it (moto's engine signs with the key "ak")."""
    import os

    return boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{os.environ['MOTO_PORT']}",
        region_name="us-east-1",
        aws_access_key_id="ak",
        aws_secret_access_key="sk",  # moto's fixed test key
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture
def all_units_busy(stack: Any) -> Iterator[list[Any]]:
    """Every environment the unit builder may have, taken: its concurrency is used up."""
    held = []
    while (environment := stack.reserve(BUILD_UNIT, timeout=0)) is not None:
        held.append(environment)
    yield held
    for environment in held:
        stack.release(environment)


def function_name(stack: Any, logical_id: str) -> str:
    return str(stack.arns[logical_id])


def test_a_request_over_6_mb_is_refused_with_413(stack: Any, lambda_api: Any) -> None:
    payload = json.dumps({"padding": "x" * INVOKE_PAYLOAD_BYTES}).encode()
    with pytest.raises(ClientError) as refused:
        lambda_api.invoke(FunctionName=function_name(stack, BUILD_UNIT), Payload=payload)
    error = refused.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert error["Error"]["Code"] == "RequestEntityTooLargeException"


def test_an_invocation_past_the_reserved_concurrency_is_throttled_with_429(
    stack: Any, lambda_api: Any, all_units_busy: list[Any]
) -> None:
    assert len(all_units_busy) == stack.concurrency.stats[BUILD_UNIT].limit == 8
    throttles = stack.concurrency.stats[BUILD_UNIT].throttles
    with pytest.raises(ClientError) as throttled:
        lambda_api.invoke(FunctionName=function_name(stack, BUILD_UNIT), Payload=b"{}")
    error = throttled.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    # Step Functions names it Lambda.TooManyRequestsException.
    assert error["Error"]["Code"] == "TooManyRequestsException"
    assert error["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert stack.concurrency.stats[BUILD_UNIT].throttles == throttles + 1
    with pytest.raises(TooManyRequestsError):  # a direct invocation (the gateway's, the poller's) too
        stack.invoke(BUILD_UNIT, {})


def test_a_function_past_its_timeout_fails_with_sandbox_timedout(
    stack: Any, lambda_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunked = wiring.chunked_export()
    finished: list[str] = []

    def slow_plan(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.5)
        finished.append("ran on")  # the thread cannot be killed: it runs on, its result dropped
        return []

    monkeypatch.setattr(chunked, "plan", slow_plan)
    previous = stack.concurrency.set_timeout(PLAN, 0.5)
    timeouts = stack.concurrency.stats[PLAN].timeouts
    try:
        event = {
            "organization_id": "o",
            "job_id": "j",
            "run_id": "j",
            "chunk_target_bytes": 1,
            "chunk_max_records": 1,
        }
        answer = lambda_api.invoke(
            FunctionName=function_name(stack, PLAN), Payload=json.dumps(event).encode()
        )
        assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
        body = json.loads(answer["Payload"].read())
        assert body["errorType"] == "Sandbox.Timedout", body
        assert body["errorMessage"].endswith("Task timed out after 0.50 seconds"), body
        with pytest.raises(FunctionTimedOutError):
            stack.invoke(PLAN, event)
    finally:
        stack.concurrency.set_timeout(PLAN, previous)
    assert stack.concurrency.stats[PLAN].timeouts == timeouts + 2
    time.sleep(1.5)
    assert finished == ["ran on", "ran on"]


def test_a_response_over_6_mb_is_a_function_error(
    stack: Any, lambda_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    units = INVOKE_PAYLOAD_BYTES // 7 + 1  # the Plan answers every unit's index: "1000000," is 8 bytes
    monkeypatch.setattr(wiring.chunked_export(), "plan", lambda *args, **kwargs: [None] * (units + 10**6))
    event = {
        "organization_id": "o",
        "job_id": "j",
        "run_id": "j",
        "chunk_target_bytes": 1,
        "chunk_max_records": 1,
    }
    answer = lambda_api.invoke(FunctionName=function_name(stack, PLAN), Payload=json.dumps(event).encode())
    assert answer["FunctionError"] == "Unhandled"
    body = json.loads(answer["Payload"].read())
    assert body["errorType"] == "Function.ResponseSizeTooLarge", body
    with pytest.raises(FunctionError, match="exceeded maximum allowed payload size"):
        stack.invoke(PLAN, event)


def test_the_context_counts_the_remaining_time_down() -> None:
    context = LambdaContext("f", 128, 2.0, "request", "arn")
    first = context.get_remaining_time_in_millis()
    time.sleep(0.2)
    second = context.get_remaining_time_in_millis()
    assert 1_900 <= first <= 2_000 and first - second >= 150
    past = LambdaContext("f", 128, 0.01, "request", "arn", deadline=time.monotonic() - 1)
    assert past.get_remaining_time_in_millis() == 0


def test_the_limits_are_lowered_by_the_environment() -> None:
    limits = Limits.from_environment(
        {
            "DATA_EXPORT_LOCAL_CONCURRENCY": "ExportWorkerFunction=2, ExportBuildUnitFunction=8",
            "DATA_EXPORT_LOCAL_TIMEOUT_SCALE": "0.1",
            "DATA_EXPORT_LOCAL_TIMEOUTS": "ExportBuildUnitFunction=30",
            "DATA_EXPORT_LOCAL_VISIBILITY_TIMEOUTS": "ExportQueue=30",
            "DATA_EXPORT_LOCAL_HISTORY_EVENTS": "1000",
        }
    )
    assert limits.enabled and limits.reserved_concurrency == {
        "ExportWorkerFunction": 2,
        "ExportBuildUnitFunction": 8,
    }
    assert limits.timeout_scale == 0.1 and limits.timeouts == {"ExportBuildUnitFunction": 30.0}
    assert limits.visibility_timeouts == {"ExportQueue": 30} and limits.history_events == 1000
    assert Limits.from_environment({}) == Limits() and Limits().history_events == HISTORY_EVENTS
    assert not Limits.from_environment({"DATA_EXPORT_LOCAL_LIMITS": "off"}).enabled
    with pytest.raises(ValueError, match="Name=value"):
        Limits.from_environment({"DATA_EXPORT_LOCAL_CONCURRENCY": "ExportWorkerFunction"})


def test_the_session_stack_has_the_lowered_limits_and_the_templates(stack: Any) -> None:
    stats = stack.concurrency.stats
    assert stats["ExportWorkerFunction"].limit == 2 and stats["ExportWorkerFunction"].reserved
    assert stats[BUILD_UNIT].limit == 8 and stats[BUILD_UNIT].timeout_seconds == 8.0
    assert stats["GetExportFunction"].limit == 1000 - 2 - 8 and not stats["GetExportFunction"].reserved
    assert stats["StartExportFunction"].timeout_seconds == 29  # the template's Globals
    assert stack.event_source_concurrency("ExportWorkerFunction", "ExportQueue") == 10  # MaxConcurrentExports
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.physical["ExportQueue"], AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
    )["Attributes"]
    assert attributes["VisibilityTimeout"] == "5"
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 3


class FakeStack:
    """What the SQS poller uses of a stack: one function over one queue, the runtime's concurrency."""

    def __init__(self, function_limit: int, maximum_concurrency: int | None, messages: int) -> None:
        from data_export_cli.limits import Concurrency

        self.concurrency = Concurrency({"Fn": function_limit}, 1000, {"Fn": 60.0})
        self.maximum = maximum_concurrency
        self.physical, self.arns = {"Queue": "url"}, {"Queue": "arn"}
        self.queue = [{"MessageId": str(i), "ReceiptHandle": str(i), "Body": "{}"} for i in range(messages)]
        self.in_flight: set[str] = set()
        self.most_in_flight = 0
        self.handled: list[str] = []
        self._lock = threading.Lock()

    def client(self, service: str) -> Any:
        return self

    def acting_as(self, function: str) -> Any:
        return contextlib.nullcontext()

    def event_source_concurrency(self, function: str, queue: str) -> int | None:
        return self.maximum

    def reserve(self, function: str, timeout: float) -> Any:
        return self.concurrency.acquire(function, timeout)

    def release(self, environment: Any) -> None:
        self.concurrency.release(environment)

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            batch = [m for m in self.queue if m["MessageId"] not in self.in_flight][
                : kwargs["MaxNumberOfMessages"]
            ]
            self.in_flight |= {m["MessageId"] for m in batch}
            self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
        if not batch:
            time.sleep(0.05)  # a short long poll
        return {"Messages": batch}

    def delete_message(self, QueueUrl: str, ReceiptHandle: str) -> None:  # boto3's parameter names
        with self._lock:
            self.queue = [m for m in self.queue if m["ReceiptHandle"] != ReceiptHandle]
            self.in_flight.discard(ReceiptHandle)

    def invoke(self, function: str, event: dict[str, Any], *, environment: Any) -> dict[str, Any]:
        time.sleep(0.1)
        with self._lock:
            self.handled += [record["messageId"] for record in event["Records"]]
        self.concurrency.release(environment)
        return {"batchItemFailures": []}


@pytest.mark.parametrize(
    ("function_limit", "maximum_concurrency", "held", "expected"),
    [(3, None, 0, 3), (5, 2, 0, 2), (2, None, 1, 1)],
    ids=["reserved-concurrency", "maximum-concurrency", "concurrency-in-use-elsewhere"],
)
def test_the_sqs_poller_receives_only_what_the_function_can_run(
    function_limit: int, maximum_concurrency: int | None, held: int, expected: int
) -> None:
    from data_export_cli.worker import QueuePoller

    stack = FakeStack(function_limit, maximum_concurrency, messages=12)
    taken = [stack.reserve("Fn", 0) for _ in range(held)]  # e.g. the function invoked directly meanwhile
    poller = QueuePoller(stack)  # type: ignore[arg-type]
    thread = threading.Thread(target=poller._poll, args=("Queue", "Fn", 1), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while len(stack.handled) < 12:
        assert time.monotonic() < deadline, stack.handled
        time.sleep(0.05)
    poller._stop.set()
    thread.join(5)
    for environment in taken:
        stack.release(environment)
    assert sorted(stack.handled, key=int) == [str(i) for i in range(12)]
    assert stack.most_in_flight == expected  # messages received and not yet deleted, at most
    assert stack.concurrency.queues["Queue"].received == 12
