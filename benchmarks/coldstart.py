"""Cold start: how long each function's handler module takes to import, and to import and handle a first
event, in fresh interpreters.

Each sample is a new ``python -c`` process with the functions' environment that times, after interpreter
start-up: (1) ``import <handler module>``; (2) that plus handling one representative event that needs no
AWS service (a request with a malformed API key for the API functions, a malformed message for the queue
consumers, an incomplete input for the Step Functions tasks), so that cost moved out of the import into
the first invocation still shows; (3) that plus creating the first boto3 client, which every real
request needs and which our handlers import only on first use. The peer is the naive handler the issue
names: it imports boto3 + pydantic + Powertools' event handler, then handles the same event with a
validating resolver (or Powertools' batch processor) and a pydantic model. Processes run round-robin;
medians and paired ratios are reported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import Comparison, Contender

REPO = Path(__file__).resolve().parents[1]
BASE_PATH = "/dashboard/api/v1/data-export"
ORGANIZATION_ID = "eHcFM2wk4RdyYG8yMrTGbQ"
JOB_ID = "Q7vWk3Qx9mHc2NbY5sLeTp"
# Well formed but with a wrong checksum: refused (401) before any store lookup.
MALFORMED_KEY = "csb_" + "A" * 32 + "_00000000"


def api_event(method: str, path: str, parameters: dict[str, str]) -> dict[str, Any]:
    """A REST API (v1 proxy) event as API Gateway sends it."""
    return {
        "resource": path,
        "path": path.format(**parameters),
        "httpMethod": method,
        "headers": {"X-API-Key": MALFORMED_KEY, "Accept": "application/json"},
        "multiValueHeaders": {"X-API-Key": [MALFORMED_KEY], "Accept": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": parameters,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": "/live" + path.format(**parameters),
            "stage": "live",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "203.0.113.10"},
            "accountId": "123456789012",
            "apiId": "abc123",
        },
        "body": None,
        "isBase64Encoded": False,
    }


def sqs_event(body: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
                "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:data-export-ExportQueue",
                "awsRegion": "us-east-1",
            }
        ]
    }


NAIVE_IMPORTS = "boto3, pydantic, aws_lambda_powertools.event_handler"
# The naive handler's code after its imports: a validating resolver and a pydantic model for the API
# functions, Powertools' batch processor and the same model for the queue consumers, a model for the steps.
# It runs after the import is timed, so that the peer's import figure is exactly the import set.
NAIVE_API = """
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.exceptions import UnauthorizedError
class Job(pydantic.BaseModel):
    job_id: str
    status: str
app = APIGatewayRestResolver(enable_validation=True)
@app.route("/dashboard/api/v1/data-export/<organization_id>/<job_id>", method=["GET", "DELETE"])
def job(organization_id: str, job_id: str) -> Job:
    raise UnauthorizedError("Malformed API key")
@app.post("/dashboard/api/v1/data-export/<organization_id>")
def start(organization_id: str, archive_format: str = "zip") -> Job:
    raise UnauthorizedError("Malformed API key")
handler = lambda event, context: app.resolve(event, context)
"""
NAIVE_QUEUE = """
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
class Message(pydantic.BaseModel):
    organization_id: str
    job_id: str
processor = BatchProcessor(event_type=EventType.SQS)
def record_handler(record):
    Message.model_validate_json(record.body)
def handler(event, context):
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
"""
NAIVE_STEP = """
class Input(pydantic.BaseModel):
    organization_id: str
    job_id: str
    run_id: str
handler = lambda event, context: Input.model_validate(event)
"""


@dataclass(frozen=True)
class FirstEvent:
    """One function's handler and the first event it handles; ``outcome`` is what it must come to (the
    response's status code, or the name of the exception the runtime would report) on both sides."""

    module: str
    handler: str
    event: dict[str, Any]
    outcome: str
    naive: str  # the naive handler's code


ONE_ID = {"organization_id": ORGANIZATION_ID}
TWO_IDS = {**ONE_ID, "job_id": JOB_ID}
JOB_PATH = BASE_PATH + "/{organization_id}/{job_id}"
# A message nobody can parse: its record fails, so the batch processor raises (SQS delivers it again).
POISON = sqs_event("not json")
FUNCTIONS = {
    "StartExportFunction": FirstEvent(
        "functions.start_export.app",
        "lambda_handler",
        api_event("POST", BASE_PATH + "/{organization_id}", ONE_ID),
        "401",
        NAIVE_API,
    ),
    "GetExportFunction": FirstEvent(
        "functions.get_export.app", "lambda_handler", api_event("GET", JOB_PATH, TWO_IDS), "401", NAIVE_API
    ),
    "CancelExportFunction": FirstEvent(
        "functions.cancel_export.app",
        "lambda_handler",
        api_event("DELETE", JOB_PATH, TWO_IDS),
        "401",
        NAIVE_API,
    ),
    "ExportWorkerFunction": FirstEvent(
        "functions.export_worker.app", "lambda_handler", POISON, "BatchProcessingError", NAIVE_QUEUE
    ),
    "ExportSweeperFunction (dead letters)": FirstEvent(
        "functions.export_sweeper.app", "dead_letter", POISON, "BatchProcessingError", NAIVE_QUEUE
    ),
    "ExportStepsFunction (plan)": FirstEvent(
        "functions.export_steps.app",
        "plan",
        {"organization_id": ORGANIZATION_ID},
        "ValidationError",
        NAIVE_STEP,
    ),
}
# The child process. Everything it needs is built before the clocks start, with no import beyond `time`;
# its own names start with _ so that the handler's code cannot shadow them. At each mark it reads the
# process's CPU time and the wall clock.
PROBE = """
import time
_event = {event!r}
class _Context:
    function_name = "coldstart"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:coldstart"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
_marks = [(time.process_time(), time.perf_counter())]
{import_code}
_marks.append((time.process_time(), time.perf_counter()))
{define_code}
try:
    _result = {handler}(_event, _Context())
    _outcome = str(_result.get("statusCode", "ok"))
except Exception as exc:
    _outcome = type(exc).__name__
_marks.append((time.process_time(), time.perf_counter()))
{client_code}
_marks.append((time.process_time(), time.perf_counter()))
_cpu, _wall = zip(*_marks)
print("coldstart", _outcome, *(t - _cpu[0] for t in _cpu[1:]), *(t - _wall[0] for t in _wall[1:]))
"""
# What the functions are given by the template (the values do not matter here).
ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "data-export",
    "POWERTOOLS_METRICS_NAMESPACE": "DataExport",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "AWS_DEFAULT_REGION": "us-east-1",
    **{
        name: "data-export-bench"
        for name in (
            "JOBS_TABLE_NAME",
            "ORG_DATA_TABLE_NAME",
            "API_KEYS_TABLE_NAME",
            "RATE_LIMITS_TABLE_NAME",
            "ASSETS_BUCKET_NAME",
            "EXPORTS_BUCKET_NAME",
        )
    },
    "EXPORT_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/data-export-bench",
}
STAGES = ("import", "import + first event", "import + first event + boto3 client")
CLOCKS = {"cpu": "CPU time", "wall": "wall clock"}


def probe(function: FirstEvent, *, naive: bool) -> str:
    if naive:
        return PROBE.format(
            event=function.event,
            import_code=f"import {NAIVE_IMPORTS}",
            define_code=function.naive,
            handler="handler",
            client_code="boto3.client('dynamodb')",
        )
    return PROBE.format(
        event=function.event,
        import_code=f"import {function.module} as function",
        define_code="",
        handler=f"function.{function.handler}",
        client_code="from data_export import wiring; wiring.client('dynamodb')",
    )


@dataclass(frozen=True)
class Sample:
    cpu: tuple[float, ...]  # seconds at the end of each stage, CPU time of the process
    wall: tuple[float, ...]  # the same, wall clock


def sample(code: str, outcome: str) -> Sample:
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, **ENVIRONMENT},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    # The handlers' log lines go to stdout too; the probe's line is the last.
    _, got, *figures = completed.stdout.strip().splitlines()[-1].split()
    if got != outcome:
        raise AssertionError(f"first event came to {got}, expected {outcome}:\n{completed.stdout[-2000:]}")
    seconds = [float(figure) for figure in figures]
    return Sample(tuple(seconds[: len(STAGES)]), tuple(seconds[len(STAGES) :]))


def run(*, rounds: int) -> list[Comparison]:
    contenders = [(name, False) for name in FUNCTIONS] + [(name, True) for name in FUNCTIONS]
    samples: dict[tuple[str, bool], list[Sample]] = {contender: [] for contender in contenders}
    for round_index in range(rounds + 1):
        for contender in contenders if round_index % 2 == 0 else list(reversed(contenders)):
            name, naive = contender
            figures = sample(probe(FUNCTIONS[name], naive=naive), FUNCTIONS[name].outcome)
            if round_index:  # the first round only warms the page cache and the .pyc files
                samples[contender].append(figures)

    def comparison(name: str, title: str, stage: int, clock: str) -> Comparison:
        def rates(naive: bool) -> list[float]:
            return [1 / getattr(figures, clock)[stage] for figures in samples[(name, naive)]]

        return Comparison(
            title,
            "imports",
            [
                Contender(f"ours: {FUNCTIONS[name].module}", "ours", rates=rates(False)),
                Contender(f"naive: {NAIVE_IMPORTS}", "peer", rates=rates(True)),
            ],
            notes=f"fresh interpreter per sample; {STAGES[stage]}; {CLOCKS[clock]}",
            show_time=True,
        )

    comparisons = []
    for name in FUNCTIONS:
        comparisons.append(comparison(name, f"Cold start: {name}", 0, "cpu"))
        comparisons.extend(comparison(name, f"Cold start, {STAGES[i]}: {name}", i, "cpu") for i in (1, 2))
        comparisons.append(comparison(name, f"Cold start, wall clock: {name}", 0, "wall"))
    return comparisons
