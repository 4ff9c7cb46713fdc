"""S3 access: reading assets, writing the archive as a multipart upload, presigning its download.

Every multipart upload is created with ``ChecksumAlgorithm=SHA256``: each part carries its SHA-256, S3 checks
it on arrival and keeps a checksum of the whole object (the SHA-256 of the parts' SHA-256s, "-N" for N
parts) that anyone can read back with ``head-object --checksum-mode ENABLED``."""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from data_export.settings import MIB

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from data_export.storage.concat import SourceObject

READ_CHUNK = 1 * MIB
MAX_PARTS = 10_000
CHECKSUM_ALGORITHM: Final = "SHA256"
# The digest pass over a finished object: ranges of this size, this many fetched ahead (memory: their sum).
DIGEST_RANGE = 8 * MIB
DIGEST_READ_AHEAD = 8


def part_checksum(data: bytes | bytearray | memoryview) -> str:
    """A part's ChecksumSHA256 as S3 wants it: the base64 of its SHA-256."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class Asset:
    size: int
    chunks: Iterator[bytes]
    # Releases the response when the chunks will not be read to the end (a read ahead that is never taken).
    close: Callable[[], None] = _nothing
    # The same object's bytes from an offset on, to resume a read that broke off (None: cannot resume).
    # Raises ContentMismatchError if the object changed since it was opened.
    reopen: Callable[[int], Asset] | None = None


# What a ranged re-read of an asset, If-Match its first read's ETag, gets when the object changed meanwhile.
_CHANGED_WHILE_READ = frozenset({"PreconditionFailed", "NoSuchKey", "InvalidRange"})


class AssetStore:
    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def open(self, key: str) -> Asset | None:
        """Stream an asset; None when the object is missing."""
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=key)
        except self._client.exceptions.NoSuchKey:
            return None
        body, etag = response["Body"], response["ETag"]
        return Asset(
            size=response["ContentLength"],
            chunks=body.iter_chunks(READ_CHUNK),
            close=body.close,
            reopen=lambda offset: self._open_from(key, offset, etag),
        )

    def _open_from(self, key: str, offset: int, etag: str) -> Asset:
        """The object's bytes from ``offset`` on (a ranged GetObject), only if it is still the version
        first read (If-Match its ETag): a changed or deleted object raises ContentMismatchError."""
        from botocore.exceptions import ClientError

        from data_export.archive import ContentMismatchError

        try:
            response = self._client.get_object(
                Bucket=self._bucket, Key=key, Range=f"bytes={offset}-", IfMatch=etag
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _CHANGED_WHILE_READ:
                raise ContentMismatchError(f"asset {key} changed while it was read") from exc
            raise
        body = response["Body"]
        return Asset(size=response["ContentLength"], chunks=body.iter_chunks(READ_CHUNK), close=body.close)


def part_size_for(part_number: int, base: int) -> int:
    """Grow parts as the archive grows: 1,000 parts at base, 1,000 at 2x base, ... so 10,000 parts of an
    8 MiB base hold ~430 GiB without knowing the archive's size up front."""
    return base * (1 + (part_number - 1) // 1000)


class MultipartWriter:
    """A write-only, never-seeking file-like sink that streams into an S3 multipart upload (created with
    SHA-256 part checksums, see the module docstring).

    With ``digest=True`` it also computes the SHA-256 of everything written (``sha256``), on a thread of its
    own that takes the parts in order, so hashing overlaps the caller's work instead of adding to it.
    Memory stays bounded: one part being filled plus at most ``max_in_flight`` parts uploading or hashing."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        upload_id: str,
        *,
        part_size: int,
        max_in_flight: int = 2,
        digest: bool = False,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self.upload_id = upload_id
        self._base_part_size = part_size
        self._buffer = bytearray()
        self._parts: list[Future[dict[str, object]]] = []
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="s3-part")
        self._max_in_flight = max_in_flight
        self._digest = hashlib.sha256() if digest else None
        # One thread: it hashes the parts in the order they were queued.
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") if digest else None
        self._hashing: deque[Future[None]] = deque()
        self._completed = False
        self.bytes_written = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buffer += data
        self.bytes_written += len(data)
        while len(self._buffer) >= self._next_part_size():
            size = self._next_part_size()
            part = bytes(self._buffer[:size])
            del self._buffer[:size]
            self._upload(part)
        return len(data)

    def _next_part_size(self) -> int:
        return part_size_for(len(self._parts) + 1, self._base_part_size)

    def _upload(self, data: bytes) -> None:
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise ValueError("archive exceeds S3's 10,000-part limit")
        # Back-pressure: wait for the oldest upload before queueing more than max_in_flight.
        pending = [part for part in self._parts if not part.done()]
        if len(pending) >= self._max_in_flight:
            pending[0].result()
        if self._hasher is not None and self._digest is not None:
            while len(self._hashing) >= self._max_in_flight:
                self._hashing.popleft().result()
            self._hashing.append(self._hasher.submit(self._digest.update, data))
        self._parts.append(self._pool.submit(self._upload_part, number, data))

    def _upload_part(self, number: int, data: bytes) -> dict[str, object]:
        checksum = part_checksum(data)
        response = self._client.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            ChecksumSHA256=checksum,
        )
        return {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum}

    def complete(self) -> int:
        """Upload what is left as the last part, complete the upload and return the object's size."""
        if self._buffer or not self._parts:
            self._upload(bytes(self._buffer))
            self._buffer.clear()
        try:
            parts = [future.result() for future in self._parts]
            while self._hashing:
                self._hashing.popleft().result()
        finally:
            self.close_pool()
        self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
        )
        self._completed = True
        return self.bytes_written

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of every byte written (``digest=True``); complete first."""
        if self._digest is None:
            raise ValueError("this writer was created without digest=True")
        if not self._completed:
            raise ValueError("the digest is known once the upload is complete")
        return self._digest.hexdigest()

    def close_pool(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._hasher is not None:
            self._hasher.shutdown(wait=True, cancel_futures=True)


class ExportStore:
    """The exports bucket: archives being built and built."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def start_upload(
        self, key: str, content_type: str, *, part_size: int, digest: bool = False
    ) -> MultipartWriter:
        upload_id = self.create_upload(key, content_type)
        return MultipartWriter(self._client, self._bucket, key, upload_id, part_size=part_size, digest=digest)

    def create_upload(self, key: str, content_type: str) -> str:
        """A multipart upload whose parts carry SHA-256 checksums."""
        return self._client.create_multipart_upload(
            Bucket=self._bucket, Key=key, ContentType=content_type, ChecksumAlgorithm=CHECKSUM_ALGORITHM
        )["UploadId"]

    def concatenate(self, sources: Sequence[SourceObject], tail: bytes, key: str, upload_id: str) -> int:
        """Complete ``upload_id`` (from ``create_upload``) as the sources' bytes followed by ``tail``,
        copied server-side."""
        from data_export.storage.concat import concatenate  # concat builds on this module's limits

        parts, stats = concatenate(
            self._client,
            bucket=self._bucket,
            sources=sources,
            tail=tail,
            target_key=key,
            upload_id=upload_id,
            checksums=True,
        )
        self._client.complete_multipart_upload(
            Bucket=self._bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        return stats.size

    def checksum_sha256(self, key: str) -> str | None:
        """The object's checksum as S3 keeps it (base64; a multipart object's is a checksum of its parts'
        checksums), or None when it has none."""
        head = self._client.head_object(Bucket=self._bucket, Key=key, ChecksumMode="ENABLED")
        return head.get("ChecksumSHA256")

    def sha256(self, key: str, size: int, *, every_range: Callable[[int], None] = lambda done: None) -> str:
        """Hex SHA-256 of the first ``size`` bytes of an object, read once in ranged GETs.

        ``DIGEST_READ_AHEAD`` ranges are fetched ahead on a small pool while the current one is hashed, in
        order, so memory stays at a few ranges whatever the size. ``every_range`` is called with the bytes
        hashed so far after each range (a caller may raise from it to stop)."""
        digest = hashlib.sha256()
        starts = iter(range(0, size, DIGEST_RANGE))

        def read(start: int) -> bytes:
            end = min(start + DIGEST_RANGE, size)
            body = self._client.get_object(Bucket=self._bucket, Key=key, Range=f"bytes={start}-{end - 1}")
            data = body["Body"].read()
            if len(data) != end - start:
                raise ValueError(f"{key}: read {len(data)} bytes at {start}, expected {end - start}")
            return data

        pool = ThreadPoolExecutor(max_workers=DIGEST_READ_AHEAD, thread_name_prefix="s3-digest")
        try:
            ahead = deque(pool.submit(read, start) for start in islice(starts, DIGEST_READ_AHEAD))
            done = 0
            while ahead:
                data = ahead.popleft().result()
                following = next(starts, None)
                if following is not None:
                    ahead.append(pool.submit(read, following))
                digest.update(data)
                done += len(data)
                every_range(done)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return digest.hexdigest()

    def put_bytes(self, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self._bucket, Key=key, Body=data)

    def get_bytes(self, key: str) -> bytes:
        return self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()

    def delete_prefix(self, prefix: str) -> None:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self._client.delete_objects(Bucket=self._bucket, Delete={"Objects": keys, "Quiet": True})  # type: ignore[typeddict-item]

    def discard(self, *prefixes: str) -> None:
        """Leave nothing under these prefixes: abort their multipart uploads, delete their objects."""
        for prefix in prefixes:
            self.abort_uploads_under(prefix)
            self.delete_prefix(prefix)

    def abort_uploads_under(self, prefix: str) -> None:
        paginator = self._client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                self.abort_upload(upload["Key"], upload["UploadId"])

    def abort_upload(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(self._client.exceptions.NoSuchUpload):  # already aborted or completed
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self._bucket, Key=key)

    def presign_download(self, key: str, filename: str, expires_in: int) -> str:
        return self._client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self._bucket,
                "Key": key,
                "ResponseContentDisposition": content_disposition(filename),
            },
            ExpiresIn=expires_in,
        )


def content_disposition(filename: str) -> str:
    """RFC 6266 attachment header; an exact UTF-8 name rides along only when the name is not plain ASCII."""
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace('"', "_").replace("?", "_")
    header = f'attachment; filename="{ascii_name}"'
    return header if ascii_name == filename else f"{header}; filename*=UTF-8''{quote(filename)}"
