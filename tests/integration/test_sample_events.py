"""Every sample event in events/ runs through its function on the local stack, as `sam local invoke -e`
would run it where Docker exists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from data_export.models import ErrorResponse, ExportJobResponse

EVENTS = Path(__file__).resolve().parents[2] / "events"


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


def test_every_function_has_a_sample_event(stack: Any) -> None:
    folders = {spec.module.split(".")[-2] for spec in stack.functions.values()}
    assert folders == {path.stem for path in EVENTS.glob("*.json")}


def test_start_export_event(stack: Any) -> None:
    response = stack.invoke("StartExportFunction", load("start_export.json"))
    assert response["statusCode"] == 200, response
    job = ExportJobResponse.model_validate_json(response["body"])
    assert job.status == "pending"
    assert response["multiValueHeaders"]["Location"] == [
        f"/live/dashboard/api/v1/data-export/eHcFM2wk4RdyYG8yMrTGbQ/{job.job_id}"
    ]


def test_get_export_event_for_a_job_that_does_not_exist_here(stack: Any) -> None:
    response = stack.invoke("GetExportFunction", load("get_export.json"))
    assert response["statusCode"] == 404
    assert ErrorResponse.model_validate_json(response["body"]).error == "not_found"


def test_export_worker_event(stack: Any) -> None:
    response = stack.invoke("ExportWorkerFunction", load("export_worker.json"))
    assert response == {"batchItemFailures": []}


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
