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
from data_export.export.dispatch import Dispatch
from data_export.models import (
    ArchiveFormat,
    ErrorResponse,
    ExportJobResponse,
    ImportErrorCode,
    ImportJobResponse,
    ImportStatus,
    JobStatus,
)
from data_export.settings import get_settings
from data_export.storage.imports import ImportJob

from tests.credentials import as_function
from tests.jobs import create_job
from tests.round_trip import staged_import

EVENTS = Path(__file__).resolve().parents[2] / "events"
SAMPLE_JOB = "Q7vWk3Qx9mHc2NbY5sLeTp"
ACME = "eHcFM2wk4RdyYG8yMrTGbQ"
SAMPLE_IMPORT = "Hc2NbY5sLeTpQ7vWk3Qx9m"
SAMPLE_RUN = "Y5sLeTpQ7vWk3Qx9mHc2Nb"


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


def test_import_api_event(stack: Any) -> None:
    """The sample creates a copy import into the example organization and answers where to upload."""
    event = load("import_api.json")
    response = stack.invoke("ImportApiFunction", event)
    assert response["statusCode"] == 200, response
    job = ImportJobResponse.model_validate_json(response["body"])
    assert (job.organization_id, job.status, job.mode, job.dry_run) == (ACME, "pending", "copy", None)
    assert job.size_bytes == int(event["queryStringParameters"]["size_bytes"])
    assert response["multiValueHeaders"]["Location"] == [
        f"/live/dashboard/api/v1/data-import/{ACME}/{job.import_id}"
    ]
    upload = job.upload
    assert upload is not None and upload.size_bytes == job.size_bytes
    # The local stack uploads archives over 1 MiB in 5 MiB parts (tests/conftest.py): two for the sample's.
    assert upload.url is None and [part.part_number for part in upload.parts] == [1, 2]
    assert all(part.url.startswith("http") for part in upload.parts)
    wiring.import_service().cancel(ACME, job.import_id)  # aborts its multipart upload


# The import step samples restore this product of the example (an image, and a binary marked missing) and
# the offer of it, taken out of the organization for the test; the test puts the originals back.
GONE_PRODUCT = "3xQmTqPZcRk7YhFw2VbNsd"
GONE_OFFER = "Xm6Tb2QwK9rNcV4sHe8JdF"
GONE_IMAGE = f"{ACME}/products/{GONE_PRODUCT}/images/0"


def example_archive(stack: Any) -> bytes:
    """A zip export of the example organization, built in process as the worker builds one."""
    job = create_job(ACME, ArchiveFormat.ZIP)
    with as_function("ExportWorkerFunction"):
        assert wiring.dispatcher().dispatch(ACME, job.job_id) is Dispatch.BUILT
    built = wiring.jobs().get(ACME, job.job_id)
    assert built is not None and built.object_key is not None
    body = stack.client("s3").get_object(Bucket=get_settings().exports_bucket, Key=built.object_key)["Body"]
    return bytes(body.read())


def sample_import_job(stack: Any, data: bytes, status: ImportStatus) -> ImportJob:
    """The samples' import (restore), its archive uploaded, as a start leaves it for the samples' run."""
    forget_sample_import(stack)
    job: ImportJob = staged_import(stack, ACME, SAMPLE_IMPORT, SAMPLE_RUN, data, "restore", status.value)
    return job


def forget_sample_import(stack: Any) -> None:
    stack.client("dynamodb").delete_item(
        TableName=stack.physical["ImportsTable"],
        Key={"organization_id": {"S": ACME}, "import_id": {"S": SAMPLE_IMPORT}},
    )


def test_import_step_events_drive_a_whole_restore(stack: Any) -> None:
    """The step samples, in order, on an import with the samples' ids: validate, apply until done; the
    records and the binary taken out of the example come back. Then the fail sample on a run of theirs."""
    settings = get_settings()
    dynamodb, s3 = stack.client("dynamodb"), stack.client("s3")
    keys = {
        section: {"partition": {"S": f"{ACME}#{section}"}, "record_id": {"S": record_id}}
        for section, record_id in (("products", GONE_PRODUCT), ("offers", GONE_OFFER))
    }
    originals = {
        section: dynamodb.get_item(TableName=settings.org_data_table, Key=key)["Item"]
        for section, key in keys.items()
    }
    image = s3.get_object(Bucket=settings.assets_bucket, Key=GONE_IMAGE)
    image_bytes, image_type = image["Body"].read(), image["ContentType"]
    data = example_archive(stack)
    forget_sample_import(stack)
    assert stack.invoke("ImportValidateFunction", load("import_steps_validate.json")) == {"apply": False}
    try:
        for key in keys.values():
            dynamodb.delete_item(TableName=settings.org_data_table, Key=key)
        s3.delete_object(Bucket=settings.assets_bucket, Key=GONE_IMAGE)
        sample_import_job(stack, data, ImportStatus.VALIDATING)

        assert stack.invoke("ImportValidateFunction", load("import_steps_validate.json")) == {"apply": True}
        job = wiring.import_service().get(ACME, SAMPLE_IMPORT)
        assert job.status is ImportStatus.IMPORTING and (job.binaries_total, job.records_total) == (1, 2)
        for _ in range(20):  # each apply stops short of its Lambda's timeout; the state machine loops
            if stack.invoke("ImportApplyFunction", load("import_steps_apply.json"))["done"]:
                break
        else:
            raise AssertionError("the apply never reported done")
        job = wiring.import_service().get(ACME, SAMPLE_IMPORT)
        assert job.status is ImportStatus.COMPLETED and job.error_code is None, job
        report = {section.key: section for section in job.sections}
        assert (report["products"].created, report["products"].skipped_existing) == (1, 3)
        assert (report["offers"].created, report["offers"].skipped_existing) == (1, 2)
        assert report["products"].binaries_restored == 1
        for section, key in keys.items():
            restored = dynamodb.get_item(TableName=settings.org_data_table, Key=key)["Item"]
            assert json.loads(restored["record"]["S"]) == json.loads(originals[section]["record"]["S"])
        assert s3.get_object(Bucket=settings.assets_bucket, Key=GONE_IMAGE)["Body"].read() == image_bytes
        # The run is over: the archive and its plan are gone, and the apply sample finds nothing to do.
        listed = s3.list_objects_v2(Bucket=settings.exports_bucket, Prefix=f"imports/{ACME}/{SAMPLE_IMPORT}/")
        assert listed.get("KeyCount") == 0
        assert stack.invoke("ImportApplyFunction", load("import_steps_apply.json")) == {"done": True}

        # The fail sample on a finished import changes nothing; on a run of its own, it fails the import.
        assert stack.invoke("ImportFailFunction", load("import_steps_fail.json")) == {"status": "failed"}
        assert wiring.import_service().get(ACME, SAMPLE_IMPORT).status is ImportStatus.COMPLETED
        sample_import_job(stack, data, ImportStatus.IMPORTING)
        stack.invoke("ImportFailFunction", load("import_steps_fail.json"))
        failed = wiring.import_service().get(ACME, SAMPLE_IMPORT)
        assert failed.status is ImportStatus.FAILED
        assert failed.error_code is ImportErrorCode.IMPORT_FAILED and "resume" in (failed.error or "")
    finally:
        for item in originals.values():
            dynamodb.put_item(TableName=settings.org_data_table, Item=item)
        s3.put_object(Bucket=settings.assets_bucket, Key=GONE_IMAGE, Body=image_bytes, ContentType=image_type)
        forget_sample_import(stack)


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
