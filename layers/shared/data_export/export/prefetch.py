"""Reading a section's assets ahead of the archive writer.

Against S3 each GET waits tens of milliseconds for its first byte; read one after another, that wait adds up
to minutes for an export of thousands of images. ``AssetPrefetcher`` looks a few records ahead and has their
assets' GETs on their way while the current record's binaries and YAML are written.

- Order and bytes: assets are handed out in the order the records name them, as the writer asks for them,
  so the archive is byte for byte what it would be without read-ahead.
- Memory, whatever the export's size: at most ``max_in_flight`` reads outstanding (sent and not yet taken by
  the writer) and at most ``budget`` bytes buffered by them. An asset is read whole ahead only when its
  record says it is small (up to READ_WHOLE_LIMIT and the budget; the bytes are reserved before the GET is
  sent) and it is: small images and documents are what per-request latency slows down. Any other is only
  opened ahead (its GET answered, which is the latency) and streams through in order when its turn comes,
  as it would without read-ahead: buffering big assets ahead would cost several times their size in peak
  memory (each read's chunks and their join, per thread) for a transfer that is not latency-bound.
- Outcomes as without read-ahead: a missing asset is None; a read that failed raises when its asset's turn
  comes, so the same record and section fail. Reads never taken (the build stopped) are dropped: ``close``
  (or leaving the ``with`` block) cancels them, closes their responses and waits for the threads to end.
- Idle responses: an asset opened ahead waits, its connection idle, while the assets before it stream; S3
  may close it meanwhile. A read that breaks off (connection reset or closed, read timeout, fewer bytes
  than announced) resumes where it stopped: the object is opened again from the bytes already taken (a
  ranged GET, If-Match its ETag, so that a changed object fails the read instead of mixing two versions),
  up to MAX_RESUMES times per asset. The bytes handed out are the same as from one unbroken read.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aws_lambda_powertools import Logger

from data_export.errors import is_stream_reset
from data_export.settings import MIB
from data_export.storage.objects import READ_CHUNK, Asset

logger = Logger(child=True)

# GETs in flight: with the multipart upload's 2 part uploads, well within the S3 client's 16 connections.
READ_AHEAD = 8
READ_AHEAD_BYTES = 8 * MIB
# Assets up to one read chunk are read whole ahead: one chunk, which the join passes on without a copy.
READ_WHOLE_LIMIT = READ_CHUNK
# Records looked at ahead to find the next assets (records are small; sections without assets skip this).
RECORDS_AHEAD = 64
# Times one asset's read may break off and resume before its failure is the section's.
MAX_RESUMES = 3


class _ResumingChunks:
    """An asset's chunks that survive the read breaking off: each break reopens the object from the bytes
    already handed out (``Asset.reopen``), up to MAX_RESUMES times."""

    def __init__(self, asset: Asset) -> None:
        self._asset = asset
        self._current = asset  # the response being read: the first, or the last reopened
        self.resumes = 0

    def __iter__(self) -> Iterator[bytes]:
        done = 0
        while True:
            try:
                for chunk in self._current.chunks:
                    done += len(chunk)
                    yield chunk
                return
            except Exception as exc:
                if not is_stream_reset(exc) or self._asset.reopen is None or self.resumes >= MAX_RESUMES:
                    raise
                self.resumes += 1
                logger.warning(  # not the key: it may hold a file name, which is the organization's data
                    "Asset read broke off; resuming",
                    extra={
                        "offset": done,
                        "size": self._asset.size,
                        "resume": self.resumes,
                        "error": type(exc).__name__,
                    },
                )
                self.close()
                if done >= self._asset.size:
                    return
                self._current = self._asset.reopen(done)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a response already broken may fail to close too
            self._current.close()


def resuming(asset: Asset) -> Asset:
    """The asset, its chunks resumed where they stop if the read breaks off (as-is if it cannot reopen)."""
    if asset.reopen is None:
        return asset
    chunks = _ResumingChunks(asset)
    return Asset(size=asset.size, chunks=iter(chunks), close=chunks.close)


def asset_keys(fields: dict[str, bool], record: dict[str, Any]) -> Iterator[tuple[str, object]]:
    """The record's asset keys and recorded sizes, in the order ``sections.export_record`` opens them."""
    for name, is_list in fields.items():
        value = record.get(name)
        if value:
            for ref in value if is_list else [value]:
                yield str(ref["asset_key"]), ref.get("size_bytes")


@dataclass
class _Read:
    key: str
    reserve: int  # bytes of the budget held for it: it is read whole ahead only if it fits
    future: Future[Asset | None] | None = None  # None until sent
    buffered: int = 0  # bytes it holds once read whole


class AssetPrefetcher:
    """Reads the assets of the records that ``records`` yields ahead of ``open``, which takes them in turn."""

    def __init__(
        self,
        open_asset: Callable[[str], Asset | None],
        fields: dict[str, bool],
        *,
        max_in_flight: int = READ_AHEAD,
        budget: int = READ_AHEAD_BYTES,
        records_ahead: int = RECORDS_AHEAD,
    ) -> None:
        self._open_asset = open_asset
        self._fields = fields
        self._max_in_flight = max(1, max_in_flight)
        self._budget = budget
        self._records_ahead = records_ahead
        self._reads: deque[_Read] = deque()  # named by the records pulled so far, not yet taken, in order
        self._in_flight = 0  # sent, not yet taken
        self._reserved = 0
        self._pool = ThreadPoolExecutor(max_workers=self._max_in_flight, thread_name_prefix="asset-read")
        self._lock = threading.Lock()  # over the buffered bytes, which the reading threads add to
        self._buffered = 0
        self.peak_buffered = 0  # the most bytes held by reads ahead at any moment (the budget bounds it)

    def __enter__(self) -> AssetPrefetcher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def records(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The records, unchanged and in order, each one's assets (and the next records') sent for first."""
        source = iter(records)
        ahead: deque[dict[str, Any]] = deque()
        while True:
            # Enough records ahead to keep every read slot busy, within a bound.
            while len(ahead) < self._records_ahead and len(self._reads) < self._max_in_flight:
                record = next(source, None)
                if record is None:
                    break
                ahead.append(record)
                for key, size in asset_keys(self._fields, record):
                    self._reads.append(_Read(key, self._reservation(size)))
            self._send()
            if not ahead:
                return
            yield ahead.popleft()

    def open(self, key: str) -> Asset | None:
        """The next asset, which must be ``key``: None when missing; a failed read raises here."""
        self._send()
        if not self._reads:
            raise AssertionError(f"asset {key} asked for before its record was read")
        read = self._reads.popleft()
        if read.key != key or read.future is None:
            raise AssertionError(f"asset {key} asked for out of turn (next: {read.key})")
        try:
            return read.future.result()
        finally:
            self._in_flight -= 1
            self._reserved -= read.reserve
            with self._lock:
                self._buffered -= read.buffered
            self._send()

    def close(self) -> None:
        """Cancel the reads not yet sent, wait for the others, close the responses no one will read."""
        for read in self._reads:
            if read.future is not None:
                read.future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for read in self._reads:
            future = read.future
            if future is not None and not future.cancelled() and future.exception() is None:
                asset = future.result()
                if asset is not None:
                    asset.close()
        self._reads.clear()

    def _reservation(self, recorded_size: object) -> int:
        """Bytes to hold for a read: its recorded size if it may be read whole ahead, else 0 (it streams)."""
        limit = min(READ_WHOLE_LIMIT, self._budget)
        if isinstance(recorded_size, int) and 0 <= recorded_size <= limit:
            return recorded_size
        return 0

    def _send(self) -> None:
        """Send the next reads, in order, while the read slots and the budget allow."""
        for read in self._reads:
            if read.future is not None:
                continue
            if self._in_flight >= self._max_in_flight or self._reserved + read.reserve > self._budget:
                return
            self._in_flight += 1
            self._reserved += read.reserve
            read.future = self._pool.submit(self._read, read)

    def _read(self, read: _Read) -> Asset | None:
        asset = self._open_asset(read.key)
        if asset is None:
            return None
        asset = resuming(asset)
        if asset.size > read.reserve:
            return asset  # bigger than its record said (or not read whole ahead): it streams in its turn
        data = b"".join(asset.chunks)
        with self._lock:
            self._buffered += len(data)
            self.peak_buffered = max(self.peak_buffered, self._buffered)
        read.buffered = len(data)
        return Asset(size=asset.size, chunks=iter((data,)))
