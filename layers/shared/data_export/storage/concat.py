"""Server-side concatenation: S3 objects + an in-memory tail -> the parts of one multipart upload.

Chunks of a big export are built in parallel into temporary objects; the final archive is their bytes in
order followed by a small tail. Ranges of at least ``min_part`` bytes move server-side with UploadPartCopy;
only the pieces too small to be a part on their own are downloaded and re-uploaded ("stitched") together
with neighbouring bytes, so the bytes through this process stay near one part size per chunk boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from data_export.settings import MIB
from data_export.storage.objects import CHECKSUM_ALGORITHM, MAX_PARTS, part_checksum

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

GIB = 1024 * MIB
UPLOAD_THREADS = 4


@dataclass(frozen=True)
class SourceObject:
    key: str
    size: int


@dataclass(frozen=True)
class ConcatStats:
    parts: int
    copied_bytes: int  # moved server-side with UploadPartCopy
    stitched_bytes: int  # source bytes downloaded and re-uploaded through this process (the tail excluded)
    size: int  # total size of the result: copied_bytes + stitched_bytes + len(tail)


@dataclass(frozen=True)
class Segment:
    """Bytes [start, end) of source ``source``, or of the tail when ``source`` is None."""

    source: int | None
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Copy:
    """A part copied server-side from bytes [start, end) of source ``source``."""

    source: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Stitch:
    """A part uploaded from the given segments, joined in order."""

    segments: tuple[Segment, ...]

    @property
    def size(self) -> int:
        return sum(segment.size for segment in self.segments)


PartPlan = Copy | Stitch


def plan_parts(sizes: Sequence[int], tail_size: int, min_part: int, max_part: int) -> list[PartPlan]:
    """Split sources of the given sizes followed by a tail into parts, in order.

    Every part but the last holds between ``min_part`` and ``max_part`` bytes, the last at most ``max_part``
    (and is empty only when there are no bytes at all). Sources are copied wherever a range of at least
    ``min_part`` bytes allows; a small pending stitch takes from the next source only the top-up it needs
    (< min_part), or all of it when what would be left could not be copied. So a source of at least
    2 x min_part has less than min_part stitched, and all sources together less than
    (non-empty sources x min_part).
    """
    if min_part < 1 or max_part < 2 * min_part:
        # Below 2 x min_part, a pending stitch plus a top-up could overflow a part.
        raise ValueError(f"need 1 <= min_part and 2 x min_part <= max_part, got {min_part}, {max_part}")
    if tail_size < 0 or any(size < 0 for size in sizes):
        raise ValueError("sizes must not be negative")

    parts: list[PartPlan] = []
    pending: list[Segment] = []
    pending_size = 0

    def flush() -> None:
        nonlocal pending_size
        parts.append(Stitch(tuple(pending)))
        pending.clear()
        pending_size = 0

    for index, size in enumerate(sizes):
        if size == 0:
            continue
        start = 0
        if pending_size:
            top_up = min_part - pending_size
            if size - top_up < min_part:
                # What would be left after the top-up could not be copied: stitch the whole source.
                pending.append(Segment(index, 0, size))
                pending_size += size  # < 2 x min_part
                if pending_size >= min_part:
                    flush()
                continue
            pending.append(Segment(index, 0, top_up))
            flush()
            start = top_up
        if size - start < min_part:
            pending.append(Segment(index, start, size))
            pending_size += size - start
            continue
        parts.extend(Copy(index, a, b) for a, b in _even_split(start, size, max_part))

    # The pending bytes (< min_part) and the tail end the upload: the last part may be small.
    if tail_size:
        pending.append(Segment(None, 0, tail_size))
        pending_size += tail_size
    if pending_size or not parts:
        for a, b in _even_split(0, pending_size, max_part):
            parts.append(Stitch(_take(pending, a, b)))
    return parts


def _even_split(start: int, end: int, max_part: int) -> list[tuple[int, int]]:
    """[start, end) in the fewest near-equal ranges of at most max_part bytes (each >= max_part / 2 when
    there are several, hence >= min_part); one empty range when start == end."""
    count = max(1, -(-(end - start) // max_part))
    base, extra = divmod(end - start, count)
    ranges: list[tuple[int, int]] = []
    for i in range(count):
        size = base + (1 if i < extra else 0)
        ranges.append((start, start + size))
        start += size
    return ranges


def _take(segments: Sequence[Segment], a: int, b: int) -> tuple[Segment, ...]:
    """The segments covering bytes [a, b) of the concatenation of ``segments``."""
    taken: list[Segment] = []
    offset = 0
    for segment in segments:
        lo, hi = max(a, offset), min(b, offset + segment.size)
        if lo < hi:
            shift = segment.start - offset
            taken.append(Segment(segment.source, lo + shift, hi + shift))
        offset += segment.size
    return tuple(taken)


def concatenate(
    s3: S3Client,
    *,
    bucket: str,
    sources: Sequence[SourceObject],
    tail: bytes,
    target_key: str,
    upload_id: str,
    min_part_size: int = 5 * MIB,
    max_part_size: int = 5 * GIB,
    checksums: bool = False,
) -> tuple[list[CompletedPartTypeDef], ConcatStats]:
    """Upload sources' bytes then ``tail`` as the parts of the multipart upload ``upload_id`` of
    ``target_key`` (sources in the same bucket). Returns the parts for complete_multipart_upload, which is
    left to the caller, and what moved how. Raises before any upload when the plan exceeds 10,000 parts.

    ``checksums``: the upload was created with ChecksumAlgorithm=SHA256, so every part carries its SHA-256
    (uploaded parts: computed here; copied parts: as S3 computed it while copying)."""
    plan = plan_parts([source.size for source in sources], len(tail), min_part_size, max_part_size)
    if len(plan) > MAX_PARTS:
        raise ValueError(f"concatenation needs {len(plan)} parts, S3 allows {MAX_PARTS}")

    def read(segment: Segment) -> bytes:
        if segment.source is None:
            return tail[segment.start : segment.end]
        source = sources[segment.source]
        body = s3.get_object(Bucket=bucket, Key=source.key, Range=_byte_range(segment.start, segment.end))
        data = body["Body"].read()
        if len(data) != segment.size:
            raise ValueError(
                f"{source.key}: read {len(data)} bytes at {segment.start}, expected {segment.size}"
            )
        return data

    def upload(number: int, part: PartPlan) -> CompletedPartTypeDef:
        if isinstance(part, Copy):
            copied = s3.upload_part_copy(
                Bucket=bucket,
                Key=target_key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": bucket, "Key": sources[part.source].key},
                CopySourceRange=_byte_range(part.start, part.end),
            )
            result = copied["CopyPartResult"]
            completed: CompletedPartTypeDef = {"PartNumber": number, "ETag": result["ETag"]}
            # S3 returns the copy's checksum when the upload has an algorithm (moto 5 does not, and
            # computes it itself on completion).
            if checksums and "ChecksumSHA256" in result:
                completed["ChecksumSHA256"] = result["ChecksumSHA256"]
            return completed
        body = b"".join(read(segment) for segment in part.segments)
        if not checksums:
            uploaded = s3.upload_part(
                Bucket=bucket, Key=target_key, UploadId=upload_id, PartNumber=number, Body=body
            )
            return {"PartNumber": number, "ETag": uploaded["ETag"]}
        checksum = part_checksum(body)
        uploaded = s3.upload_part(
            Bucket=bucket,
            Key=target_key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            ChecksumSHA256=checksum,
        )
        return {"PartNumber": number, "ETag": uploaded["ETag"], "ChecksumSHA256": checksum}

    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS, thread_name_prefix="s3-concat") as pool:
        futures = [pool.submit(upload, number, part) for number, part in enumerate(plan, start=1)]
        try:
            completed = [future.result() for future in futures]
        except BaseException:
            for future in futures:  # the caller aborts the upload: don't start parts nobody will use
                future.cancel()
            raise

    copied_bytes = sum(part.size for part in plan if isinstance(part, Copy))
    size = sum(source.size for source in sources) + len(tail)
    stats = ConcatStats(
        parts=len(plan),
        copied_bytes=copied_bytes,
        stitched_bytes=size - copied_bytes - len(tail),
        size=size,
    )
    return completed, stats


def _byte_range(start: int, end: int) -> str:
    """HTTP range of [start, end) (its end is inclusive)."""
    return f"bytes={start}-{end - 1}"
