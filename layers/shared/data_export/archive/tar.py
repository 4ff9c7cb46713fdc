"""Streaming tar.gz writer: PAX headers, one gzip member per writer, never seeks.

Chunked builds write one gzip member in *segments* (as pigz does): a writer made
with ``gzip_header=False`` and closed with ``close_segment()`` leaves byte-aligned
raw deflate with no final block; the assembler puts ``GZIP_HEADER`` first, the
segments in order, and a last segment closed with ``close_final_segment()``, whose
trailer carries the CRC-32 of everything, combined from the segments' CRCs without
their bytes. One member, because some readers (Python's streaming ``tarfile``
mode ``r|gz``) stop at the end of the first member of a multi-member gzip file.

Content that deflate cannot shrink (JPEG, PNG, PDF, zip...: most binaries)
goes into the gzip member as deflate *stored* blocks, at memory speed instead
of the ~200 MB/s that even isal needs to find nothing to compress. The member
is framed here (header, raw deflate, CRC-32 and size trailer) so that stored
and compressed stretches can alternate: before a stored stretch the compressor
does a full flush, which also empties its history, so what it compresses
afterwards never refers to bytes it did not see.
"""

from __future__ import annotations

import functools
import math
import struct
import tarfile
import zlib
from collections.abc import Callable, Iterable
from types import TracebackType

from data_export.archive import (
    BatchingWriter,
    BytesLike,
    ContentMismatchError,
    StoredBlockFramer,
    Writable,
    WriterBrokenError,
    check_entry_name,
)
from data_export.archive.compression import DeflateBackend, crc32_combine, get_backend

BLOCK_SIZE = tarfile.BLOCKSIZE
_END_OF_ARCHIVE = bytes(2 * BLOCK_SIZE)
_ZEROS = bytes(BLOCK_SIZE)

# No file name, no mtime, XFL 0, OS "unknown": the member carries nothing about this machine.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_GZIP_TRAILER = struct.Struct("<II")  # CRC-32 and size mod 2**32 of the uncompressed data

# Content of at least this size is stored when a sample of it deflates by less than 1/_MIN_SAVING
# (below it, compressing costs little anyway). The sample comes from the middle of the first chunk,
# past the headers (EXIF, PDF dictionaries) that compress better than the rest.
_STORE_MIN_SIZE = 64 << 10
_SAMPLE_SIZE = 16 << 10
_MIN_SAMPLE_SIZE = 4 << 10  # a smaller first chunk says too little: compress
_MIN_SAVING = 20  # 5 %

# ustar fields, for the common header that needs no PAX record; checksum field as 8 spaces.
_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12x")
_OCTAL_11_LIMIT = 8**11


def tar_header(name: str, size: int, mtime: float) -> bytes:
    """The PAX-format header of a regular file: mode 0644, owned by uid/gid 0 with no names.

    PAX records carry what ustar cannot: long or non-ASCII names, sizes >= 8 GiB.
    """
    encoded = check_entry_name(name)
    seconds = math.floor(mtime)  # a float mtime would add a PAX record to every entry
    fits_ustar = 0 <= size < _OCTAL_11_LIMIT and 0 <= seconds < _OCTAL_11_LIMIT
    if fits_ustar and len(encoded) <= 100 and encoded.isascii():
        return _ustar_header(encoded, size, seconds)
    info = tarfile.TarInfo(name)
    info.type = tarfile.REGTYPE
    info.size = size
    info.mtime = seconds
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def _ustar_header(name: bytes, size: int, seconds: int) -> bytes:
    """What ``tarfile`` writes for such a file, ~10x faster: records are small and many."""
    size_field = b"%011o\0" % size
    checksum = _fixed_checksum(seconds) + sum(name) + sum(size_field)
    header = _USTAR.pack(
        name,
        b"0000644\0",
        b"0000000\0",
        b"0000000\0",
        size_field,
        b"%011o\0" % seconds,
        b"%06o\0 " % checksum,
        tarfile.REGTYPE,
        b"",
        tarfile.POSIX_MAGIC,
        b"",
        b"",
        b"",
        b"",
        b"",
    )
    return header


@functools.lru_cache(maxsize=64)  # entries of an export share one mtime
def _fixed_checksum(seconds: int) -> int:
    """The header checksum without the name and size fields (the checksum field counts as spaces)."""
    block = _USTAR.pack(
        b"",
        b"0000644\0",
        b"0000000\0",
        b"0000000\0",
        b"",
        b"%011o\0" % seconds,
        b" " * 8,
        tarfile.REGTYPE,
        b"",
        tarfile.POSIX_MAGIC,
        b"",
        b"",
        b"",
        b"",
        b"",
    )
    return sum(block)


class TarGzStreamWriter:
    """Writes one gzip member holding tar entries to ``sink``.

    ``level`` is a zlib-scale compression level (default: fast).
    """

    def __init__(
        self,
        sink: Writable,
        *,
        level: int | None = None,
        backend: DeflateBackend | None = None,
        gzip_header: bool = True,
    ) -> None:
        self._out = BatchingWriter(sink)
        chosen = backend or get_backend()
        self._compressor = chosen.raw_deflate(level)
        self._deflate = chosen.deflater(level)
        self._crc32: Callable[..., int] = chosen.module.crc32  # the C function: no wrapper call
        self._crc = 0
        self._tar_size = 0
        self._in_entry = False  # stays True if an entry failed halfway
        self._closed = False
        if gzip_header:
            self._out.write(GZIP_HEADER)

    @property
    def uncompressed_size(self) -> int:
        """Tar bytes produced so far."""
        return self._tar_size

    @property
    def crc32(self) -> int:
        """CRC-32 of the tar bytes produced so far."""
        return self._crc

    @property
    def compressed_size(self) -> int:
        """Bytes handed to the sink so far, or pending for it (all of them after close)."""
        return self._out.offset

    def add_bytes(self, name: str, data: BytesLike, *, mtime: float) -> None:
        size = len(data)
        header = tar_header(name, size, mtime)
        self._begin()
        if size < _STORE_MIN_SIZE:
            # Small files (records): one compressor call for the whole entry.
            self._feed(b"".join((header, data, _ZEROS[: -size % BLOCK_SIZE])))
        else:
            self._feed(header)
            self._add_content(name, (data,), size)
            self._feed(_ZEROS[: -size % BLOCK_SIZE])
        self._in_entry = False

    def add_stream(self, name: str, chunks: Iterable[BytesLike], *, size: int, mtime: float) -> None:
        """Stream an entry of ``size`` bytes; ContentMismatchError if the chunks add up to another size."""
        header = tar_header(name, size, mtime)
        self._begin()
        self._feed(header)
        self._add_content(name, chunks, size)
        self._feed(_ZEROS[: -size % BLOCK_SIZE])
        self._in_entry = False

    def close(self, end_of_archive: bool = True) -> None:
        """Finish the gzip member (with the tar end-of-archive unless ``end_of_archive`` is False)."""
        self._finish(end_of_archive=end_of_archive, last=True)

    def close_segment(self) -> None:
        """Finish a segment in the middle of a member: byte-aligned, no final block, no trailer."""
        self._finish(end_of_archive=False, last=False)

    def close_final_segment(self, preceding_crc: int, preceding_size: int) -> None:
        """Finish the member's last segment: tar end-of-archive, final block, and the trailer of the whole
        member, given the CRC-32 and size of the tar bytes of all the segments before this one."""
        self._finish(end_of_archive=True, last=True, preceding=(preceding_crc, preceding_size))

    def _finish(self, *, end_of_archive: bool, last: bool, preceding: tuple[int, int] = (0, 0)) -> None:
        if self._closed:
            return
        if self._in_entry:
            raise WriterBrokenError("an entry failed halfway; the archive is incomplete")
        if end_of_archive:
            self._feed(_END_OF_ARCHIVE)
        if last:
            crc = crc32_combine(preceding[0], self._crc, self._tar_size) if preceding[1] else self._crc
            self._out.write(self._compressor.flush())
            self._out.write(_GZIP_TRAILER.pack(crc, (preceding[1] + self._tar_size) & 0xFFFFFFFF))
        else:
            self._out.write(self._compressor.flush(zlib.Z_SYNC_FLUSH))
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
        self._crc = self._crc32(data, self._crc)
        self._tar_size += len(data)
        self._out.write(self._compressor.compress(data))

    def _add_content(self, name: str, chunks: Iterable[BytesLike], size: int) -> None:
        """Compress the content, or store it if its first chunk says deflate will not help."""
        framer: StoredBlockFramer | None = None
        decided = size < _STORE_MIN_SIZE
        written = 0
        for chunk in chunks:
            written += len(chunk)
            if written > size:
                raise ContentMismatchError(f"{name}: content is longer than the declared {size} bytes")
            if not decided and chunk:
                decided = True
                if self._incompressible(chunk):
                    # Byte-align the stream and empty the compressor's history (see the module docstring).
                    self._out.write(self._compressor.flush(zlib.Z_FULL_FLUSH))
                    framer = StoredBlockFramer(self._out)
            if framer is None:
                self._feed(chunk)
            else:
                self._crc = self._crc32(chunk, self._crc)
                self._tar_size += len(chunk)
                framer.write(chunk)
        if framer is not None:
            framer.finish(final=False)
        if written != size:
            raise ContentMismatchError(f"{name}: content is {written} bytes, {size} were declared")

    def _incompressible(self, chunk: BytesLike) -> bool:
        view = memoryview(chunk).cast("B")
        start = max(0, len(view) // 2 - _SAMPLE_SIZE // 2)
        sample = view[start : start + _SAMPLE_SIZE]
        if len(sample) < _MIN_SAMPLE_SIZE:
            return False
        return len(self._deflate(sample)) * _MIN_SAVING > len(sample) * (_MIN_SAVING - 1)
