"""Server-side concatenation: the part planner exhaustively on small numbers, the executor against a real
moto server over HTTP (which, like S3, refuses to complete an upload with a non-last part under 5 MiB)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from data_export.storage.concat import (
    Copy,
    PartPlan,
    SourceObject,
    Stitch,
    concatenate,
    plan_parts,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.moto_s3 import own_s3

KIB = 1024
MIB = 1024 * KIB
BUCKET = "concat-test"

# ---------------------------------------------------------------------------------------------- the planner


def byte_origins(plan: Sequence[PartPlan]) -> list[tuple[int | None, int]]:
    """(source or None for the tail, offset) of every byte the plan writes, in order."""
    origins: list[tuple[int | None, int]] = []
    for part in plan:
        if isinstance(part, Copy):
            origins += [(part.source, offset) for offset in range(part.start, part.end)]
        else:
            for segment in part.segments:
                origins += [(segment.source, offset) for offset in range(segment.start, segment.end)]
    return origins


def stitched_per_source(plan: Sequence[PartPlan], count: int) -> list[int]:
    stitched = [0] * count
    for part in plan:
        if isinstance(part, Stitch):
            for segment in part.segments:
                if segment.source is not None:
                    stitched[segment.source] += segment.size
    return stitched


def check_plan(sizes: list[int], tail_size: int, min_part: int, max_part: int) -> list[PartPlan]:
    plan = plan_parts(sizes, tail_size, min_part, max_part)
    expected: list[tuple[int | None, int]] = [
        (index, offset) for index, size in enumerate(sizes) for offset in range(size)
    ]
    expected += [(None, offset) for offset in range(tail_size)]
    assert byte_origins(plan) == expected  # every byte exactly once, in order

    assert plan, "even no bytes at all make one (empty) part"
    assert all(min_part <= part.size <= max_part for part in plan[:-1])
    assert plan[-1].size <= max_part
    assert plan[-1].size > 0 or len(expected) == 0
    for part in plan:
        if isinstance(part, Copy):
            assert part.size >= min_part
        else:
            assert all(segment.size > 0 for segment in part.segments)
            if all(segment.source is not None for segment in part.segments):
                # Source bytes held in memory for one part stay under two minimum parts.
                assert part.size < 2 * min_part

    stitched = stitched_per_source(plan, len(sizes))
    assert sum(stitched) <= min_part * sum(1 for size in sizes if size)
    for size, stitched_bytes in zip(sizes, stitched, strict=True):
        assert stitched_bytes < 2 * min_part
        if size >= 2 * min_part:
            assert stitched_bytes < min_part  # only the top-up at its start
    return plan


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=40), max_size=12),
    tail_size=st.integers(min_value=0, max_value=40),
)
@settings(max_examples=1500, deadline=None)
def test_plan_with_s3_like_ratio(sizes: list[int], tail_size: int) -> None:
    check_plan(sizes, tail_size, min_part=5, max_part=12)


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=30), max_size=10),
    tail_size=st.integers(min_value=0, max_value=30),
    min_part=st.integers(min_value=1, max_value=6),
    slack=st.integers(min_value=0, max_value=6),
)
@settings(max_examples=1500, deadline=None)
def test_plan_any_part_limits(sizes: list[int], tail_size: int, min_part: int, slack: int) -> None:
    check_plan(sizes, tail_size, min_part, 2 * min_part + slack)


def test_plan_copies_big_sources_and_stitches_only_top_ups() -> None:
    plan = check_plan([3, 30, 0, 7], tail_size=2, min_part=5, max_part=12)
    assert [part for part in plan if isinstance(part, Copy)] == [
        Copy(1, 2, 12),
        Copy(1, 12, 21),
        Copy(1, 21, 30),
        Copy(3, 0, 7),
    ]
    assert stitched_per_source(plan, 4) == [3, 2, 0, 0]


def test_plan_of_nothing_is_one_empty_part() -> None:
    assert plan_parts([0, 0], 0, 5, 12) == [Stitch(())]
    assert plan_parts([], 0, 5, 12) == [Stitch(())]


@pytest.mark.parametrize(
    ("sizes", "tail_size", "min_part", "max_part"),
    [([1], 0, 5, 9), ([1], 0, 0, 12), ([-1], 0, 5, 12), ([1], -1, 5, 12)],
)
def test_plan_rejects_impossible_input(
    sizes: list[int], tail_size: int, min_part: int, max_part: int
) -> None:
    with pytest.raises(ValueError):
        plan_parts(sizes, tail_size, min_part, max_part)


# --------------------------------------------------------------------------------------- on a moto server


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    yield from own_s3(BUCKET)


def put_sources(s3: Any, sizes: Sequence[int]) -> tuple[list[SourceObject], list[bytes]]:
    prefix = uuid.uuid4().hex
    sources, contents = [], []
    for index, size in enumerate(sizes):
        data = os.urandom(size)
        key = f"{prefix}/chunk-{index}"
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        sources.append(SourceObject(key, size))
        contents.append(data)
    return sources, contents


def concatenate_and_complete(
    s3: Any, sources: Sequence[SourceObject], tail: bytes, **limits: int
) -> tuple[bytes, Any]:
    key = f"{uuid.uuid4().hex}/archive"
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    parts, stats = concatenate(
        s3, bucket=BUCKET, sources=sources, tail=tail, target_key=key, upload_id=upload_id, **limits
    )
    assert [part["PartNumber"] for part in parts] == list(range(1, stats.parts + 1))
    s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(), stats


@pytest.mark.parametrize(
    ("sizes", "tail_size", "limits"),
    [
        pytest.param([0, KIB, 6 * MIB, 3 * MIB, 12 * MIB, 0], 100 * KIB, {}, id="mixed"),
        pytest.param([0, 1, KIB, 64 * KIB, 3 * MIB, 2 * MIB, 10], KIB, {}, id="all-tiny"),
        pytest.param([11 * MIB + 5], 0, {}, id="one-big-chunk-no-tail"),
        pytest.param([11 * MIB + 5], 0, {"max_part_size": 10 * MIB}, id="one-big-chunk-split-copies"),
        pytest.param([3 * MIB], 12 * MIB, {"max_part_size": 10 * MIB}, id="big-tail-split"),
        pytest.param([], 100 * KIB, {}, id="only-a-tail"),
        pytest.param([0, 0], 0, {}, id="nothing-at-all"),
    ],
)
def test_result_is_the_exact_concatenation(
    s3: Any, sizes: list[int], tail_size: int, limits: dict[str, int]
) -> None:
    sources, contents = put_sources(s3, sizes)
    tail = os.urandom(tail_size)
    expected = b"".join(contents) + tail

    result, stats = concatenate_and_complete(s3, sources, tail, **limits)

    assert len(result) == len(expected) == stats.size
    assert hashlib.sha256(result).hexdigest() == hashlib.sha256(expected).hexdigest()
    assert stats.copied_bytes + stats.stitched_bytes + tail_size == stats.size
    plan = plan_parts(sizes, tail_size, 5 * MIB, limits.get("max_part_size", 5 * 1024 * MIB))
    assert stats.parts == len(plan)
    assert stats.copied_bytes == sum(part.size for part in plan if isinstance(part, Copy))
    assert stats.stitched_bytes <= 5 * MIB * sum(1 for size in sizes if size)


def test_big_chunks_move_server_side(s3: Any) -> None:
    sources, _ = put_sources(s3, [0, KIB, 6 * MIB, 3 * MIB, 12 * MIB, 0])
    _, stats = concatenate_and_complete(s3, sources, os.urandom(100 * KIB))
    # The 6 MiB chunk must be stitched (1 KiB before it cannot be a part); the 12 MiB one is topped up.
    assert stats.copied_bytes == 10 * MIB
    assert stats.stitched_bytes == KIB + 6 * MIB + 3 * MIB + 2 * MIB


def test_one_big_chunk_is_copied_entirely(s3: Any) -> None:
    sources, _ = put_sources(s3, [11 * MIB])
    _, stats = concatenate_and_complete(s3, sources, b"")
    assert (stats.parts, stats.copied_bytes, stats.stitched_bytes) == (1, 11 * MIB, 0)


def test_too_many_parts_fail_before_any_upload(s3: Any) -> None:
    key = f"{uuid.uuid4().hex}/archive"
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    with pytest.raises(ValueError, match="10000"):
        concatenate(
            s3,
            bucket=BUCKET,
            sources=[],
            tail=bytes(30_000),
            target_key=key,
            upload_id=upload_id,
            min_part_size=1,
            max_part_size=2,
        )
    assert s3.list_parts(Bucket=BUCKET, Key=key, UploadId=upload_id).get("Parts", []) == []


def test_a_source_shorter_than_declared_is_an_error(s3: Any) -> None:
    (source,), _ = put_sources(s3, [KIB])
    key = f"{uuid.uuid4().hex}/archive"
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    with pytest.raises(ValueError, match="expected 2048"):
        concatenate(
            s3,
            bucket=BUCKET,
            sources=[SourceObject(source.key, 2 * KIB)],
            tail=b"",
            target_key=key,
            upload_id=upload_id,
        )
