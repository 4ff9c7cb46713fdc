"""The local Lambda Invoke endpoint, driven by moto's own Step Functions engine over real HTTP: Tasks, Map,
Retry and Catch run our in-process callables; every other request still reaches moto unchanged."""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from data_export_cli.lambda_service import (
    FunctionNotFoundError,
    LambdaService,
    enable_stepfunctions_execution,
    function_name,
)

from tests.credentials import moto_credentials

REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/x"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:"
EXECUTION_WAIT_SECONDS = 60.0


class TransientExportError(Exception):
    """Named like the domain's retryable error: Step Functions matches Retry on this class name."""


class Functions:
    """In-process functions by name, recording every call (name, payload, monotonic time)."""

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[Any], Any]] = {}
        self.calls: list[tuple[str, Any, float]] = []
        self._lock = threading.Lock()

    def invoke(self, name: str, payload: Any) -> Any:
        with self._lock:
            self.calls.append((name, payload, time.monotonic()))
        if name not in self.handlers:
            raise FunctionNotFoundError(name)
        return self.handlers[name](payload)

    def calls_to(self, name: str) -> list[tuple[str, Any, float]]:
        with self._lock:
            return [call for call in self.calls if call[0] == name]


def client(service: str, endpoint_url: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        # moto's IAM checks are the process's: where a local stack enforces them, its admin signs
        **moto_credentials(),
    )


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    enable_stepfunctions_execution(endpoint)
    yield endpoint
    server.stop()


@pytest.fixture
def functions() -> Functions:
    return Functions()


@pytest.fixture
def service(
    functions: Functions, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LambdaService]:
    with LambdaService(functions.invoke, moto_endpoint) as running:
        monkeypatch.setenv("MOTO_PORT", str(running.port))  # moto's engine reads it at each Lambda call
        yield running


def run_execution(moto_endpoint: str, definition: dict[str, Any], execution_input: Any) -> dict[str, Any]:
    """Create the state machine, start one execution and wait (bounded) until it is no longer RUNNING."""
    sfn = client("stepfunctions", moto_endpoint)
    state_machine = sfn.create_state_machine(
        name=f"sm-{uuid.uuid4().hex[:12]}", definition=json.dumps(definition), roleArn=ROLE_ARN
    )
    execution_arn = sfn.start_execution(
        stateMachineArn=state_machine["stateMachineArn"], input=json.dumps(execution_input)
    )["executionArn"]
    deadline = time.monotonic() + EXECUTION_WAIT_SECONDS
    while (described := sfn.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"execution still RUNNING after {EXECUTION_WAIT_SECONDS} s"
        time.sleep(0.05)
    return described  # type: ignore[no-any-return]


def invoke_task(function: str, **fields: Any) -> dict[str, Any]:
    """A Task using the optimized Lambda integration, the whole state input as payload."""
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function, "Payload.$": "$"},
        **fields,
    }


# -- Step Functions through the endpoint ---------------------------------------------------------------
@pytest.mark.parametrize("resource_form", ["optimized", "function-arn"])
def test_task_output_is_the_function_result(
    resource_form: str, functions: Functions, service: LambdaService, moto_endpoint: str
) -> None:
    functions.handlers["describe"] = lambda event: {"job": event["job"], "parts": [1, 2], "done": True}
    if resource_form == "optimized":
        task = invoke_task("describe", OutputPath="$.Payload", End=True)
    else:
        task = {"Type": "Task", "Resource": f"{FUNCTION_ARN}describe", "End": True}

    described = run_execution(
        moto_endpoint, {"StartAt": "Describe", "States": {"Describe": task}}, {"job": "j1"}
    )

    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"]) == {"job": "j1", "parts": [1, 2], "done": True}
    assert [(name, payload) for name, payload, _ in functions.calls] == [("describe", {"job": "j1"})]


def test_optimized_integration_output_carries_the_invoke_response(
    functions: Functions, service: LambdaService, moto_endpoint: str
) -> None:
    functions.handlers["answer"] = lambda event: 42
    definition = {"StartAt": "Answer", "States": {"Answer": invoke_task("answer", End=True)}}

    described = run_execution(moto_endpoint, definition, {})

    output = json.loads(described["output"])
    assert (output["StatusCode"], output["ExecutedVersion"], output["Payload"]) == (200, "$LATEST", 42)


def test_map_invokes_in_parallel_and_keeps_item_order(
    functions: Functions, service: LambdaService, moto_endpoint: str
) -> None:
    items = [5, 4, 3, 2, 1]
    # Every iteration waits for all five: the execution only succeeds if they really run at the same time.
    all_running = threading.Barrier(len(items), timeout=20)

    def square(event: Any) -> Any:
        all_running.wait()
        return {"index": event["index"], "square": event["value"] ** 2}

    functions.handlers["square"] = square
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemSelector": {"value.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"},
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Square",
                    "States": {"Square": invoke_task("square", OutputPath="$.Payload", End=True)},
                },
                "End": True,
            }
        },
    }

    described = run_execution(moto_endpoint, definition, {"items": items})

    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"]) == [
        {"index": index, "square": value**2} for index, value in enumerate(items)
    ]


def test_map_honours_max_concurrency(
    functions: Functions, service: LambdaService, moto_endpoint: str
) -> None:
    running, most_running = [0], [0]
    lock = threading.Lock()

    def count(event: Any) -> Any:
        with lock:
            running[0] += 1
            most_running[0] = max(most_running[0], running[0])
        time.sleep(0.05)  # long enough for a second iteration to overlap, if moto started one
        with lock:
            running[0] -= 1
        return event

    functions.handlers["count"] = count
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "MaxConcurrency": 2,
                "ItemProcessor": {
                    "StartAt": "Count",
                    "States": {"Count": {"Type": "Task", "Resource": f"{FUNCTION_ARN}count", "End": True}},
                },
                "End": True,
            }
        },
    }

    described = run_execution(moto_endpoint, definition, [1, 2, 3, 4, 5, 6])

    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"]) == [1, 2, 3, 4, 5, 6]
    assert most_running[0] <= 2


def test_retry_on_the_exception_class_name(
    functions: Functions, service: LambdaService, moto_endpoint: str
) -> None:
    def flaky(event: Any) -> Any:
        if len(functions.calls_to("flaky")) <= 2:
            raise TransientExportError("S3 is slow")
        return {"attempts": len(functions.calls_to("flaky"))}

    functions.handlers["flaky"] = flaky
    retry = {
        "ErrorEquals": ["TransientExportError"],
        "IntervalSeconds": 1,
        "MaxAttempts": 3,
        "BackoffRate": 1,
    }
    definition = {
        "StartAt": "Build",
        "States": {"Build": invoke_task("flaky", Retry=[retry], OutputPath="$.Payload", End=True)},
    }

    described = run_execution(moto_endpoint, definition, {})

    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"]) == {"attempts": 3}
    times = [at for _, _, at in functions.calls_to("flaky")]
    assert len(times) == 3
    # A lower bound only (sleep never returns early): moto really waits IntervalSeconds between attempts.
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(times))


def test_catch_hands_the_error_to_cleanup_then_fails(
    functions: Functions, service: LambdaService, moto_endpoint: str
) -> None:
    def build(event: Any) -> Any:
        raise ValueError(f"bad export {event['job']}")

    functions.handlers["build"] = build
    functions.handlers["cleanup"] = lambda event: {"cleaned": event["job"]}
    definition = {
        "StartAt": "Build",
        "States": {
            "Build": invoke_task(
                "build",
                Retry=[{"ErrorEquals": ["TransientExportError"], "IntervalSeconds": 1, "MaxAttempts": 2}],
                Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Cleanup"}],
                End=True,
            ),
            "Cleanup": {
                "Type": "Task",
                "Resource": f"{FUNCTION_ARN}cleanup",
                "ResultPath": "$.cleanup",
                "Next": "Failed",
            },
            "Failed": {"Type": "Fail", "Error": "ExportFailed", "Cause": "the build failed"},
        },
    }

    described = run_execution(moto_endpoint, definition, {"job": "j9"})

    assert (described["status"], described["error"], described["cause"]) == (
        "FAILED",
        "ExportFailed",
        "the build failed",
    )
    assert len(functions.calls_to("build")) == 1  # a ValueError is not retried as TransientExportError
    [(_, cleanup_input, _)] = functions.calls_to("cleanup")
    assert cleanup_input["job"] == "j9"
    assert cleanup_input["error"]["Error"] == "ValueError"
    cause = json.loads(cleanup_input["error"]["Cause"])
    assert (cause["errorType"], cause["errorMessage"]) == ("ValueError", "bad export j9")
    assert any("bad export" in line for line in cause["stackTrace"])


def test_unknown_function_fails_the_task(
    functions: Functions, service: LambdaService, moto_endpoint: str
) -> None:
    definition = {"StartAt": "Missing", "States": {"Missing": invoke_task("missing", End=True)}}

    described = run_execution(moto_endpoint, definition, {})

    assert (described["status"], described["error"]) == ("FAILED", "Lambda.ResourceNotFoundException")


# -- Invoke, called directly as boto3 calls it -----------------------------------------------------------
def test_invoke_answers_as_lambda_does(functions: Functions, service: LambdaService) -> None:
    functions.handlers["echo"] = lambda event: {"echo": event}
    lambda_client = client("lambda", service.url)

    response = lambda_client.invoke(FunctionName="echo", Payload=b'{"a": [1, "\\u00e9"]}')

    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read()) == {"echo": {"a": [1, "é"]}}


@pytest.mark.parametrize(
    "name",
    [
        "echo",
        "echo:$LATEST",
        "echo:live",
        f"{FUNCTION_ARN}echo",
        f"{FUNCTION_ARN}echo:3",
        "123456789012:function:echo",
    ],
)
def test_every_function_name_form_reaches_the_function(
    name: str, functions: Functions, service: LambdaService
) -> None:
    functions.handlers["echo"] = lambda event: event
    response = client("lambda", service.url).invoke(FunctionName=name, Payload=b"7")

    assert json.loads(response["Payload"].read()) == 7
    assert [call[0] for call in functions.calls] == ["echo"]
    assert function_name(name) == "echo"


def test_function_exception_is_an_unhandled_function_error(
    functions: Functions, service: LambdaService
) -> None:
    def broken(event: Any) -> Any:
        raise TransientExportError("try again")

    functions.handlers["broken"] = broken
    response = client("lambda", service.url).invoke(FunctionName="broken", Payload=b"{}")

    assert (response["StatusCode"], response["FunctionError"]) == (200, "Unhandled")
    body = json.loads(response["Payload"].read())
    assert (body["errorType"], body["errorMessage"]) == ("TransientExportError", "try again")
    assert isinstance(body["stackTrace"], list)
    assert any("raise TransientExportError" in line for line in body["stackTrace"])


def test_unmarshallable_result_is_a_function_error(functions: Functions, service: LambdaService) -> None:
    functions.handlers["opaque"] = lambda event: object()
    response = client("lambda", service.url).invoke(FunctionName="opaque", Payload=b"{}")

    assert response["FunctionError"] == "Unhandled"
    assert json.loads(response["Payload"].read())["errorType"] == "Runtime.MarshalError"


def test_unknown_function_is_resource_not_found(service: LambdaService) -> None:
    with pytest.raises(ClientError) as raised:
        client("lambda", service.url).invoke(FunctionName="nope", Payload=b"{}")

    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert error["Error"]["Code"] == "ResourceNotFoundException"
    assert error["Error"]["Message"] == "Function not found: nope"


def test_invalid_json_payload_is_rejected(functions: Functions, service: LambdaService) -> None:
    functions.handlers["echo"] = lambda event: event
    with pytest.raises(ClientError) as raised:
        client("lambda", service.url).invoke(FunctionName="echo", Payload=b"{not json")

    assert raised.value.response["Error"]["Code"] == "InvalidRequestContentException"
    assert functions.calls == []


def test_event_invocation_runs_in_the_background(functions: Functions, service: LambdaService) -> None:
    release, finished = threading.Event(), threading.Event()

    def slow(event: Any) -> Any:
        assert release.wait(timeout=20)
        finished.set()
        return event

    functions.handlers["slow"] = slow
    response = client("lambda", service.url).invoke(
        FunctionName="slow", InvocationType="Event", Payload=b"{}"
    )

    assert response["StatusCode"] == 202
    assert not finished.is_set()  # answered while the function is still blocked
    release.set()
    assert finished.wait(timeout=20)


# -- everything else is moto's ------------------------------------------------------------------------
def test_other_requests_reach_moto_unchanged(service: LambdaService, moto_endpoint: str) -> None:
    bucket = f"proxied-{uuid.uuid4().hex[:12]}"
    table = f"proxied-{uuid.uuid4().hex[:12]}"
    large = bytes(range(256)) * (3 * 4096)  # 3 MiB: boto3 sends "Expect: 100-continue"
    via_service, direct = client("s3", service.url), client("s3", moto_endpoint)

    via_service.create_bucket(Bucket=bucket)
    via_service.put_object(Bucket=bucket, Key="a/large.bin", Body=large, Metadata={"origin": "proxy"})
    head = via_service.head_object(Bucket=bucket, Key="a/large.bin")
    missing = via_service.list_objects_v2(Bucket=bucket, Prefix="b/")

    stored = direct.get_object(Bucket=bucket, Key="a/large.bin")
    assert stored["Body"].read() == large
    assert stored["Metadata"] == {"origin": "proxy"}
    assert head["ContentLength"] == len(large)
    assert (
        via_service.get_object(Bucket=bucket, Key="a/large.bin", Range="bytes=10-19")["Body"].read()
        == large[10:20]
    )
    assert missing["KeyCount"] == 0
    with pytest.raises(ClientError) as raised:
        via_service.get_object(Bucket=bucket, Key="absent")
    assert raised.value.response["Error"]["Code"] == "NoSuchKey"

    dynamodb = client("dynamodb", service.url)
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "k"}, "n": {"N": "5"}})
    item = client("dynamodb", moto_endpoint).get_item(TableName=table, Key={"pk": {"S": "k"}})["Item"]
    assert item == {"pk": {"S": "k"}, "n": {"N": "5"}}


@pytest.fixture
def anonymous_s3_allowed() -> Iterator[None]:
    """An unsigned request reaches moto: with a local stack enforcing IAM in this process, for this test
    only (the forwarding is under test, not authorization, and signing a chunked body is beside it)."""
    from data_export_cli import strict_aws
    from moto import settings

    enforced = settings.INITIAL_NO_AUTH_ACTION_COUNT == 0
    strict_aws.enforce(False)
    try:
        yield
    finally:
        strict_aws.enforce(enforced)


@pytest.mark.usefixtures("anonymous_s3_allowed")
def test_chunked_request_body_is_forwarded(service: LambdaService, moto_endpoint: str) -> None:
    bucket = f"chunked-{uuid.uuid4().hex[:12]}"
    client("s3", moto_endpoint).create_bucket(Bucket=bucket)
    pieces = [b"first piece;", b"", b"second\r\npiece"]

    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    connection.request("PUT", f"/{bucket}/chunked.txt", body=iter(pieces), encode_chunked=True)
    response = connection.getresponse()
    response.read()
    connection.close()

    assert response.status == 200
    stored = client("s3", moto_endpoint).get_object(Bucket=bucket, Key="chunked.txt")["Body"].read()
    assert stored == b"".join(pieces)


def test_response_without_length_is_streamed_back_chunked(functions: Functions) -> None:
    """An upstream answering without Content-Length (moto streams some bodies) reaches the client whole."""
    pieces = [b"alpha-", b"beta-" * 10_000, b"gamma"]

    class Streaming(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # no length, no chunking: the body ends when the connection closes

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("X-Upstream-Path", self.path)
            self.end_headers()
            for piece in pieces:
                self.wfile.write(piece)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Streaming)
    threading.Thread(target=upstream.serve_forever, args=(0.05,), daemon=True).start()
    try:
        with LambdaService(functions.invoke, f"http://127.0.0.1:{upstream.server_address[1]}") as running:
            connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
            connection.request("GET", "/some/path?x=1")
            response = connection.getresponse()
            body = response.read()
            # The same connection still serves a second request: the chunked framing was complete.
            connection.request("GET", "/again")
            second = connection.getresponse()
            second_body = second.read()
            connection.close()
    finally:
        upstream.shutdown()
        upstream.server_close()

    assert (response.status, response.getheader("Transfer-Encoding")) == (200, "chunked")
    assert response.getheader("X-Upstream-Path") == "/some/path?x=1"
    assert body == b"".join(pieces)
    assert (second.getheader("X-Upstream-Path"), second_body) == ("/again", b"".join(pieces))


def test_unreachable_moto_is_a_bad_gateway(functions: Functions) -> None:
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens on that port any more
    with LambdaService(functions.invoke, f"http://127.0.0.1:{port}") as running:
        connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        connection.close()

    assert response.status == 502
