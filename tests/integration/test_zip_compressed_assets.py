"""Zip exports of real-format assets on the local stack, by both build paths: the fast path (one Lambda) and
the chunked one (the real state machine, many small units whose entry indexes the assembler joins). The
example organization's binaries are read through a store that hands out realistic content from the
benchmark corpus (photos, PNG, PDF, CSV, text) in place of the fixture's random bytes, so that assets are
deflated, whole (sizes up front) or streamed (data descriptor), and stored; every real tool must read the
archive, and the manifest must list each file's own size and SHA-256."""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from data_export import wiring
from data_export.export import entries as entries_module
from data_export.export.dispatch import ExportDispatcher
from data_export.models import ArchiveFormat, JobStatus
from data_export.storage.layout import asset_prefix
from data_export.storage.objects import Asset

from benchmarks.corpus import build_corpus
from tests.archive_checks import ACME, archive_files, check_manifest_files, check_with_real_tools
from tests.credentials import as_function
from tests.integration.test_chunked_export import (  # noqa: F401 - dispatcher is a fixture
    dispatcher,
    download,
    leftovers,
    new_job,
    run,
)

BINARY_FOLDERS = ("/logo/", "/images/", "/documents/")
# Assets over this size stream through the writer (deflated on the fly or stored blocks, data descriptor).
STREAM_OVER = 300_000


class CorpusAssets:
    """The real asset store's objects (a missing one stays missing), each with realistic content instead."""

    def __init__(self, real: Any, keys: list[str]) -> None:
        pool = [file.data for file in build_corpus(5, 1_500_000)]
        self.real = real
        self.content = {key: pool[index % len(pool)] for index, key in enumerate(sorted(keys))}

    def open(self, key: str) -> Asset | None:
        asset = self.real.open(key)
        if asset is None:
            return None
        asset.close()
        data = self.content[key]
        return Asset(size=len(data), chunks=_chunks(data))


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), 1 << 20):
        yield data[start : start + (1 << 20)]


@pytest.fixture
def corpus_assets(stack: Any, monkeypatch: pytest.MonkeyPatch) -> CorpusAssets:
    s3 = stack.client("s3")
    listed = s3.list_objects_v2(Bucket=stack.physical["AssetsBucket"], Prefix=asset_prefix(ACME))
    assets = CorpusAssets(wiring.export_builder().assets, [item["Key"] for item in listed["Contents"]])
    monkeypatch.setattr(entries_module, "BUFFERED_ASSET_LIMIT", STREAM_OVER)
    return assets


def check_archive(data: bytes, assets: CorpusAssets, top: str, tmp_path: Path) -> None:
    files = archive_files(data, "zip")  # testzip, UTF-8 names, no STORED entry with a data descriptor
    binaries = {name: content for name, content in files.items() if any(f in name for f in BINARY_FOLDERS)}
    assert sorted(binaries.values()) == sorted(assets.content.values())  # each asset's own bytes
    check_manifest_files(files, top)  # sizes and SHA-256 of the content, not of the entries
    with zipfile.ZipFile(BytesIO(data)) as archive:
        forms = {
            (info.compress_type, bool(info.flag_bits & 0x8), info.compress_size < info.file_size)
            for info in archive.infolist()
            if info.filename in binaries
        }
    assert (zipfile.ZIP_DEFLATED, False, True) in forms  # read whole and deflated, sizes up front
    assert (zipfile.ZIP_DEFLATED, True, True) in forms  # streamed and deflated, data descriptor
    assert (zipfile.ZIP_STORED, False, False) in forms  # read whole, incompressible
    archive_path = tmp_path / "export.zip"
    archive_path.write_bytes(data)
    assert check_with_real_tools(archive_path, "zip", set(files), tmp_path) >= 2


def test_fast_path_deflates_what_pays(stack: Any, corpus_assets: CorpusAssets, tmp_path: Path) -> None:
    builder = dataclasses.replace(wiring.export_builder(), assets=corpus_assets)
    job = new_job(ArchiveFormat.ZIP)
    with as_function("ExportWorkerFunction"):
        built = builder.build(ACME, job.job_id)
    assert built is not None and built.status is JobStatus.COMPLETED, built
    data = download(built)
    assert len(data) == built.file_size_bytes
    check_archive(data, corpus_assets, built.output_filename.removesuffix(".zip"), tmp_path)


def test_chunked_export_joins_compressed_entries(
    stack: Any,
    dispatcher: ExportDispatcher,  # noqa: F811 - the fixture imported above
    corpus_assets: CorpusAssets,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(wiring.chunked_export(), "assets", corpus_assets)
    execution, job = run(stack, dispatcher, new_job(ArchiveFormat.ZIP))
    assert execution["status"] == "SUCCEEDED", execution
    assert job.status is JobStatus.COMPLETED and job.units_total >= 8
    data = download(job)
    assert len(data) == job.file_size_bytes
    check_archive(data, corpus_assets, job.output_filename.removesuffix(".zip"), tmp_path)
    assert leftovers(stack, job) == ([], [])
