"""Integrity and cancel-awareness of real builds on the local stack: the manifest lists every file with its
size and SHA-256, the job carries the archive's SHA-256 and S3's own checksum, progress adds up, and a job
canceled mid-build leaves no object and no multipart upload behind, on the fast path and the chunked one."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from data_export import wiring
from data_export.errors import JobOwnershipLostError
from data_export.export import builder as builder_module
from data_export.export import chunked as chunked_module
from data_export.export.chunked import ChunkedExport
from data_export.export.dispatch import Dispatch
from data_export.jobs import Job
from data_export.models import ArchiveFormat, ErrorCode, JobStatus
from data_export.storage.objects import Asset

from tests.archive_checks import (
    ACME,
    archive_files,
    check_manifest_files,
    s3_composite_checksum,
)
from tests.credentials import as_function
from tests.jobs import MIB, chunking_dispatcher, create_job

EXAMPLE_RECORDS = 19  # 1 organization, 3 members, 4 API keys, 2 brands, 4 products, 3 offers, 2 locations


def stored(job_id: str) -> Job:
    job = wiring.jobs().get(ACME, job_id)
    assert job is not None
    return job


def download(stack: Any, job: Job) -> bytes:
    assert job.object_key is not None
    s3 = stack.client("s3")
    return bytes(s3.get_object(Bucket=stack.physical["ExportsBucket"], Key=job.object_key)["Body"].read())


def leftovers(stack: Any, job_id: str) -> tuple[list[str], list[str]]:
    """Objects and multipart uploads under the job's final and temporary prefixes."""
    s3, bucket = stack.client("s3"), stack.physical["ExportsBucket"]
    objects: list[str] = []
    uploads: list[str] = []
    for prefix in (f"exports/{ACME}/{job_id}/", f"tmp/{ACME}/{job_id}/"):
        objects += [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
        uploads += [
            u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
        ]
    return objects, uploads


def check_verifiable(stack: Any, job: Job) -> dict[str, Any]:
    """Everything docs/archive-format.md tells a reader to verify, verified."""
    assert job.status is JobStatus.COMPLETED, job.error
    data = download(stack, job)
    assert len(data) == job.file_size_bytes
    assert job.archive_sha256 == hashlib.sha256(data).hexdigest()
    s3 = stack.client("s3")
    head = s3.head_object(Bucket=stack.physical["ExportsBucket"], Key=job.object_key, ChecksumMode="ENABLED")
    assert job.s3_checksum_sha256 == head["ChecksumSHA256"]
    expected = s3_composite_checksum(s3, stack.physical["ExportsBucket"], str(job.object_key), data)
    assert job.s3_checksum_sha256.split("-")[0] == expected
    top = job.output_filename.removesuffix("." + job.archive_format.extension)
    files = archive_files(data, job.archive_format.value)
    manifest = check_manifest_files(files, top)
    assert manifest["job_id"] == job.job_id and manifest["archive_format"] == job.archive_format.value
    assert len(manifest["files"]) == len(files) - 1 >= EXAMPLE_RECORDS + 7
    assert job.completed_at is not None
    retention = timedelta(days=wiring.export_builder().settings.job_retention_days)
    assert job.started_at is not None
    assert job.archive_expires_at == job.started_at + retention  # S3 counts from the upload, not the end
    assert job.total_records == EXAMPLE_RECORDS and job.total_weight > 6 * MIB
    return manifest


@pytest.mark.parametrize("archive_format", list(ArchiveFormat))
def test_fast_path_archive_is_verifiable(stack: Any, archive_format: ArchiveFormat) -> None:
    job = create_job(ACME, archive_format)
    with as_function("ExportWorkerFunction"):
        assert wiring.dispatcher().dispatch(ACME, job.job_id) is Dispatch.BUILT
    built = stored(job.job_id)
    check_verifiable(stack, built)
    # The last progress save (at the last section's end) had every record's weight.
    assert built.done_weight == built.total_weight
    assert 0 < built.bytes_written <= built.file_size_bytes


@pytest.mark.parametrize("archive_format", list(ArchiveFormat))
def test_chunked_archive_is_verifiable(stack: Any, archive_format: ArchiveFormat) -> None:
    dispatcher = chunking_dispatcher(chunk_target_bytes=1 * MIB, chunk_max_records=2)
    job = create_job(ACME, archive_format)
    with as_function("ExportWorkerFunction"):
        assert dispatcher.dispatch(ACME, job.job_id) is Dispatch.STARTED
    deadline = time.monotonic() + 180
    while not (built := stored(job.job_id)).is_finished:
        assert time.monotonic() < deadline, "chunked export still running"
        time.sleep(0.2)
    check_verifiable(stack, built)
    assert built.units_total >= 8
    # Not ==: the units run in parallel, and moto's DynamoDB (unlike DynamoDB) may lose one of two
    # simultaneous increments. The exact sums are checked on units built one after the other below.
    assert 0 < built.done_weight <= built.total_weight
    assert 0 < built.bytes_written < built.file_size_bytes
    assert leftovers(stack, job.job_id) == ([built.object_key], [])


def test_chunked_progress_counts_each_unit_once(stack: Any) -> None:
    job = create_job(ACME, ArchiveFormat.ZIP)
    run_id = "run-" + job.job_id
    chunked = wiring.chunked_export()
    units = planned(chunked, job, run_id)
    assert (stored(job.job_id).total_records, stored(job.job_id).total_weight) == (
        EXAMPLE_RECORDS,
        sum(unit.estimated_bytes for unit in units),
    )
    sizes = [build_unit(chunked, job, run_id, unit).size for unit in units]
    build_unit(chunked, job, run_id, units[3])  # a retried unit counts once
    progress = stored(job.job_id)
    assert progress.done_weight == progress.total_weight
    assert progress.bytes_written == sum(sizes)
    with as_function("ExportAssembleFunction"):
        assembled = chunked.assemble(ACME, job.job_id, run_id, [unit.unit_id for unit in units])
    check_verifiable(stack, assembled)


# ------------------------------------------------------------------------------------------- cancel


class CancelingAssets:
    """The real asset store; the n-th read cancels the job first (a DELETE arriving mid-build)."""

    def __init__(self, real: Any, job: Job, cancel_on: int) -> None:
        self.real, self.job, self.cancel_on, self.reads = real, job, cancel_on, 0
        self._lock = threading.Lock()  # reads run ahead on several threads

    def open(self, key: str) -> Asset | None:
        with self._lock:
            self.reads += 1
            read = self.reads
        if read == self.cancel_on:
            with as_function("CancelExportFunction"):
                assert wiring.jobs().cancel(stored(self.job.job_id), now=datetime.now(UTC))
        return self.real.open(key)  # type: ignore[no-any-return]


def check_canceled(stack: Any, job_id: str) -> Job:
    job = stored(job_id)
    assert job.status is JobStatus.FAILED and job.error_code is ErrorCode.CANCELED
    assert job.archive_sha256 is None and job.file_size_bytes == 0
    assert leftovers(stack, job_id) == ([], [])
    return job


@pytest.mark.parametrize("save_every_record", [False, True], ids=["section-end", "every-record"])
def test_cancel_mid_fast_path_build_stops_and_leaves_nothing(
    stack: Any, monkeypatch: pytest.MonkeyPatch, save_every_record: bool
) -> None:
    if save_every_record:  # the periodic save (every 2 s) on every record: the very next record stops it
        monkeypatch.setattr(builder_module, "PROGRESS_INTERVAL_SECONDS", 0.0)
    job = create_job(ACME, ArchiveFormat.ZIP)
    builder = wiring.export_builder()
    # The 2nd asset read is the brands' logo (after the organization's): the build is mid-way.
    assets = CancelingAssets(builder.assets, job, cancel_on=2)
    with as_function("ExportWorkerFunction"):
        result = dataclasses.replace(builder, assets=assets).build(ACME, job.job_id)
    assert (
        result is not None and result.status is JobStatus.FAILED and result.error_code is ErrorCode.CANCELED
    )
    canceled = check_canceled(stack, job.job_id)
    # Stopped at its next job write: within the brands section, no product image was read.
    assert assets.reads == 2
    statuses = {section.key: section.status for section in canceled.sections}
    assert statuses["organization"] is JobStatus.COMPLETED and statuses["products"] is JobStatus.FAILED


def test_cancel_before_the_build_claims_it_builds_nothing(stack: Any) -> None:
    job = create_job(ACME, ArchiveFormat.TAR_GZ)
    with as_function("CancelExportFunction"):
        assert wiring.jobs().cancel(job, now=datetime.now(UTC))
    with as_function("ExportWorkerFunction"):
        result = wiring.export_builder().build(ACME, job.job_id)
    assert result is not None and result.error_code is ErrorCode.CANCELED
    check_canceled(stack, job.job_id)


def planned(chunked: ChunkedExport, job: Job, run_id: str) -> list[Any]:
    """The Plan step of a run (as ExportPlanFunction), in units of 1 MiB or 2 records."""
    with as_function("ExportPlanFunction"):
        return chunked.plan(ACME, job.job_id, run_id, target_bytes=1 * MIB, max_records=2)


def build_unit(chunked: ChunkedExport, job: Job, run_id: str, unit: Any) -> Any:
    """The BuildUnit step of a run on one unit, as ExportBuildUnitFunction."""
    with as_function("ExportBuildUnitFunction"):
        return chunked.build_unit(ACME, job.job_id, run_id, unit)


def fail(chunked: ChunkedExport, job: Job, run_id: str) -> None:
    """The Fail step the state machine's Catch runs after a step lost the job, as ExportFailFunction."""
    with as_function("ExportFailFunction"):
        chunked.fail(ACME, job.job_id, run_id, "Export failed: JobOwnershipLostError")


@pytest.mark.parametrize("when", ["mid-unit", "at-count"])
def test_cancel_during_a_chunked_unit_leaves_nothing(
    stack: Any, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    if when == "mid-unit":  # the unit's ownership check on every record, instead of every 2 s
        monkeypatch.setattr(chunked_module, "PROGRESS_INTERVAL_SECONDS", 0.0)
    job = create_job(ACME, ArchiveFormat.ZIP)
    run_id = "run-" + job.job_id
    chunked = wiring.chunked_export()
    units = planned(chunked, job, run_id)
    products = next(unit for unit in units if unit.section == "products")
    assets = CancelingAssets(chunked.assets, job, cancel_on=1)
    canceling = dataclasses.replace(chunked, assets=assets)
    with pytest.raises(JobOwnershipLostError):
        build_unit(canceling, job, run_id, products)
    # The unit deleted what it wrote and aborted its upload by itself, before any Fail step ran (the run's
    # plan, which Plan wrote, is for Fail to remove).
    objects, uploads = leftovers(stack, job.job_id)
    assert [key for key in objects if not key.endswith("/plan.json") and "/plan/" not in key] == []
    assert uploads == []
    assert stored(job.job_id).units_done == set()
    # The state machine's Catch then runs Fail: it cleans up the run and leaves the canceled job as it is.
    fail(chunked, job, run_id)
    check_canceled(stack, job.job_id)


@pytest.mark.parametrize("when", ["upload-created", "archive-copied"])
def test_cancel_during_assembly_leaves_nothing(
    stack: Any, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """A cancel as Assemble has just created the archive's upload (its next job write is refused: it aborts
    the upload) or has copied the archive together (its hashing pass stops: it deletes the archive)."""
    monkeypatch.setattr(chunked_module, "PROGRESS_INTERVAL_SECONDS", 0.0)
    job = create_job(ACME, ArchiveFormat.TAR_GZ)
    run_id = "run-" + job.job_id
    chunked = wiring.chunked_export()
    units = planned(chunked, job, run_id)
    for unit in units:
        build_unit(chunked, job, run_id, unit)
    method = "create_upload" if when == "upload-created" else "concatenate"
    real = getattr(chunked.exports, method)

    def then_cancel(*args: Any) -> Any:
        result = real(*args)
        with as_function("CancelExportFunction"):
            assert wiring.jobs().cancel(stored(job.job_id), now=datetime.now(UTC))
        return result

    monkeypatch.setattr(chunked.exports, method, then_cancel)
    with pytest.raises(JobOwnershipLostError), as_function("ExportAssembleFunction"):
        chunked.assemble(ACME, job.job_id, run_id, [unit.unit_id for unit in units])
    objects, uploads = leftovers(stack, job.job_id)
    assert uploads == [] and not [key for key in objects if key.startswith("exports/")]
    fail(chunked, job, run_id)
    check_canceled(stack, job.job_id)


def test_the_fail_step_removes_what_the_run_left(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Assemble failed for good mid-copy (its upload under exports/ left open), after an earlier attempt of it
    had copied the archive and timed out (the object under exports/), while a unit's Lambda that timed out
    left its upload open under tmp/: the Fail step the Catch runs removes all of it and fails the job."""
    job = create_job(ACME, ArchiveFormat.ZIP)
    run_id = "run-" + job.job_id
    chunked = wiring.chunked_export()
    units = planned(chunked, job, run_id)
    for unit in units:
        build_unit(chunked, job, run_id, unit)
    s3, bucket = stack.client("s3"), stack.physical["ExportsBucket"]
    final = f"exports/{ACME}/{job.job_id}/{run_id}/{job.output_filename}"
    s3.put_object(Bucket=bucket, Key=final, Body=b"copied by the attempt that timed out")
    s3.create_multipart_upload(Bucket=bucket, Key=f"tmp/{ACME}/{job.job_id}/{run_id}/timed-out.part")

    def copy_refused(*args: Any) -> int:
        raise ValueError("the copy was refused")

    monkeypatch.setattr(chunked.exports, "concatenate", copy_refused)
    with pytest.raises(ValueError, match="refused"), as_function("ExportAssembleFunction"):
        chunked.assemble(ACME, job.job_id, run_id, [unit.unit_id for unit in units])
    objects, uploads = leftovers(stack, job.job_id)
    assert final in objects and final in uploads and len(uploads) == 2
    error = {
        "Error": "ValueError",
        "Cause": json.dumps({"errorType": "ValueError", "errorMessage": "refused"}),
    }
    event = {"organization_id": ACME, "job_id": job.job_id, "run_id": run_id, "error": error}
    assert stack.invoke("ExportFailFunction", event)["status"] == "failed"
    failed = stored(job.job_id)
    assert failed.status is JobStatus.FAILED and failed.error_code is ErrorCode.EXPORT_FAILED
    assert leftovers(stack, job.job_id) == ([], [])


def test_an_archive_too_big_to_hash_in_time_completes_without_its_sha256(stack: Any) -> None:
    job = create_job(ACME, ArchiveFormat.ZIP)
    run_id = "run-" + job.job_id
    chunked = wiring.chunked_export()
    units = planned(chunked, job, run_id)
    for unit in units:
        build_unit(chunked, job, run_id, unit)
    unit_ids = [unit.unit_id for unit in units]
    with as_function("ExportAssembleFunction"):
        chunked.assemble(ACME, job.job_id, run_id, unit_ids, deadline=time.monotonic())
    built = stored(job.job_id)
    assert built.status is JobStatus.COMPLETED and built.archive_sha256 is None
    # Everything else still verifies: the S3 checksum, and every file against the manifest.
    data = download(stack, built)
    s3, bucket = stack.client("s3"), stack.physical["ExportsBucket"]
    assert built.s3_checksum_sha256 is not None
    assert built.s3_checksum_sha256.split("-")[0] == s3_composite_checksum(
        s3, bucket, str(built.object_key), data
    )
    check_manifest_files(archive_files(data, "zip"), built.output_filename.removesuffix(".zip"))
