"""Checksums in the exports store against a real moto server over HTTP: the writer's own SHA-256 of what it
uploads, the parts' SHA-256 checksums that S3 combines into the object's checksum (uploaded and copied
parts), and the ranged, read-ahead digest pass over a finished object."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from data_export.storage import objects
from data_export.storage.concat import SourceObject
from data_export.storage.objects import ExportStore

from tests.archive_checks import s3_composite_checksum
from tests.moto_s3 import own_s3

MIB = 1024 * 1024
BUCKET = "integrity-test"


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    yield from own_s3(BUCKET)


def key() -> str:
    return f"{uuid.uuid4().hex}/archive"


def test_the_writer_hashes_what_it_uploads_and_s3_checks_every_part(s3: Any) -> None:
    store, target = ExportStore(s3, BUCKET), key()
    data = os.urandom(12 * MIB + 12345)
    writer = store.start_upload(target, "application/zip", part_size=5 * MIB, digest=True)
    with pytest.raises(ValueError, match="complete"):
        _ = writer.sha256
    for start in range(0, len(data), 777_777):  # writes that straddle the parts' boundaries
        writer.write(data[start : start + 777_777])
    assert writer.complete() == len(data)
    assert writer.sha256 == hashlib.sha256(data).hexdigest()
    stored = s3.get_object(Bucket=BUCKET, Key=target)["Body"].read()
    assert stored == data
    checksum = store.checksum_sha256(target)
    assert checksum is not None and checksum.split("-")[0] == s3_composite_checksum(s3, BUCKET, target, data)
    assert s3.head_object(Bucket=BUCKET, Key=target, PartNumber=1)["PartsCount"] == 3


def test_a_writer_without_digest_has_no_sha256(s3: Any) -> None:
    writer = ExportStore(s3, BUCKET).start_upload(key(), "application/zip", part_size=5 * MIB)
    writer.write(b"abc")
    writer.complete()
    with pytest.raises(ValueError, match="digest=True"):
        _ = writer.sha256


def test_concatenated_parts_carry_checksums_copied_and_stitched(s3: Any) -> None:
    store = ExportStore(s3, BUCKET)
    sources, contents = [], []
    for size in (KIB := 1024, 6 * MIB, 3 * MIB, 12 * MIB):  # stitched, copied and topped-up sources
        source_key, body = key(), os.urandom(size)
        s3.put_object(Bucket=BUCKET, Key=source_key, Body=body)
        sources.append(SourceObject(source_key, size))
        contents.append(body)
    tail = os.urandom(100 * KIB)
    target = key()
    upload_id = store.create_upload(target, "application/zip")
    size = store.concatenate(sources, tail, target, upload_id)
    data = b"".join(contents) + tail
    assert size == len(data) and s3.get_object(Bucket=BUCKET, Key=target)["Body"].read() == data
    checksum = store.checksum_sha256(target)
    assert checksum is not None and checksum.split("-")[0] == s3_composite_checksum(s3, BUCKET, target, data)


@pytest.mark.parametrize("size", [0, 1, 3 * MIB, 3 * MIB + 1, 10 * MIB - 7])
def test_the_digest_pass_reads_every_byte_once_in_order(
    s3: Any, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(objects, "DIGEST_RANGE", 1 * MIB)  # many ranges, more than the read-ahead
    target, data = key(), os.urandom(size)
    s3.put_object(Bucket=BUCKET, Key=target, Body=data)
    seen: list[int] = []
    digest = ExportStore(s3, BUCKET).sha256(target, size, every_range=seen.append)
    assert digest == hashlib.sha256(data).hexdigest()
    assert seen == [min(size, (i + 1) * MIB) for i in range(-(-size // MIB))]


def test_the_digest_pass_stops_when_told(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(objects, "DIGEST_RANGE", 1 * MIB)
    target = key()
    s3.put_object(Bucket=BUCKET, Key=target, Body=os.urandom(20 * MIB))
    seen: list[int] = []

    def stop_at_the_second(done: int) -> None:
        seen.append(done)
        if len(seen) == 2:
            raise InterruptedError("job canceled")

    with pytest.raises(InterruptedError):
        ExportStore(s3, BUCKET).sha256(target, 20 * MIB, every_range=stop_at_the_second)
    assert seen == [MIB, 2 * MIB]


def test_the_digest_pass_refuses_a_short_object(s3: Any) -> None:
    target = key()
    s3.put_object(Bucket=BUCKET, Key=target, Body=b"short")
    with pytest.raises(Exception, match=r"InvalidRange|expected"):
        ExportStore(s3, BUCKET).sha256(target, 10)
