"""Streaming archive writers (zip in ``archive.zip``, tar.gz in ``archive.tar``).

This module holds what both formats share: the sink protocol, the entry-name
safety check and the batching, offset-counting output.
"""

from __future__ import annotations

import re
from typing import Protocol

BytesLike = bytes | bytearray | memoryview


class Writable(Protocol):
    """Where an archive goes: a file, a socket, an S3 multipart uploader...

    Writers only ever call ``write``; they never seek or read back. They never
    modify a buffer after handing it over, so a sink may keep references to it.
    """

    def write(self, data: BytesLike, /) -> object: ...


class ArchiveError(Exception):
    """Base class of the archive writers' own errors."""


class ContentMismatchError(ArchiveError, ValueError):
    """Streamed content did not match the size or CRC-32 declared for it.

    Bytes of the entry were already written, so the archive is unusable: the
    writer refuses further use and the caller must discard the output.
    """


class WriterBrokenError(ArchiveError, RuntimeError):
    """A previous entry failed halfway; the output is incomplete and must be discarded."""


# Cc controls: C0, DEL and C1.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_entry_name(name: str) -> bytes:
    """Return ``name`` as UTF-8 if it is a safe relative archive path, else raise ValueError.

    Callers pass sanitized names already; this is defence in depth so that no
    archive we produce can write outside the extraction folder.
    """
    if not name:
        raise ValueError("archive entry name is empty")
    if _CONTROL.search(name):
        raise ValueError(f"archive entry name has a control character: {name!r}")
    if "\\" in name:
        raise ValueError(f"archive entry name has a backslash: {name!r}")
    if name.startswith("/"):
        raise ValueError(f"archive entry name is absolute: {name!r}")
    if name.endswith("/"):
        raise ValueError(f"archive entry name ends with '/': {name!r}")
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"archive entry name has an empty, '.' or '..' component: {name!r}")
    try:
        return name.encode("utf-8")  # strict: lone surrogates are rejected
    except UnicodeEncodeError as exc:
        raise ValueError(f"archive entry name is not valid Unicode: {name!r}") from exc


class BatchingWriter:
    """Counts bytes written and merges small writes, because a sink may be slow per call.

    Writes of at least ``batch_size`` bytes go straight through (after what is
    pending), so big payloads are never copied.
    """

    def __init__(self, sink: Writable, *, offset: int = 0, batch_size: int = 1 << 20) -> None:
        self._sink = sink
        self._pending = bytearray()
        self._batch_size = batch_size
        self.offset = offset

    def write(self, data: BytesLike) -> None:
        size = len(data)
        if not size:
            return
        self.offset += size
        if len(self._pending) + size < self._batch_size:
            self._pending += data
            return
        self.flush()
        if size >= self._batch_size:
            self._sink.write(data)
        else:
            self._pending += data

    def flush(self) -> None:
        if self._pending:
            # Hand over this buffer and start a new one, so the sink may keep it.
            pending, self._pending = self._pending, bytearray()
            self._sink.write(pending)
