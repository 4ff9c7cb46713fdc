"""Assets read ahead (export.prefetch) against the real moto server: the archive is byte for byte the one
written without read-ahead, missing assets are reported the same, a failed read fails the build with nothing
left behind, the buffered bytes stay within the budget, and no reading thread outlives a build."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from data_export import wiring
from data_export.errors import failure_message
from data_export.export import builder as builder_module
from data_export.export.builder import ExportBuilder
from data_export.export.entries import open_entries
from data_export.export.prefetch import READ_AHEAD_BYTES, AssetPrefetcher
from data_export.export.sections import MissingAsset, SectionFolder, write_section
from data_export.jobs import Job
from data_export.models import SECTION_KEYS, ArchiveFormat, ErrorCode, JobStatus, SectionReport
from data_export.storage.layout import BINARY_FIELDS
from data_export.storage.objects import Asset
from data_export.storage.org_data import iter_section

from tests.archive_checks import ACME, archive_files
from tests.credentials import as_function
from tests.jobs import MIB, create_job

MTIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
KETTLE_IMAGE = "kettle.png"  # the example's last product image that exists (its sibling is missing)


def reading_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("asset-read")]


def with_read_ahead(builder: ExportBuilder, read_ahead: int) -> ExportBuilder:
    return dataclasses.replace(
        builder, settings=dataclasses.replace(builder.settings, asset_read_ahead=read_ahead)
    )


def section_bytes(
    archive_format: ArchiveFormat, section: str, read_ahead: int
) -> tuple[bytes, list[MissingAsset], SectionReport]:
    """One section as the worker writes it (as ExportWorkerFunction), into memory."""
    builder = wiring.export_builder()
    sink = io.BytesIO()
    entries = open_entries(archive_format, sink, MTIME)
    report, missing = SectionReport(key=section), []
    records = iter_section(builder.org_data, builder.api_keys, ACME, section)
    folder = SectionFolder(section)
    with as_function("ExportWorkerFunction"):
        write_section(
            entries,
            "top",
            folder,
            records,
            builder.assets.open,
            report,
            missing,
            organization_id=ACME,
            read_ahead=read_ahead,
        )
    entries.close()
    return sink.getvalue(), missing, report


@pytest.mark.parametrize("archive_format", list(ArchiveFormat))
def test_every_section_is_byte_identical_with_and_without_read_ahead(
    stack: Any, archive_format: ArchiveFormat
) -> None:
    for section in SECTION_KEYS:
        one_at_a_time = section_bytes(archive_format, section, read_ahead=0)
        ahead = section_bytes(archive_format, section, read_ahead=8)
        assert ahead == one_at_a_time, section
    data, missing, report = section_bytes(archive_format, "products", read_ahead=8)
    assert [m.filename for m in missing] == ["kettle-side.png"]
    assert (report.record_count, report.binary_count) == (4, 5) and len(data) > 7 * MIB


def build(builder: ExportBuilder, archive_format: ArchiveFormat) -> tuple[Job, dict[str, bytes]]:
    job_id = create_job(ACME, archive_format).job_id
    with as_function("ExportWorkerFunction"):
        job = builder.build(ACME, job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.object_key is not None
    s3, bucket = wiring.client("s3"), builder.settings.exports_bucket
    data = s3.get_object(Bucket=bucket, Key=job.object_key)["Body"].read()
    top = job.output_filename.removesuffix("." + archive_format.extension)
    return job, {
        name.removeprefix(top + "/"): content
        for name, content in archive_files(data, archive_format.value).items()
    }


@pytest.mark.parametrize("archive_format", list(ArchiveFormat))
def test_whole_build_has_the_same_entries_with_and_without_read_ahead(
    stack: Any, archive_format: ArchiveFormat
) -> None:
    builder = wiring.export_builder()
    plain_job, plain = build(with_read_ahead(builder, 0), archive_format)
    ahead_job, ahead = build(with_read_ahead(builder, 8), archive_format)
    assert list(ahead) == list(plain)  # same entries, same order
    for name in plain:
        if name != "manifest.yaml":
            assert ahead[name] == plain[name], name
    plain_manifest, ahead_manifest = (
        yaml.safe_load(plain["manifest.yaml"]),
        yaml.safe_load(ahead["manifest.yaml"]),
    )
    for key in ("sections", "missing_assets", "files"):
        assert ahead_manifest[key] == plain_manifest[key], key
    assert (
        ahead_manifest["missing_assets"]
        == [
            {
                "section": "products",
                "record_id": m["record_id"],
                "field": "images",
                "filename": "kettle-side.png",
            }
            for m in ahead_manifest["missing_assets"]
        ]
        and len(ahead_manifest["missing_assets"]) == 1
    )
    assert [s.error for s in ahead_job.sections] == [s.error for s in plain_job.sections]
    assert reading_threads() == []


def product_records() -> list[dict[str, Any]]:
    builder = wiring.export_builder()
    return list(iter_section(builder.org_data, builder.api_keys, ACME, "products"))


def product_refs(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(record.get("images") or []), *(record.get("documents") or [])]


def asset_key_of(filename: str) -> str:
    return next(
        str(ref["asset_key"])
        for record in product_records()
        for ref in product_refs(record)
        if ref["filename"] == filename
    )


class FailingAssets:
    """The real asset store, except that reading one chosen asset fails (as after boto3's retries)."""

    def __init__(self, real: Any, failing_key: str) -> None:
        self.real, self.failing_key = real, failing_key

    def open(self, key: str) -> Asset | None:
        if key == self.failing_key:
            raise ConnectionError(f"S3 read of {KETTLE_IMAGE} timed out")
        return self.real.open(key)  # type: ignore[no-any-return]


class CancelingAssets:
    """The real asset store; the first product asset's read cancels the job (a DELETE mid-build)."""

    def __init__(self, real: Any, job: Job) -> None:
        self.real, self.job, self.canceled = real, job, threading.Event()

    def open(self, key: str) -> Asset | None:
        if "/products/" in key and not self.canceled.is_set():
            self.canceled.set()
            with as_function("CancelExportFunction"):
                stored = wiring.jobs().get(ACME, self.job.job_id)
                assert stored is not None and wiring.jobs().cancel(stored, now=datetime.now(UTC))
        return self.real.open(key)  # type: ignore[no-any-return]


def leftovers(stack: Any, job_id: str) -> tuple[list[Any], list[Any]]:
    s3, bucket, prefix = stack.client("s3"), stack.physical["ExportsBucket"], f"exports/{ACME}/{job_id}/"
    objects = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
    return objects, uploads


@pytest.mark.parametrize("archive_format", list(ArchiveFormat))
def test_a_failed_read_ahead_fails_the_build_cleanly(stack: Any, archive_format: ArchiveFormat) -> None:
    builder = with_read_ahead(wiring.export_builder(), 8)
    failing = FailingAssets(builder.assets, asset_key_of(KETTLE_IMAGE))
    job = create_job(ACME, archive_format)
    with as_function("ExportWorkerFunction"):
        result = dataclasses.replace(builder, assets=failing).build(ACME, job.job_id)
    assert result is not None and result.status is JobStatus.FAILED
    assert result.error == failure_message(ErrorCode.EXPORT_FAILED, "products")  # not the read's error
    statuses = {section.key: section.status for section in result.sections}
    assert statuses["brands"] is JobStatus.COMPLETED and statuses["products"] is JobStatus.FAILED
    assert statuses["offers"] is JobStatus.PENDING
    assert leftovers(stack, job.job_id) == ([], [])
    assert reading_threads() == []


def test_a_cancel_mid_read_ahead_stops_the_build_and_its_threads(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(builder_module, "PROGRESS_INTERVAL_SECONDS", 0.0)  # a job write after every record
    job = create_job(ACME, ArchiveFormat.ZIP)
    builder = with_read_ahead(wiring.export_builder(), 8)
    assets = CancelingAssets(builder.assets, job)
    with as_function("ExportWorkerFunction"):
        result = dataclasses.replace(builder, assets=assets).build(ACME, job.job_id)
    assert result is not None and result.error_code is ErrorCode.CANCELED
    assert leftovers(stack, job.job_id) == ([], [])
    assert reading_threads() == []


@pytest.mark.parametrize("budget", [READ_AHEAD_BYTES, 1 * MIB, 600_000, 1])
def test_buffered_bytes_stay_within_the_budget(stack: Any, budget: int) -> None:
    """The example's product assets are 734,003, 512,000, 91,234, 6,291,456 and 120,000 bytes (one is
    missing). Reads that may be read whole ahead always are, before they are taken, so the peak is known:
    the 6 MiB one is never read whole ahead (over READ_WHOLE_LIMIT), a small budget holds some back, a
    budget of 1 byte reads none whole ahead (all stream in turn), and every one still comes out whole and
    in order."""
    assets = wiring.export_builder().assets
    records = product_records()
    expected = []
    for record in records:
        for ref in product_refs(record):
            asset = assets.open(ref["asset_key"])
            expected.append(None if asset is None else hashlib.sha256(b"".join(asset.chunks)).hexdigest())
    taken = []
    fields = BINARY_FIELDS["products"]
    with (
        as_function("ExportWorkerFunction"),
        AssetPrefetcher(assets.open, fields, max_in_flight=8, budget=budget) as prefetcher,
    ):
        for record in prefetcher.records(records):
            for ref in product_refs(record):
                asset = prefetcher.open(ref["asset_key"])
                taken.append(None if asset is None else hashlib.sha256(b"".join(asset.chunks)).hexdigest())
    assert taken == expected and expected.count(None) == 1
    assert prefetcher.peak_buffered <= budget
    assert prefetcher.peak_buffered < 6_291_456
    if budget >= 734_003:
        assert prefetcher.peak_buffered >= 734_003
    elif budget >= 512_000:
        assert prefetcher.peak_buffered >= 512_000  # the 734,003 bytes streamed, the next one was read ahead
    elif budget == 1:
        assert prefetcher.peak_buffered == 0
    assert reading_threads() == []
