"""Every sample event in events/ runs through its function on the local stack, as `sam local invoke -e`
would run it where Docker exists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from data_export import wiring
from data_export.errors import JobOwnershipLostError
from data_export.models import ErrorResponse, ExportJobResponse, JobStatus

from tests.jobs import create_job

EVENTS = Path(__file__).resolve().parents[2] / "events"
SAMPLE_JOB = "Q7vWk3Qx9mHc2NbY5sLeTp"
ACME = "eHcFM2wk4RdyYG8yMrTGbQ"


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


def event_file(spec: Any) -> str:
    folder, handler = spec.module.split(".")[-2], spec.handler
    return f"{folder}.json" if handler == "lambda_handler" else f"{folder}_{handler}.json"


def test_every_function_has_a_sample_event(stack: Any) -> None:
    expected = {event_file(spec) for spec in stack.functions.values()}
    assert expected == {path.name for path in EVENTS.glob("*.json")}


def test_start_export_event(stack: Any) -> None:
    response = stack.invoke("StartExportFunction", load("start_export.json"))
    assert response["statusCode"] == 200, response
    job = ExportJobResponse.model_validate_json(response["body"])
    assert job.status == "pending"
    assert response["multiValueHeaders"]["Location"] == [
        f"/live/dashboard/api/v1/data-export/{ACME}/{job.job_id}"
    ]


def forget_sample_job(stack: Any) -> None:
    """The step events below create the sample job; tests that want it unknown make sure it is."""
    stack.client("dynamodb").delete_item(
        TableName=stack.physical["JobsTable"],
        Key={"organization_id": {"S": ACME}, "job_id": {"S": SAMPLE_JOB}},
    )


def test_get_export_event_for_a_job_that_does_not_exist_here(stack: Any) -> None:
    forget_sample_job(stack)
    response = stack.invoke("GetExportFunction", load("get_export.json"))
    assert response["statusCode"] == 404
    assert ErrorResponse.model_validate_json(response["body"]).error == "not_found"


def test_cancel_export_event_for_a_job_that_does_not_exist_here(stack: Any) -> None:
    forget_sample_job(stack)
    response = stack.invoke("CancelExportFunction", load("cancel_export.json"))
    assert response["statusCode"] == 404
    assert ErrorResponse.model_validate_json(response["body"]).error == "not_found"


def test_export_worker_event(stack: Any) -> None:
    response = stack.invoke("ExportWorkerFunction", load("export_worker.json"))
    assert response == {"batchItemFailures": []}


def test_step_events_drive_a_whole_chunked_build(stack: Any) -> None:
    """The step samples, in order, on a job with the samples' ids: plan, every unit, assemble."""
    with pytest.raises(JobOwnershipLostError):  # no such job yet
        stack.invoke("ExportPlanFunction", load("export_steps_plan.json"))
    create_job(ACME, job_id=SAMPLE_JOB)
    plan = stack.invoke("ExportPlanFunction", load("export_steps_plan.json"))
    assert plan["unit_indexes"] == list(range(plan["units_total"]))  # the units themselves are in S3
    assert load("export_steps_build_unit.json")["unit_index"] == 0
    with pytest.raises(Exception, match="units built"):  # no unit built yet: never a partial archive
        stack.invoke("ExportAssembleFunction", load("export_steps_assemble.json"))
    unit_ids = wiring.chunked_export().planned_unit_ids(ACME, SAMPLE_JOB, SAMPLE_JOB)
    for index in plan["unit_indexes"]:
        built = stack.invoke(
            "ExportBuildUnitFunction", {**load("export_steps_build_unit.json"), "unit_index": index}
        )
        assert built["unit_id"] == unit_ids[index] and built["size"] > 0
    result = stack.invoke("ExportAssembleFunction", load("export_steps_assemble.json"))
    assert result["status"] == "completed" and result["file_size_bytes"] > 7_000_000
    assert wiring.export_service().get(ACME, SAMPLE_JOB).status is JobStatus.COMPLETED
    # The fail sample on a finished job changes nothing.
    stack.invoke("ExportFailFunction", load("export_steps_fail.json"))
    assert wiring.export_service().get(ACME, SAMPLE_JOB).status is JobStatus.COMPLETED


def test_sweeper_events(stack: Any) -> None:
    report = stack.invoke("ExportSweeperFunction", load("export_sweeper_sweep.json"))
    assert set(report) == {"requeued", "failed", "alive"}
    # The sample dead letter names the samples' job; after the step samples ran it is finished: kept as is.
    assert stack.invoke("ExportDeadLetterFunction", load("export_sweeper_dead_letter.json")) == {
        "batchItemFailures": []
    }


def test_local_invoke_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "data_export_cli.main",
            "local",
            "invoke",
            "start_export",
            str(EVENTS / "start_export.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    response = json.loads(result.stdout[result.stdout.index("{\n") :])
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["status"] == "pending"
