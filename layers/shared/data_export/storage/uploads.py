"""Uploaded archives of imports in the exports bucket (``imports/<organization>/<import>/``), and the
writes an import makes to the organization's stores.

The archive is uploaded by the client straight to S3 with presigned URLs: one PUT for small archives, or a
multipart upload whose parts can be uploaded (and re-uploaded) in any order, so that a big upload resumes.
Runs read it pinned to the ETag it had when the import was started (If-Match), so it cannot change under
them."""

from __future__ import annotations

import io
import json
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any

from data_export.storage.layout import partition_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024
SINGLE_PUT_MAX_BYTES = 64 * MIB  # bigger archives are uploaded in parts
MIN_PART_BYTES = 16 * MIB
MAX_PARTS = 1000  # S3 allows 10,000; 1,000 keeps the answer listing every part's URL under 1 MB
MAX_ARCHIVE_BYTES = 5 * 1024 * 1024 * MIB  # 5 TiB: S3's largest object
READ_BUFFER_BYTES = 8 * MIB
_THREADS = 8


def import_prefix(organization_id: str, import_id: str) -> str:
    return f"imports/{organization_id}/{import_id}/"


def part_size_for(size_bytes: int, min_part_bytes: int = MIN_PART_BYTES) -> int:
    """Parts of whole MiB, at least ``min_part_bytes``, and few enough for MAX_PARTS."""
    needed = -(-size_bytes // MAX_PARTS)
    return max(min_part_bytes, -(-needed // MIB) * MIB)


def part_layout(size_bytes: int, part_size: int) -> list[tuple[int, int, int]]:
    """The parts of a multipart upload: (part number, offset, size), every part but the last full."""
    return [
        (number, offset, min(part_size, size_bytes - offset))
        for number, offset in enumerate(range(0, size_bytes, part_size), start=1)
    ]


def missing_parts(layout: list[tuple[int, int, int]], uploaded: dict[int, dict[str, Any]]) -> list[int]:
    """The part numbers of ``layout`` that S3 lacks, or holds with another size."""
    return [number for number, _, size in layout if uploaded.get(number, {}).get("Size") != size]


class ArchiveNotUploadedError(Exception):
    """The archive is not (wholly) in S3: parts are missing, or its size is not the one declared."""

    def __init__(self, message: str, missing_parts: list[int] | None = None) -> None:
        super().__init__(message)
        self.missing_parts = missing_parts or []


class UploadedArchives:
    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    # -- the upload -----------------------------------------------------------------------------------
    def create_multipart(self, key: str) -> str:
        return self._client.create_multipart_upload(Bucket=self._bucket, Key=key)["UploadId"]

    @staticmethod
    def presign_put(signing_s3: S3Client, bucket: str, key: str, expires_in: int) -> str:
        return signing_s3.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in
        )

    @staticmethod
    def presign_part(
        signing_s3: S3Client, bucket: str, key: str, upload_id: str, part_number: int, expires_in: int
    ) -> str:
        return signing_s3.generate_presigned_url(
            "upload_part",
            Params={"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": part_number},
            ExpiresIn=expires_in,
        )

    @property
    def bucket(self) -> str:
        return self._bucket

    def uploaded_parts(self, key: str, upload_id: str) -> dict[int, dict[str, Any]]:
        parts: dict[int, dict[str, Any]] = {}
        marker = 0
        while True:
            response = self._client.list_parts(
                Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
            )
            for part in response.get("Parts", []):
                parts[part["PartNumber"]] = {"ETag": part["ETag"], "Size": part["Size"]}
            if not response.get("IsTruncated"):
                return parts
            marker = int(response["NextPartNumberMarker"])

    def complete(self, key: str, upload_id: str, size_bytes: int, part_size: int) -> None:
        """Complete the multipart upload once every part is there with its expected size."""
        parts = self.uploaded_parts(key, upload_id)
        layout = part_layout(size_bytes, part_size)
        count = len(layout)
        missing = missing_parts(layout, parts)
        if missing or len(parts) != count:
            raise ArchiveNotUploadedError(
                f"{len(missing)} of {count} parts are missing or of the wrong size", missing
            )
        self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": parts[n]["ETag"]} for n in range(1, count + 1)]
            },
        )

    def abort(self, key: str, upload_id: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise

    def head(self, key: str) -> tuple[int, str] | None:
        """Size and ETag of the object, None when absent."""
        from botocore.exceptions import ClientError

        try:
            response = self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return response["ContentLength"], response["ETag"]

    def delete(self, *keys: str) -> None:
        for key in keys:
            self._client.delete_object(Bucket=self._bucket, Key=key)

    # -- reading it ----------------------------------------------------------------------------------
    def head_bytes(self, key: str, etag: str, count: int) -> bytes:
        response = self._client.get_object(
            Bucket=self._bucket, Key=key, IfMatch=etag, Range=f"bytes=0-{count - 1}"
        )
        return response["Body"].read()

    def open_stream(self, key: str, etag: str) -> IO[bytes]:
        """The archive from its first byte, read as it streams (tar.gz)."""
        body = self._client.get_object(Bucket=self._bucket, Key=key, IfMatch=etag)["Body"]
        return io.BufferedReader(_StreamingRaw(body), buffer_size=READ_BUFFER_BYTES)

    def open_seekable(self, key: str, etag: str, size: int) -> IO[bytes]:
        """The archive with random access by ranged GETs (zip: its central directory is at the end)."""
        return io.BufferedReader(
            _RangedRaw(self._client, self._bucket, key, etag, size), buffer_size=READ_BUFFER_BYTES
        )

    def put_json(self, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType="application/json")

    def get_json(self, key: str) -> bytes:
        return self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()


class _StreamingRaw(io.RawIOBase):
    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


class _RangedRaw(io.RawIOBase):
    def __init__(self, client: S3Client, bucket: str, key: str, etag: str, size: int) -> None:
        self._client, self._bucket, self._key, self._etag, self._size = client, bucket, key, etag, size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        if self._position >= self._size or not len(buffer):
            return 0
        end = min(self._position + len(buffer), self._size) - 1
        data = self._client.get_object(
            Bucket=self._bucket, Key=self._key, IfMatch=self._etag, Range=f"bytes={self._position}-{end}"
        )["Body"].read()
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


class ImportTarget:
    """The organization's stores as an import sees them: which records and binaries exist, and writing."""

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        s3: S3Client,
        assets_bucket: str,
        *,
        single_put_max_bytes: int = SINGLE_PUT_MAX_BYTES,
        part_bytes: int = MIN_PART_BYTES,
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._s3 = s3
        self._bucket = assets_bucket
        self._single_put_max_bytes = single_put_max_bytes
        self._part_bytes = part_bytes

    def existing_records(
        self, organization_id: str, section: str, ids: Collection[str]
    ) -> dict[str, dict[str, Any]]:
        """The records of ``section`` among ``ids`` (strongly consistent: what an apply just wrote counts)."""
        found: dict[str, dict[str, Any]] = {}
        keys = [
            {"partition": {"S": partition_key(organization_id, section)}, "record_id": {"S": record_id}}
            for record_id in sorted(ids)
        ]
        for start in range(0, len(keys), 100):
            pending: Mapping[str, Any] = {
                self._table: {"Keys": keys[start : start + 100], "ConsistentRead": True}
            }
            attempt = 0
            while pending:
                response = self._dynamodb.batch_get_item(RequestItems=pending)
                for item in response["Responses"].get(self._table, []):
                    found[item["record_id"]["S"]] = json.loads(item["record"]["S"])
                pending = response.get("UnprocessedKeys") or {}
                attempt += 1
                if pending:
                    import time

                    time.sleep(min(0.05 * 2**attempt, 2.0))
        return found

    def existing_objects(self, keys: Collection[str]) -> set[str]:
        from botocore.exceptions import ClientError

        def exists(key: str) -> bool:
            try:
                self._s3.head_object(Bucket=self._bucket, Key=key)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
            return True

        with ThreadPoolExecutor(_THREADS) as pool:
            return {key for key, present in zip(keys, pool.map(exists, keys), strict=True) if present}

    def put_object(self, key: str, body: IO[bytes], size: int) -> None:
        """One binary: one PUT up to the single-PUT size, else streamed in parts (boto3's managed transfer,
        which aborts the multipart upload if a part fails)."""
        if size <= self._single_put_max_bytes:
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=body.read())
            return
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=self._single_put_max_bytes + 1,
            multipart_chunksize=self._part_bytes,
            max_concurrency=4,
        )
        self._s3.upload_fileobj(body, self._bucket, key, Config=config)

    def put_record(
        self, organization_id: str, section: str, record: dict[str, Any], *, replace: bool
    ) -> bool:
        """Write one record; without ``replace`` only where none exists. False when one did (left alone)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "Item": {
                "partition": {"S": partition_key(organization_id, section)},
                "record_id": {"S": str(record["id"])},
                "record": {"S": json.dumps(record, separators=(",", ":"), ensure_ascii=False)},
            },
        }
        if not replace:
            request["ConditionExpression"] = "attribute_not_exists(record_id)"
        try:
            self._dynamodb.put_item(**request)
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def put_records(self, organization_id: str, section: str, records: list[dict[str, Any]]) -> None:
        """Write up to 25 records of one section whatever exists (BatchWriteItem), retrying what DynamoDB
        leaves unprocessed."""
        import time

        pending: list[Any] = [
            {
                "PutRequest": {
                    "Item": {
                        "partition": {"S": partition_key(organization_id, section)},
                        "record_id": {"S": str(record["id"])},
                        "record": {"S": json.dumps(record, separators=(",", ":"), ensure_ascii=False)},
                    }
                }
            }
            for record in records
        ]
        attempt = 0
        while pending:
            response = self._dynamodb.batch_write_item(RequestItems={self._table: pending})
            pending = list(response.get("UnprocessedItems", {}).get(self._table, []))
            attempt += 1
            if pending:
                if attempt >= 10:
                    raise RuntimeError(f"{len(pending)} records left unprocessed after {attempt} attempts")
                time.sleep(min(0.05 * 2**attempt, 2.0))
