"""The error codes a failed export is told with, and their fixed sentences: Step Functions' errors handed to
the Fail task are classified by name (never passed on), and the detail goes to the logs with the job id."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from data_export.errors import FAILURE_SENTENCES, failure_message
from data_export.export.chunked import ChunkedExport
from data_export.models import SECTION_KEYS, ErrorCode, FailInput

ARN = "arn:aws:lambda:us-east-1:123456789012:function:data-export-ExportPlanFunction"


def fail_input(error: dict[str, Any]) -> FailInput:
    return FailInput(organization_id="o", job_id="j", run_id="j", error=error)


def lambda_error(error_type: str, message: str) -> dict[str, Any]:
    cause = {"errorType": error_type, "errorMessage": message, "stackTrace": ["  File app.py"]}
    return {"Error": error_type, "Cause": json.dumps(cause)}


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            {
                "Error": "States.DataLimitExceeded",
                "Cause": f"The state/task '{ARN}' returned a result with a size",
            },
            ErrorCode.TOO_LARGE,
        ),
        ({"Error": "States.Timeout", "Cause": ""}, ErrorCode.TIMED_OUT),
        ({"Error": "States.HeartbeatTimeout"}, ErrorCode.TIMED_OUT),
        (lambda_error("Sandbox.Timedout", "Task timed out after 900.00 seconds"), ErrorCode.TIMED_OUT),
        ({"Error": "Lambda.Unknown", "Cause": "Task timed out after 900.00 seconds"}, ErrorCode.TIMED_OUT),
        (lambda_error("ClientError", f"An error occurred (AccessDenied): {ARN}"), ErrorCode.EXPORT_FAILED),
        (lambda_error("TransientExportError", "ConnectionError: S3 read timed out"), ErrorCode.EXPORT_FAILED),
        (lambda_error("IncompleteBuildError", "3 of 4 units built"), ErrorCode.EXPORT_FAILED),
        ({}, ErrorCode.EXPORT_FAILED),
    ],
)
def test_step_functions_errors_are_classified_not_passed_on(error: dict[str, Any], code: ErrorCode) -> None:
    failed = fail_input(error)
    assert failed.error_code() is code
    assert failed.message().startswith("Export failed")  # the detail, for the logs


def test_every_build_failure_code_has_a_fixed_sentence() -> None:
    told_elsewhere = {ErrorCode.CANCELED, ErrorCode.ARCHIVE_DELETED, ErrorCode.ARCHIVE_EXPIRED}
    assert set(FAILURE_SENTENCES) == set(ErrorCode) - told_elsewhere
    for code in FAILURE_SENTENCES:
        assert failure_message(code) == FAILURE_SENTENCES[code]
        assert failure_message(code, "products") == FAILURE_SENTENCES[code] or code is ErrorCode.EXPORT_FAILED


def test_only_a_known_section_is_named() -> None:
    for section in SECTION_KEYS:
        assert f"section '{section}'" in failure_message(ErrorCode.EXPORT_FAILED, section)
    for other in ("arn:aws:s3:::bucket", "products' (AccessDenied", ""):
        assert failure_message(ErrorCode.EXPORT_FAILED, other) == FAILURE_SENTENCES[ErrorCode.EXPORT_FAILED]


class NoJobs:
    def get(self, organization_id: str, job_id: str) -> None:
        return None


def test_the_fail_task_logs_the_detail_with_the_job_id(caplog: pytest.LogCaptureFixture) -> None:
    chunked = ChunkedExport(
        jobs=NoJobs(),  # type: ignore[arg-type]
        org_data=None,  # type: ignore[arg-type]
        api_keys=None,  # type: ignore[arg-type]
        assets=None,  # type: ignore[arg-type]
        exports=None,  # type: ignore[arg-type]
        settings=None,  # type: ignore[arg-type]
    )
    detail = fail_input(lambda_error("ClientError", f"AccessDenied on {ARN}")).message()
    with caplog.at_level(logging.INFO):
        chunked.fail("org", "job-1", "job-1", detail, ErrorCode.EXPORT_FAILED)
    [record] = [record for record in caplog.records if record.getMessage() == "Export failed"]
    logged = vars(record)
    assert (logged["job_id"], logged["error_code"], logged["error"]) == ("job-1", "export_failed", detail)
