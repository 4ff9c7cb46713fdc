"""Streaming tar.gz writer: PAX headers, one gzip member per writer, never seeks.

Chunked builds: concatenated gzip members form one valid gzip stream, so each
chunk is written by its own writer; every chunk but the last is closed with
``end_of_archive=False`` so that only the last one ends the tar archive.
"""

from __future__ import annotations

import math
import tarfile
from collections.abc import Iterable
from types import TracebackType

from data_export.archive import (
    BatchingWriter,
    BytesLike,
    ContentMismatchError,
    Writable,
    WriterBrokenError,
    check_entry_name,
)
from data_export.archive.compression import DeflateBackend, get_backend

BLOCK_SIZE = tarfile.BLOCKSIZE
_END_OF_ARCHIVE = bytes(2 * BLOCK_SIZE)


def tar_header(name: str, size: int, mtime: float) -> bytes:
    """The PAX-format header of a regular file: mode 0644, owned by uid/gid 0 with no names.

    PAX records carry what ustar cannot: long or non-ASCII names, sizes >= 8 GiB.
    """
    check_entry_name(name)
    info = tarfile.TarInfo(name)
    info.type = tarfile.REGTYPE
    info.size = size
    info.mtime = math.floor(mtime)  # a float mtime would add a PAX record to every entry
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


class TarGzStreamWriter:
    """Writes one gzip member holding tar entries to ``sink``.

    ``level`` is a zlib-scale compression level (default: fast).
    """

    def __init__(
        self, sink: Writable, *, level: int | None = None, backend: DeflateBackend | None = None
    ) -> None:
        self._out = BatchingWriter(sink)
        self._compressor = (backend or get_backend()).gzip_member(level)
        self._tar_size = 0
        self._in_entry = False  # stays True if an entry failed halfway
        self._closed = False

    @property
    def uncompressed_size(self) -> int:
        """Tar bytes produced so far."""
        return self._tar_size

    @property
    def compressed_size(self) -> int:
        """Bytes handed to the sink so far, or pending for it (all of them after close)."""
        return self._out.offset

    def add_bytes(self, name: str, data: BytesLike, *, mtime: float) -> None:
        header = tar_header(name, len(data), mtime)
        self._begin()
        self._feed(header)
        self._feed(data)
        self._pad(len(data))
        self._in_entry = False

    def add_stream(self, name: str, chunks: Iterable[BytesLike], *, size: int, mtime: float) -> None:
        """Stream an entry of ``size`` bytes; ContentMismatchError if the chunks add up to another size."""
        header = tar_header(name, size, mtime)
        self._begin()
        self._feed(header)
        written = 0
        for chunk in chunks:
            written += len(chunk)
            if written > size:
                raise ContentMismatchError(f"{name}: content is longer than the declared {size} bytes")
            self._feed(chunk)
        if written != size:
            raise ContentMismatchError(f"{name}: content is {written} bytes, {size} were declared")
        self._pad(size)
        self._in_entry = False

    def close(self, end_of_archive: bool = True) -> None:
        """Finish the gzip member; only the last chunk of an archive writes the tar end-of-archive."""
        if self._closed:
            return
        if self._in_entry:
            raise WriterBrokenError("an entry failed halfway; the archive is incomplete")
        if end_of_archive:
            self._feed(_END_OF_ARCHIVE)
        self._out.write(self._compressor.flush())
        self._out.flush()
        self._closed = True

    def __enter__(self) -> TarGzStreamWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()

    def _begin(self) -> None:
        if self._closed:
            raise ValueError("the tar writer is closed")
        if self._in_entry:
            raise WriterBrokenError("an entry failed halfway; the archive is incomplete")
        self._in_entry = True

    def _feed(self, data: BytesLike) -> None:
        self._tar_size += len(data)
        self._out.write(self._compressor.compress(data))

    def _pad(self, size: int) -> None:
        if size % BLOCK_SIZE:
            self._feed(bytes(BLOCK_SIZE - size % BLOCK_SIZE))
