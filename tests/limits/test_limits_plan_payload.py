"""Every state of a big export's execution carries a bounded payload, and its history stays under Step
Functions' 25,000 events, whatever the organization's size.

The real state machine from template.yaml runs on moto's engine, with the real Plan step over a synthetic
organization of 1,000,000 records and 2,000,000 binaries (generated on the fly behind the org-data
repository's interface) and stub unit builds and assembly (they read their inputs from the plan in S3, as
the real ones do, and build nothing). moto enforces Step Functions' 256 KiB limit on state results
(States.DataLimitExceeded); the test also measures every input, output and task parameter in the history.
The events per unit, per failed attempt and of the fixed part are measured on small runs of the same
machine, and the worst case (every unit and step using every retry its Retry allows) is computed from
them and the template's MaxAttempts: it stays under 25,000 for the most units a plan makes.

It runs under the local runtime's limits (tests/limits): Lambda's 6 MB invoke payloads and Step Functions'
25,000-event history are enforced by the runtime while it runs, the 256 KiB state payload by moto."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from data_export import wiring
from data_export.errors import TransientExportError
from data_export.export.plan import MAX_UNITS, WorkUnit
from data_export.ids import new_id
from data_export.models import SECTION_KEYS, JobStatus
from data_export_cli.template import load_template

from tests.jobs import MIB, create_job
from tests.limits.figures import measured

pytestmark = pytest.mark.slow  # planning a million records takes a minute here

STATE_LIMIT = 256 * 1024  # bytes of a state's input or output (Step Functions; moto enforces it too)
HISTORY_LIMIT = 25_000  # events of one execution's history
MILLION = {"organization": 1, "members": 9_999, "products": 500_000, "offers": 480_000, "locations": 10_000}
SMALL = {"organization": 1, "members": 3, "products": 30, "offers": 12, "locations": 2}


class SyntheticOrgData:
    """The org-data repository's interface over records generated on the fly, in id order: each product
    has 3 images and a document (300 kB to 900 kB), so a million records carry two million binaries."""

    def __init__(self, counts: dict[str, int], fail: bool = False) -> None:
        self.counts, self.fail = counts, fail

    def iter_records(
        self, organization_id: str, section: str, first: str | None = None, last: str | None = None
    ) -> Iterator[dict[str, Any]]:
        if self.fail:
            raise ValueError("the org-data store is broken")
        for i in range(self.counts.get(section, 0)):
            record_id = f"{section[:3]}{i:07d}"
            if (first is not None and record_id < first) or (last is not None and record_id > last):
                continue
            record: dict[str, Any] = {"id": record_id, "name": f"{section} {i}"}
            if section == "products":
                record["images"] = [binary(record_id, "images", j, 300_000 + 200_000 * j) for j in range(3)]
                record["documents"] = [binary(record_id, "documents", 0, 250_000)]
            yield record

    def get_record(self, organization_id: str, section: str, record_id: str) -> dict[str, Any] | None:
        return {"id": organization_id, "name": "Synthetic"}


def binary(record_id: str, field: str, index: int, size: int) -> dict[str, Any]:
    return {
        "filename": f"{index}.bin",
        "content_type": "application/octet-stream",
        "asset_key": f"org/products/{record_id}/{field}/{index}",
        "size_bytes": size,
    }


class NoApiKeys:
    def iter_metadata(self, organization_id: str) -> Iterator[dict[str, Any]]:
        return iter(())


def test_the_synthetic_organization_has_a_million_records_and_two_million_binaries() -> None:
    store = SyntheticOrgData(MILLION)
    assert sum(MILLION.values()) == 1_000_000 and set(MILLION) | {"api_keys", "brands"} == set(SECTION_KEYS)
    product = next(store.iter_records("org", "products"))
    assert MILLION["products"] * (len(product["images"]) + len(product["documents"])) == 2_000_000


@pytest.fixture(autouse=True)
def the_templates_unit_builder(stack: Any, request: pytest.FixtureRequest) -> Iterator[None]:
    """The template's concurrency and timeout for the unit builder (this folder's session lowers them to 8
    and 8 s): the events per unit are measured on runs without throttled or timed-out attempts, whose
    retries the worst case counts apart."""
    function = stack.functions["ExportBuildUnitFunction"]
    template = int(stack.resolve({"Ref": "MaxConcurrentUnitBuilds"}))
    lowered = stack.concurrency.set_limit(function.logical_id, template)
    lowered_timeout = stack.concurrency.set_timeout(function.logical_id, function.timeout)
    with measured(stack, f"(e) {request.node.name}"):
        yield
    stack.concurrency.set_limit(function.logical_id, lowered)
    stack.concurrency.set_timeout(function.logical_id, lowered_timeout)


@pytest.fixture
def stub_steps(stack: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The real Plan over a synthetic organization; unit builds and assembly that only read the plan."""
    chunked = wiring.chunked_export()
    seen: dict[str, Any] = {"built": [], "fail_once": set(), "assembled": None}
    monkeypatch.setattr(chunked, "api_keys", NoApiKeys())

    def build_unit(organization_id: str, job_id: str, run_id: str, unit: WorkUnit) -> Any:
        if unit.unit_id in seen["fail_once"]:
            seen["fail_once"].discard(unit.unit_id)
            raise TransientExportError("S3 read timed out (injected)")
        seen["built"].append(unit.unit_id)
        return SimpleNamespace(unit_id=unit.unit_id, size=1)

    def assemble(organization_id: str, job_id: str, run_id: str, unit_ids: list[str]) -> Any:
        seen["assembled"] = unit_ids
        return SimpleNamespace(status=JobStatus.COMPLETED, file_size_bytes=0)

    monkeypatch.setattr(chunked, "build_unit", build_unit)
    monkeypatch.setattr(chunked, "assemble", assemble)
    seen["use"] = lambda store: monkeypatch.setattr(chunked, "org_data", store)
    return seen


def execute(stack: Any, organization_id: str, *, chunk_target_bytes: int, chunk_max_records: int) -> Any:
    """Start the state machine for a new job, wait for it to end; returns (execution, history, job)."""
    job = create_job(organization_id)
    sfn = stack.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=stack.physical["ExportStateMachine"],
        name=job.job_id,
        input=json.dumps(
            {
                "organization_id": organization_id,
                "job_id": job.job_id,
                "chunk_target_bytes": chunk_target_bytes,
                "chunk_max_records": chunk_max_records,
            }
        ),
    )["executionArn"]
    deadline = time.monotonic() + 600
    while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution still running"
        time.sleep(0.5)
    events: list[dict[str, Any]] = []
    token: dict[str, str] = {}
    while True:
        page = sfn.get_execution_history(executionArn=arn, maxResults=1000, **token)
        events += page["events"]
        if "nextToken" not in page:
            break
        token = {"nextToken": page["nextToken"]}
    stored = wiring.jobs().get(organization_id, job.job_id)
    assert stored is not None
    return execution, events, stored


def map_interior(events: list[dict[str, Any]]) -> int:
    """Events between the Map state's start and end: its iterations'."""
    types = [event["type"] for event in events]
    return types.index("MapStateSucceeded") - types.index("MapStateStarted") - 1


def payload_sizes(events: list[dict[str, Any]]) -> Iterator[tuple[str, int]]:
    """(event type, bytes) of every input, output and task parameters the history records."""
    for event in events:
        for key, details in event.items():
            if key.endswith("EventDetails") and isinstance(details, dict):
                for field in ("input", "output", "parameters"):
                    if isinstance(details.get(field), str):
                        yield event["type"], len(details[field].encode())


def retry_attempts(task: dict[str, Any]) -> int:
    """Failed attempts a task's Retry allows at most (each retrier counts its own)."""
    return sum(int(retrier["MaxAttempts"]) for retrier in task["Retry"])


def state_machine_tasks() -> dict[str, dict[str, Any]]:
    states = load_template()["Resources"]["ExportStateMachine"]["Properties"]["Definition"]["States"]
    return {
        "Plan": states["Plan"],
        "BuildUnit": states["BuildUnits"]["ItemProcessor"]["States"]["BuildUnit"],
        "Assemble": states["Assemble"],
        "Fail": states["Fail"],
    }


def test_payloads_and_history_stay_bounded_for_a_million_records(
    stack: Any, stub_steps: dict[str, Any]
) -> None:
    organization_id = new_id()
    # 1. Small runs on moto's engine: events per unit, per failed attempt, of the fixed and failing parts.
    stub_steps["use"](SyntheticOrgData(SMALL))
    execution, small, job = execute(
        stack, organization_id, chunk_target_bytes=2 * 1024**3, chunk_max_records=5
    )
    assert execution["status"] == "SUCCEEDED", execution
    units = job.units_total
    assert units == 1 + 1 + 6 + 3 + 1 and stub_steps["assembled"] == sorted(stub_steps["built"])
    per_unit, remainder = divmod(map_interior(small), units)
    assert remainder == 0, "every iteration costs the same events"
    fixed = len(small) - map_interior(small)

    stub_steps["fail_once"].add("04-products-00002")
    execution, retried, _ = execute(
        stack, organization_id, chunk_target_bytes=2 * 1024**3, chunk_max_records=5
    )
    assert execution["status"] == "SUCCEEDED", execution
    per_failed_attempt = len(retried) - len(small)
    assert per_failed_attempt > 0

    stub_steps["use"](SyntheticOrgData(SMALL, fail=True))
    execution, failing, failed_job = execute(
        stack, organization_id, chunk_target_bytes=MIB, chunk_max_records=5
    )
    assert execution["status"] == "FAILED" and failed_job.status is JobStatus.FAILED

    tasks = state_machine_tasks()
    unit_retries = retry_attempts(tasks["BuildUnit"])
    step_retries = sum(retry_attempts(tasks[name]) for name in ("Plan", "Assemble", "Fail"))

    def worst_case(unit_count: int) -> int:
        """Both the successful and the failing path's fixed events, every step's and unit's retries."""
        return (
            fixed
            + len(failing)
            + per_failed_attempt * step_retries
            + unit_count * (per_unit + per_failed_attempt * unit_retries)
        )

    assert worst_case(MAX_UNITS) < HISTORY_LIMIT, (per_unit, per_failed_attempt, fixed, len(failing))

    # 2. A million records and two million binaries, at the real unit size (2 GiB, 10,000 records).
    stub_steps["use"](SyntheticOrgData(MILLION))
    stub_steps["built"].clear()
    execution, events, job = execute(
        stack, organization_id, chunk_target_bytes=2 * 1024**3, chunk_max_records=10_000
    )
    assert execution["status"] == "SUCCEEDED", execution
    assert job.total_records == 1_000_000 and 1 < job.units_total <= MAX_UNITS
    assert (
        sorted(stub_steps["built"]) == stub_steps["assembled"] and len(stub_steps["built"]) == job.units_total
    )
    sizes = list(payload_sizes(events))
    assert sizes and max(size for _, size in sizes) < STATE_LIMIT, max(sizes, key=lambda pair: pair[1])
    assert len(execution.get("input", "")) < STATE_LIMIT and len(execution.get("output", "")) < STATE_LIMIT
    assert len(events) == fixed + per_unit * job.units_total < HISTORY_LIMIT
    assert worst_case(job.units_total) < HISTORY_LIMIT
    # What the state carries of the plan: a few bytes per unit, nothing that grows with the records.
    largest = max(size for _, size in sizes)
    assert largest < 64 + 8 * MAX_UNITS + 1024, largest
    wiring.jobs().cancel(job, now=job.created_at)
    wiring.export_builder().exports.discard(f"tmp/{organization_id}/")
