"""Asset reads that break off mid-stream resume (export.prefetch), against the real moto server: an asset
opened ahead whose connection S3 reset while it waited is read again from the byte it stopped at (a ranged
GET, If-Match its ETag), and the archive is byte for byte the one of unbroken reads. An object that changed
in between is not mixed in: the read fails as a changed asset, which is retried whole (transient)."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import IncompleteReadError, ResponseStreamingError
from data_export import wiring
from data_export.archive import ContentMismatchError
from data_export.errors import is_transient
from data_export.export.entries import open_entries
from data_export.export.prefetch import AssetPrefetcher
from data_export.export.sections import MissingAsset, SectionFolder, write_section
from data_export.ids import new_id
from data_export.models import ArchiveFormat, SectionReport
from data_export.storage.objects import Asset, AssetStore
from data_export.storage.org_data import iter_section
from urllib3.exceptions import ProtocolError

from tests.archive_checks import ACME
from tests.credentials import as_admin, as_function

MTIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
BIG, SMALL = 6_291_456, 734_003  # the example's product assets: one streams in turn, one is read whole ahead


def connection_reset() -> Exception:
    """What reading a body raises once S3 reset the idle connection (urllib3's error, wrapped by botocore)."""
    reset = ConnectionResetError(104, "Connection reset by peer")
    return ResponseStreamingError(error=ProtocolError(f"Connection broken: {reset!r}", reset))


RESETS: dict[str, Callable[[], Exception]] = {
    "ResponseStreamingError": connection_reset,
    "ConnectionResetError": lambda: ConnectionResetError(104, "Connection reset by peer"),
    "IncompleteReadError": lambda: IncompleteReadError(actual_bytes=1, expected_bytes=2),
}


def broken(chunks: Iterator[bytes], cut: int, error: Exception) -> Iterator[bytes]:
    """The chunks up to ``cut`` bytes (splitting the chunk it falls in), then ``error``."""
    given = 0
    for chunk in chunks:
        if given + len(chunk) >= cut:
            yield chunk[: cut - given]
            raise error
        given += len(chunk)
        yield chunk


class ResettingAssets:
    """The real asset store, except that the first read of each chosen asset breaks off after some bytes;
    records the offsets it is reopened from."""

    def __init__(self, real: AssetStore, cuts: dict[str, int], error: Callable[[], Exception]) -> None:
        self.real, self.cuts, self.error = real, cuts, error
        self.broken: set[str] = set()
        self.reopened: dict[str, list[int]] = {}
        self._lock = threading.Lock()  # reads run ahead on several threads

    def open(self, key: str) -> Asset | None:
        asset = self.real.open(key)
        with self._lock:
            first = key in self.cuts and key not in self.broken
            self.broken.add(key)
        if asset is None or not first:
            return asset
        reopen = asset.reopen
        assert reopen is not None

        def counted(offset: int) -> Asset:
            with self._lock:
                self.reopened.setdefault(key, []).append(offset)
            return reopen(offset)

        chunks = broken(asset.chunks, self.cuts[key], self.error())
        return Asset(size=asset.size, chunks=chunks, close=asset.close, reopen=counted)


def product_keys_by_size(builder: Any) -> dict[int, str]:
    return {
        int(ref["size_bytes"]): str(ref["asset_key"])
        for record in iter_section(builder.org_data, builder.api_keys, ACME, "products")
        for ref in [*(record.get("images") or []), *(record.get("documents") or [])]
        if ref.get("size_bytes")
    }


def products_section(archive_format: ArchiveFormat, open_asset: Callable[[str], Asset | None]) -> Any:
    builder = wiring.export_builder()
    sink = io.BytesIO()
    entries = open_entries(archive_format, sink, MTIME)
    report, missing = SectionReport(key="products"), list[MissingAsset]()
    records = iter_section(builder.org_data, builder.api_keys, ACME, "products")
    folder = SectionFolder("products")
    with as_function("ExportWorkerFunction"):  # the worker's section writing, with its role
        write_section(
            entries, "top", folder, records, open_asset, report, missing, organization_id=ACME, read_ahead=8
        )
    entries.close()
    return sink.getvalue(), missing, report


@pytest.mark.parametrize("reset", list(RESETS))
@pytest.mark.parametrize("archive_format", list(ArchiveFormat))
def test_a_read_reset_mid_stream_resumes_and_the_archive_is_identical(
    stack: Any, archive_format: ArchiveFormat, reset: str
) -> None:
    builder = wiring.export_builder()
    keys = product_keys_by_size(builder)
    # Cut mid-chunk: the big one in its third 1 MiB chunk, the small one (read whole ahead) half-way.
    cuts = {keys[BIG]: 2 * 1024 * 1024 + 12_345, keys[SMALL]: SMALL // 2}
    resetting = ResettingAssets(builder.assets, cuts, RESETS[reset])
    unbroken = products_section(archive_format, builder.assets.open)
    resumed = products_section(archive_format, resetting.open)
    assert resumed == unbroken
    assert resetting.reopened == {key: [cut] for key, cut in cuts.items()}  # once each, where it broke


def test_a_read_that_keeps_breaking_fails_after_a_few_resumes(stack: Any) -> None:
    builder = wiring.export_builder()
    key = product_keys_by_size(builder)[BIG]

    def always_breaking(asset_key: str) -> Asset | None:
        asset = builder.assets.open(asset_key)
        assert asset is not None and asset.reopen is not None
        reopen = asset.reopen

        def breaking(offset: int) -> Asset:
            again = reopen(offset)
            return Asset(again.size, broken(again.chunks, 1000, connection_reset()), again.close, breaking)

        return Asset(asset.size, broken(asset.chunks, 1000, connection_reset()), asset.close, breaking)

    records = [{"id": "r1", "images": [{"asset_key": key, "size_bytes": BIG, "filename": "big.png"}]}]
    with (
        as_function("ExportWorkerFunction"),
        AssetPrefetcher(always_breaking, {"images": True}) as prefetcher,
    ):
        for _ in prefetcher.records(records):
            asset = prefetcher.open(key)
            assert asset is not None
            with pytest.raises(ResponseStreamingError):
                b"".join(asset.chunks)


def test_an_asset_changed_between_the_reads_is_never_mixed(stack: Any) -> None:
    builder = wiring.export_builder()
    s3, bucket = wiring.client("s3"), builder.settings.assets_bucket
    key = f"orgs/{ACME}/test-changed-{new_id()}.bin"
    s3.put_object(Bucket=bucket, Key=key, Body=b"a" * 3_000_000)
    try:

        def changing(asset_key: str) -> Asset | None:
            asset = builder.assets.open(asset_key)
            assert asset is not None

            def chunks() -> Iterator[bytes]:
                yield from broken(asset.chunks, 1_500_000, connection_reset())

            def replaced_then_reopened(offset: int) -> Asset:
                with as_admin():  # someone changes it while the export reads it
                    s3.put_object(Bucket=bucket, Key=key, Body=b"b" * 3_000_000)
                assert asset.reopen is not None
                return asset.reopen(offset)

            return Asset(asset.size, chunks(), asset.close, replaced_then_reopened)

        records = [{"id": "r1", "images": [{"asset_key": key, "size_bytes": 3_000_000, "filename": "x.bin"}]}]
        with as_function("ExportWorkerFunction"), AssetPrefetcher(changing, {"images": True}) as prefetcher:
            for _ in prefetcher.records(records):
                asset = prefetcher.open(key)
                assert asset is not None
                with pytest.raises(ContentMismatchError) as changed:
                    b"".join(asset.chunks)
        assert is_transient(changed.value)  # the unit (or the worker's message) is retried whole
    finally:
        s3.delete_object(Bucket=bucket, Key=key)
