"""Big exports on the local stack: the real state machine from template.yaml runs on moto's Step Functions
engine, its Lambda tasks in-process. The example organization is cut into many small units (1 MiB, 2
records) so that every mechanism of the chunked build runs; faults are injected into the real stores."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from data_export import wiring
from data_export.errors import failure_message
from data_export.export.dispatch import Dispatch, ExportDispatcher
from data_export.jobs import Job
from data_export.models import ArchiveFormat, ErrorCode, JobStatus
from data_export.storage.objects import Asset
from data_export_cli.iam import acting_as

from tests.archive_checks import (
    ACME,
    EXAMPLE_SECTION_COUNTS,
    archive_files,
    check_binaries,
    check_manifest,
    check_no_secret_nor_other_organization,
    check_records,
    check_with_real_tools,
    section_counts,
)
from tests.credentials import as_function
from tests.jobs import MIB, chunking_dispatcher, create_job


@pytest.fixture
def dispatcher(stack: Any) -> ExportDispatcher:
    """The example cut into many small units (1 MiB or 2 records)."""
    return chunking_dispatcher(chunk_target_bytes=1 * MIB, chunk_max_records=2)


def new_job(archive_format: ArchiveFormat = ArchiveFormat.ZIP) -> Job:
    return create_job(ACME, archive_format)


def run(stack: Any, dispatcher: ExportDispatcher, job: Job) -> tuple[dict[str, Any], Job]:
    """Dispatch the job as the worker, wait for its execution to end; returns the execution and the job."""
    with as_function("ExportWorkerFunction"):
        assert dispatcher.dispatch(ACME, job.job_id) is Dispatch.STARTED
    sfn = stack.client("stepfunctions")
    arn = f"{stack.physical['ExportStateMachine'].replace(':stateMachine:', ':execution:')}:{job.job_id}"
    deadline = time.monotonic() + 180
    while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution still running"
        time.sleep(0.2)
    return execution, wiring.export_service().get(ACME, job.job_id)


def leftovers(stack: Any, job: Job) -> tuple[list[str], list[str]]:
    """Objects and multipart uploads under the job's temporary prefix."""
    s3, bucket = stack.client("s3"), stack.physical["ExportsBucket"]
    prefix = f"tmp/{ACME}/{job.job_id}/"
    objects = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    uploads = [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])]
    uploads += [
        u["Key"]
        for u in s3.list_multipart_uploads(Bucket=bucket, Prefix=f"exports/{ACME}/{job.job_id}/").get(
            "Uploads", []
        )
    ]
    return objects, uploads


def download(job: Job) -> bytes:
    with as_function("GetExportFunction"):
        url = wiring.export_service().describe(job).download_url
    assert url is not None
    with urllib.request.urlopen(url, timeout=60) as response:
        return bytes(response.read())


@pytest.mark.parametrize("archive_format", list(ArchiveFormat))
def test_chunked_export_is_the_whole_organization(
    stack: Any, dispatcher: ExportDispatcher, example: Any, archive_format: ArchiveFormat, tmp_path: Path
) -> None:
    execution, job = run(stack, dispatcher, new_job(archive_format))
    assert execution["status"] == "SUCCEEDED", execution
    assert job.status is JobStatus.COMPLETED and job.error is None
    assert job.units_total >= 8 and job.units_done == {f"{u}" for u in job.units_done}
    assert len(job.units_done) == job.units_total
    with as_function("GetExportFunction"):
        response = wiring.export_service().describe(job).model_dump(mode="json")
    assert section_counts(response["sections"]) == EXAMPLE_SECTION_COUNTS
    data = download(job)
    assert len(data) == job.file_size_bytes
    files = archive_files(data, archive_format.value)
    top = job.output_filename.removesuffix("." + archive_format.extension)
    check_records(files, top, example)
    assert check_binaries(files, top, example) == 7
    check_manifest(files, top, response)
    check_no_secret_nor_other_organization(files, example)
    archive = tmp_path / job.output_filename
    archive.write_bytes(data)
    assert check_with_real_tools(archive, archive_format.value, set(files), tmp_path) >= 2
    assert leftovers(stack, job) == ([], [])


class FaultyAssets:
    """The real asset store, with a fault injected on chosen reads."""

    def __init__(self, real: Any, fault: Any) -> None:
        self.real, self.fault, self.reads = real, fault, 0
        self.keys: list[str] = []
        self._lock = threading.Lock()  # reads run ahead on several threads

    def open(self, key: str) -> Asset | None:
        with self._lock:  # the fault sees the count of its own read
            self.reads += 1
            self.keys.append(key)
            self.fault(self, key)
        return self.real.open(key)  # type: ignore[no-any-return]


def inject(monkeypatch: pytest.MonkeyPatch, fault: Any) -> FaultyAssets:
    chunked = wiring.chunked_export()
    faulty = FaultyAssets(chunked.assets, fault)
    monkeypatch.setattr(chunked, "assets", faulty)
    return faulty


def test_a_unit_failing_once_is_retried_alone(
    stack: Any, dispatcher: ExportDispatcher, example: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def time_out_once(faulty: FaultyAssets, key: str) -> None:
        if faulty.reads == 3:
            raise TimeoutError("S3 read timed out")

    faulty = inject(monkeypatch, time_out_once)
    execution, job = run(stack, dispatcher, new_job())
    assert execution["status"] == "SUCCEEDED", execution
    assert job.status is JobStatus.COMPLETED
    # Every asset reference read once, plus the retried unit's again. Reads run ahead, so the
    # unit may have read all its assets before the failure: the retried ones are one unit's, once more.
    reads = Counter(faulty.keys)
    retried = {key for key, count in reads.items() if count > 1}
    assert set(reads.values()) <= {1, 2}
    assert 1 <= len(retried) < len(reads)
    assert len({key.split("/")[1] for key in retried}) == 1  # one section's unit, not the whole export
    files = archive_files(download(job), "zip")
    assert check_binaries(files, job.output_filename.removesuffix(".zip"), example) == 7
    assert leftovers(stack, job) == ([], [])


def test_s3_slowdown_mid_upload_is_retried(
    stack: Any, dispatcher: ExportDispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_down_once(faulty: FaultyAssets, key: str) -> None:
        if faulty.reads == 2:
            error = {
                "Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                "ResponseMetadata": {"HTTPStatusCode": 503},
            }
            raise ClientError(error, "GetObject")  # type: ignore[arg-type]

    inject(monkeypatch, slow_down_once)
    execution, job = run(stack, dispatcher, new_job(ArchiveFormat.TAR_GZ))
    assert execution["status"] == "SUCCEEDED", execution
    assert job.status is JobStatus.COMPLETED
    assert leftovers(stack, job) == ([], [])


def test_a_permanent_failure_fails_the_job_cleanly(
    stack: Any, dispatcher: ExportDispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    def corrupt(faulty: FaultyAssets, key: str) -> None:
        if faulty.reads == 4:
            raise ValueError("asset metadata is corrupt")

    inject(monkeypatch, corrupt)
    execution, job = run(stack, dispatcher, new_job())
    assert execution["status"] == "FAILED"
    assert job.status is JobStatus.FAILED
    assert (job.error, job.error_code) == (failure_message(ErrorCode.EXPORT_FAILED), ErrorCode.EXPORT_FAILED)
    assert any(section.status is JobStatus.FAILED for section in job.sections)
    with as_function("GetExportFunction"):
        assert wiring.export_service().describe(job).download_url is None
    assert leftovers(stack, job) == ([], [])
    s3 = stack.client("s3")
    finals = s3.list_objects_v2(
        Bucket=stack.physical["ExportsBucket"], Prefix=f"exports/{ACME}/{job.job_id}/"
    )
    assert finals.get("KeyCount") == 0


def test_an_asset_deleted_while_the_export_runs_is_reported_missing(
    stack: Any, dispatcher: ExportDispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    deleted: list[str] = []

    def delete_the_big_image(faulty: FaultyAssets, key: str) -> None:
        if key.endswith("CpWrfXcQ9K3QMjuiwcGWu8/images/0") and not deleted:
            with acting_as(None):  # a person deleting it, not the unit that is reading it
                stack.client("s3").delete_object(Bucket=stack.physical["AssetsBucket"], Key=key)
            deleted.append(key)

    inject(monkeypatch, delete_the_big_image)
    try:
        execution, job = run(stack, dispatcher, new_job())
    finally:  # put the asset back for the other tests
        from data_export_cli.seed import generate_bytes

        stack.client("s3").put_object(
            Bucket=stack.physical["AssetsBucket"], Key=deleted[0], Body=generate_bytes(6291456, 20)
        )
    assert execution["status"] == "SUCCEEDED", execution
    assert job.status is JobStatus.COMPLETED
    products = next(section for section in job.sections if section.key == "products")
    assert products.binary_count == 4 and products.error is not None and "huila café.jpg" in products.error
    files = archive_files(download(job), "zip")
    top = job.output_filename.removesuffix(".zip")
    assert f"{top}/products/CpWrfXcQ9K3QMjuiwcGWu8/images/huila café.jpg" not in files


def test_a_duplicate_message_starts_no_second_build(stack: Any, dispatcher: ExportDispatcher) -> None:
    job = new_job()
    execution, _ = run(stack, dispatcher, job)
    assert execution["status"] == "SUCCEEDED"
    # While it runs, a duplicate finds the execution named after the job: Step Functions answers a
    # StartExecution of the same name and input with the running execution (or ExecutionAlreadyExists).
    running = new_job()
    with as_function("ExportWorkerFunction"):
        assert dispatcher.dispatch(ACME, job.job_id) is Dispatch.SKIPPED  # finished: nothing to do
        assert dispatcher.dispatch(ACME, running.job_id) is Dispatch.STARTED
        assert dispatcher.dispatch(ACME, running.job_id) in (Dispatch.STARTED, Dispatch.ALREADY_STARTED)
    sfn = stack.client("stepfunctions")
    executions = sfn.list_executions(stateMachineArn=stack.physical["ExportStateMachine"])["executions"]
    assert [e["name"] for e in executions].count(running.job_id) == 1
    deadline = time.monotonic() + 180
    while wiring.export_service().get(ACME, running.job_id).status is not JobStatus.COMPLETED:
        assert time.monotonic() < deadline
        time.sleep(0.2)
