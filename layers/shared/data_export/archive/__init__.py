"""Streaming archive writers (zip in ``archive.zip``, tar.gz in ``archive.tar``).

This module holds what both formats share: the sink protocol, the entry-name
safety check and the batching, offset-counting output.
"""

from __future__ import annotations

import re
import struct
from typing import NoReturn, Protocol

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
# The whole rule in one pass, for the common case: components of allowed characters, none "." or "..".
_SAFE_NAME = re.compile(r"(?:(?!\.\.?/)[^\x00-\x1f\x7f-\x9f\\/]+/)*(?!\.\.?\Z)[^\x00-\x1f\x7f-\x9f\\/]+")


def check_entry_name(name: str) -> bytes:
    """Return ``name`` as UTF-8 if it is a safe relative archive path, else raise ValueError.

    Callers pass sanitized names already; this is defence in depth so that no
    archive we produce can write outside the extraction folder.
    """
    if _SAFE_NAME.fullmatch(name) is None:
        _raise_unsafe(name)
    try:
        return name.encode("utf-8")  # strict: lone surrogates are rejected
    except UnicodeEncodeError as exc:
        raise ValueError(f"archive entry name is not valid Unicode: {name!r}") from exc


def _raise_unsafe(name: str) -> NoReturn:
    """Say what is wrong with a name that ``_SAFE_NAME`` rejected."""
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
    raise ValueError(f"archive entry name has an empty, '.' or '..' component: {name!r}")


class BatchingWriter:
    """Counts bytes written and merges small writes, because a sink may be slow per call.

    Small writes are kept (bytes by reference, anything else copied) and handed
    over joined once they add up to ``batch_size``. Writes of at least
    ``direct_size`` go straight through after what is pending, so big payloads
    are never copied here: a copy costs as much as the CRC and the sink's own
    copy together.
    """

    def __init__(
        self, sink: Writable, *, offset: int = 0, batch_size: int = 1 << 20, direct_size: int = 32 << 10
    ) -> None:
        self._sink = sink
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._batch_size = batch_size
        self._direct_size = direct_size
        self.offset = offset

    def write(self, data: BytesLike) -> None:
        size = len(data)
        if not size:
            return
        self.offset += size
        if size >= self._direct_size:
            self.flush()
            self._sink.write(data)
            return
        # A caller may reuse a bytearray or a memoryview's buffer once write returns: keep a copy of those.
        self._pending.append(data if type(data) is bytes else bytes(data))
        self._pending_size += size
        if self._pending_size >= self._batch_size:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            pending = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending, self._pending_size = [], 0
            self._sink.write(pending)


class StoredBlockFramer:
    """Frames raw bytes as deflate stored blocks (RFC 1951, 3.2.4): full 64 KiB blocks but the last.

    A "compressed" stream at memory speed, for content that deflate cannot shrink (images, PDFs...).
    Framing needs one copy anyway, so blocks are assembled into ~1 MiB writes.
    """

    MAX_BLOCK = 0xFFFF
    FINAL_EMPTY_BLOCK = struct.pack("<BHH", 1, 0, 0xFFFF)
    _HEADER = struct.Struct("<BHH")  # BFINAL=0 BTYPE=00 (byte-aligned), LEN, NLEN=~LEN
    _WRITE_SIZE = 1 << 20

    def __init__(self, out: BatchingWriter) -> None:
        self._out = out
        self._framed = bytearray()
        self._header_at = 0  # where the open block's header goes in _framed
        self._room = 0  # bytes the open block can still take; 0: no block open

    def write(self, data: BytesLike) -> None:
        view = memoryview(data).cast("B")
        while view:
            if not self._room:
                if len(self._framed) >= self._WRITE_SIZE:
                    self._hand_over()
                self._header_at = len(self._framed)
                self._framed += bytes(self._HEADER.size)  # filled in when the block is sealed
                self._room = self.MAX_BLOCK
            taken = view[: self._room]
            self._framed += taken
            self._room -= len(taken)
            view = view[len(taken) :]
            if not self._room:
                self._seal(self.MAX_BLOCK)

    def finish(self, *, final: bool) -> None:
        """Write what is left; ``final`` ends the deflate stream (else more blocks may follow)."""
        if self._room:
            self._seal(self.MAX_BLOCK - self._room)
            self._room = 0
        if final:
            self._framed += self.FINAL_EMPTY_BLOCK
        self._hand_over()

    def _seal(self, size: int) -> None:
        self._HEADER.pack_into(self._framed, self._header_at, 0, size, ~size & 0xFFFF)

    def _hand_over(self) -> None:
        if self._framed:
            framed, self._framed = self._framed, bytearray()
            self._out.write(framed)
