"""Cold start: what a function's first request costs in a fresh interpreter, up to its first AWS client.

Each sample is a new ``python -c`` process with the functions' environment that times, after interpreter
start-up: (1) ``import <handler module>``; (2) that plus handling one representative event that needs no
AWS service (a request with a malformed API key for the API functions, a malformed message for the queue
consumers, an incomplete input for the Step Functions tasks), so that cost moved out of the import into
the first invocation still shows; (3) that plus creating the first boto3 client, which every real
request needs and which our handlers import only on first use. Stage (3) is the headline: the import alone
says little, since work can be moved out of it into the first request. The peer is the naive handler the
issue names: it imports boto3 + pydantic + Powertools' event handler, then handles the same event with a
validating resolver (or Powertools' batch processor) and a pydantic model. Processes run round-robin;
medians and paired ratios are reported. Each sample's outcome (status code or exception) is checked, and
its response's size is its output.

SnapStart (``snapstart_run``): the same process, with a stand-in for the runtime's ``snapshot_restore_py``,
times the import plus the before-snapshot hooks (work moved out of every cold start), then the
after-restore hooks, the first event and the first client (what a restored environment still pays here;
Lambda's own restore comes on top and cannot be measured locally).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import Comparison, Contender, VerificationError

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
{prelude}
_marks = [(time.process_time(), time.perf_counter())]
{import_code}
_marks.append((time.process_time(), time.perf_counter()))
{define_code}
try:
    _result = {handler}(_event, _Context())
    _outcome = str(_result.get("statusCode", "ok"))
except Exception as exc:
    _result = repr(exc)
    _outcome = type(exc).__name__
_marks.append((time.process_time(), time.perf_counter()))
{client_code}
_marks.append((time.process_time(), time.perf_counter()))
import json as _json
_size = len(_json.dumps(_result, default=str).encode())
_cpu, _wall = zip(*_marks)
print("coldstart", _outcome, _size, *(t - _cpu[0] for t in _cpu[1:]), *(t - _wall[0] for t in _wall[1:]))
"""
# A stand-in for the Lambda runtime's snapshot_restore_py (registered hooks, called by the probe below).
FAKE_RUNTIME = """
import sys as _sys, types as _types
_hooks = {"before": [], "after": []}
_runtime = _types.ModuleType("snapshot_restore_py")
def _register(kind):
    def register(function, *args, **kwargs):
        _hooks[kind].append((function, args, kwargs))
        return function
    return register
_runtime.register_before_snapshot = _register("before")
_runtime.register_after_restore = _register("after")
_sys.modules["snapshot_restore_py"] = _runtime
"""
# With SnapStart: the import and the before-snapshot hooks (Lambda runs them when it publishes a version),
# then the after-restore hooks (each restored environment), the first event and the first client.
SNAPSTART_IMPORT = """import {module} as function
for _hook, _args, _kwargs in reversed(_hooks["before"]):
    _hook(*_args, **_kwargs)
_marks.append((time.process_time(), time.perf_counter()))
for _hook, _args, _kwargs in _hooks["after"]:
    _hook(*_args, **_kwargs)"""
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
HEADLINE = 2  # the stage a cold start is judged by: import + first event + first client
CLOCKS = {"cpu": "CPU time", "wall": "wall clock"}


def probe(function: FirstEvent, *, naive: bool = False, snapstart: bool = False) -> str:
    if naive:
        return PROBE.format(
            event=function.event,
            prelude="",
            import_code=f"import {NAIVE_IMPORTS}",
            define_code=function.naive,
            handler="handler",
            client_code="boto3.client('dynamodb')",
        )
    return PROBE.format(
        event=function.event,
        prelude=FAKE_RUNTIME if snapstart else "",
        import_code=SNAPSTART_IMPORT.format(module=function.module)
        if snapstart
        else f"import {function.module} as function",
        define_code="",
        handler=f"function.{function.handler}",
        client_code="from data_export import wiring; wiring.client('dynamodb')",
    )


@dataclass(frozen=True)
class Sample:
    cpu: tuple[float, ...]  # seconds at the end of each stage, CPU time of the process
    wall: tuple[float, ...]  # the same, wall clock
    output_bytes: int  # the first event's response (or error), as JSON


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
    _, got, size, *figures = completed.stdout.strip().splitlines()[-1].split()
    if got != outcome:
        raise VerificationError(f"first event came to {got}, expected {outcome}:\n{completed.stdout[-2000:]}")
    seconds = [float(figure) for figure in figures]
    half = len(seconds) // 2
    return Sample(tuple(seconds[:half]), tuple(seconds[half:]), int(size))


MODES = ("ours", "naive", "snapstart")


def run(*, rounds: int, snapstart: bool = True) -> tuple[list[Comparison], dict[str, Any]]:
    """The comparisons (ours against the naive handler, per function and stage) and the SnapStart figures."""
    modes = MODES if snapstart else MODES[:2]
    contenders = [(name, mode) for mode in modes for name in FUNCTIONS]
    samples: dict[tuple[str, str], list[Sample]] = {contender: [] for contender in contenders}
    for round_index in range(rounds + 1):
        for contender in contenders if round_index % 2 == 0 else list(reversed(contenders)):
            name, mode = contender
            code = probe(FUNCTIONS[name], naive=mode == "naive", snapstart=mode == "snapstart")
            figures = sample(code, FUNCTIONS[name].outcome)
            if round_index:  # the first round only warms the page cache and the .pyc files
                samples[contender].append(figures)

    def comparison(name: str, title: str, stage: int, clock: str) -> Comparison:
        def side(label: str, role: str, mode: str) -> Contender:
            contender = Contender(label, role)
            for figures in samples[(name, mode)]:
                contender.record(1 / getattr(figures, clock)[stage], figures.output_bytes)
            return contender

        return Comparison(
            title,
            "imports",
            [
                side(f"ours: {FUNCTIONS[name].module}", "ours", "ours"),
                side(f"naive: {NAIVE_IMPORTS}", "peer", "naive"),
            ],
            notes=f"fresh interpreter per sample; {STAGES[stage]}; {CLOCKS[clock]}",
            show_time=True,
        )

    comparisons = []
    for name in FUNCTIONS:
        comparisons.append(comparison(name, f"Cold start: {name}", HEADLINE, "cpu"))
        comparisons.append(comparison(name, f"Cold start, import only: {name}", 0, "cpu"))
        comparisons.append(comparison(name, f"Cold start, import + first event: {name}", 1, "cpu"))
        comparisons.append(comparison(name, f"Cold start, wall clock: {name}", HEADLINE, "wall"))
    snapstart_figures: dict[str, Any] = {}
    if snapstart:
        for name in FUNCTIONS:
            runs = samples[(name, "snapstart")]

            def median_ms(values: list[float]) -> float:
                return statistics.median(values) * 1000

            moved = median_ms([s.cpu[0] for s in runs])
            restore = median_ms([s.cpu[1] - s.cpu[0] for s in runs])
            event = median_ms([s.cpu[2] - s.cpu[1] for s in runs])
            client = median_ms([s.cpu[3] - s.cpu[2] for s in runs])
            snapstart_figures[name] = {
                "samples": len(runs),
                "verified": True,  # every sample's first event came to its expected outcome
                "output_bytes": int(statistics.median(s.output_bytes for s in runs)),
                "moved_before_snapshot_ms": moved,
                "after_restore_ms": restore,
                "first_event_ms": event,
                "first_client_ms": client,
                "cold_path_after_restore_ms": median_ms([s.cpu[3] - s.cpu[0] for s in runs]),
                "without_snapstart_ms": median_ms([s.cpu[HEADLINE] for s in samples[(name, "ours")]]),
                "naive_ms": median_ms([s.cpu[HEADLINE] for s in samples[(name, "naive")]]),
            }
    return comparisons, snapstart_figures
