"""Streaming zip writer: one pass, constant memory, never seeks; Zip64 when needed.

Entries come in these shapes, chosen so that every common unzipper, including
Java's sequential ``ZipInputStream`` (which rejects STORED entries that have a
data descriptor), can read them:

- ``add_bytes``: content in memory, so CRC and sizes go in the local header;
  DEFLATED at the writer's level (records) if that is smaller, else STORED.
- ``add_file``: a file's content in memory (an asset): DEFLATED at
  ``asset_level`` when a sample says it pays (``compression.MIN_SAVING``) and
  the whole is smaller, else STORED; CRC and sizes in the local header either way.
- ``add_stored``: streamed content whose size and CRC are known up front
  (verified while streaming).
- ``add_stream``: streamed content of unknown CRC, method DEFLATED followed by
  a data descriptor (allowed for DEFLATED, which Java reads). Either hand-framed
  deflate *stored* blocks (no compression, memory speed), or, with
  ``compress=True`` and a sample of the content's head that says it pays, deflated
  on the fly at ``asset_level``.

Chunked builds: several writers each start at offset 0 in their own object and
are closed with ``central_directory=False``; an assembler concatenates the
objects and calls ``write_central_directory`` with each chunk's entries
``shifted`` by the chunk's base offset. ZipEntry fields are plain ints, strings
and bools, so ``ZipEntry(**dataclasses.asdict(entry))`` round-trips via JSON.
"""

from __future__ import annotations

import calendar
import functools
import itertools
import math
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
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
from data_export.archive.compression import (
    ASSET_LEVEL,
    SAMPLE_MIN_SIZE,
    Compressor,
    DeflateBackend,
    deflate_pays,
    get_backend,
)

METHOD_STORED = 0
METHOD_DEFLATED = 8
FLAG_DATA_DESCRIPTOR = 0x0008
FLAG_UTF8 = 0x0800

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_CENTRAL_HEADER = struct.Struct("<IHHHHHHIIIHHHHHII")
_DESCRIPTOR_32 = struct.Struct("<IIII")
_DESCRIPTOR_64 = struct.Struct("<IIQQ")
_ZIP64_EOCD = struct.Struct("<IQHHIIQQQQ")
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_EOCD = struct.Struct("<IHHHHIIH")
_LOCAL_SIG = 0x04034B50
_CENTRAL_SIG = 0x02014B50
_DESCRIPTOR_SIG = 0x08074B50
_ZIP64_EOCD_SIG = 0x06064B50
_ZIP64_LOCATOR_SIG = 0x07064B50
_EOCD_SIG = 0x06054B50
_ZIP64_TAG = 0x0001
_TIMESTAMP_TAG = 0x5455  # "UT": exact UTC mtime, so extractors need not guess the DOS time's zone

U16_MAX = 0xFFFF
U32_MAX = 0xFFFFFFFF  # also the "look in the Zip64 extra field" marker
_VERSION = 20  # 2.0: deflate
_VERSION_ZIP64 = 45  # 4.5: Zip64
_MADE_BY_UNIX = 3 << 8
_REGULAR_FILE_0644 = (0o100000 | 0o644) << 16  # external attributes as unix mode

_MAX_STORED_BLOCK = StoredBlockFramer.MAX_BLOCK
_FINAL_EMPTY_BLOCK = StoredBlockFramer.FINAL_EMPTY_BLOCK

_SMALL_PAYLOAD = 16 << 10  # joined to its header: one write
# add_stream(compress=True) samples this much of the content's head (or its first chunk, if bigger).
_STREAM_HEAD = 256 << 10

_DOS_EPOCH = calendar.timegm((1980, 1, 1, 0, 0, 0))
_DOS_END = calendar.timegm((2107, 12, 31, 23, 59, 58))


@dataclass(frozen=True)
class ZipEntry:
    """What the central directory needs to know about one written entry."""

    name: str
    header_offset: int
    crc32: int
    compressed_size: int
    uncompressed_size: int
    method: int
    mtime: int  # POSIX seconds
    flags: int
    # The local header has a Zip64 extra field, hence an 8-byte-size data descriptor if any.
    zip64_header: bool = False

    @property
    def needs_zip64(self) -> bool:
        """True when a central-directory field overflows 32 bits."""
        return max(self.compressed_size, self.uncompressed_size, self.header_offset) >= U32_MAX

    def shifted(self, by: int) -> ZipEntry:
        """This entry as seen in an archive where its chunk starts ``by`` bytes later."""
        return replace(self, header_offset=self.header_offset + by)


def stored_deflate_size(size: int) -> int:
    """Bytes that ``add_stream`` writes for ``size`` bytes of content (block headers included)."""
    return size + 5 * math.ceil(size / _MAX_STORED_BLOCK) + len(_FINAL_EMPTY_BLOCK)


def deflate_bound(size: int) -> int:
    """More than deflate can make of ``size`` bytes, however incompressible (zlib's deflateBound is
    ~0.03 % over the size; isal's stored fallback less): decides an ``add_stream`` entry's Zip64 form."""
    return stored_deflate_size(size) + (size >> 10) + (64 << 10)


class ZipStreamWriter:
    """Writes a zip archive to ``sink`` in one pass.

    ``offset`` is where this writer's first byte lies in the final archive.
    ``level`` is a zlib-scale compression level for ``add_bytes`` (default: fast), ``asset_level``
    the one for ``add_file`` and ``add_stream(compress=True)`` (default: ``ASSET_LEVEL``).
    ``force_zip64`` writes every Zip64 structure even when nothing needs it (for
    tests), except in ``add_stream`` local headers, which only ``size_hint`` drives.
    Chunks given to ``add_stored`` may be handed to the sink as they are: don't reuse them.
    """

    def __init__(
        self,
        sink: Writable,
        *,
        offset: int = 0,
        level: int | None = None,
        asset_level: int = ASSET_LEVEL,
        force_zip64: bool = False,
        backend: DeflateBackend | None = None,
    ) -> None:
        self._out = BatchingWriter(sink, offset=offset)
        self._force_zip64 = force_zip64
        self._backend = backend or get_backend()
        self._deflate = self._backend.deflater(level)
        self._asset_level = asset_level
        self._deflate_asset = self._backend.deflater(asset_level)
        self._crc32: Callable[..., int] = self._backend.module.crc32  # the C function: no wrapper call
        self._entries: list[ZipEntry] = []
        self._in_entry = False  # stays True if an entry failed halfway
        self._closed = False

    @property
    def entries(self) -> Sequence[ZipEntry]:
        return self._entries

    @property
    def offset(self) -> int:
        """Offset in the final archive of the next byte to be written."""
        return self._out.offset

    def add_bytes(self, name: str, data: BytesLike, *, mtime: float, compress: bool = True) -> ZipEntry:
        """Add content held in memory: DEFLATED if ``compress`` and it helps, else STORED."""
        return self._add_in_memory(name, data, mtime, self._deflate if compress else None)

    def add_file(self, name: str, data: BytesLike, *, mtime: float) -> ZipEntry:
        """Add a file's content held in memory (an asset): DEFLATED at ``asset_level`` when a sample of it
        shrinks by ``compression.MIN_SAVING`` (a file under ``SAMPLE_MIN_SIZE`` is tried whole) and the
        whole comes out smaller, else STORED. The sample spares deflating what will not shrink."""
        deflate = self._deflate_asset if self._deflate_pays(data) else None
        return self._add_in_memory(name, data, mtime, deflate)

    def _deflate_pays(self, data: BytesLike) -> bool:
        """Whether to deflate an asset that begins with (or is) ``data``."""
        return len(data) < SAMPLE_MIN_SIZE or deflate_pays(data, self._deflate_asset)

    def _add_in_memory(
        self, name: str, data: BytesLike, mtime: float, deflate: Callable[[BytesLike], bytes] | None
    ) -> ZipEntry:
        encoded = _encode_name(name)
        self._begin()
        crc = self._crc32(data)
        size = len(data)
        payload, method = data, METHOD_STORED
        if deflate is not None and size:
            deflated = deflate(data)
            if len(deflated) < size:
                payload, method = deflated, METHOD_DEFLATED
            del deflated  # not held past the write when it is not used
        header_offset = self._out.offset
        zip64 = self._force_zip64 or size >= U32_MAX
        seconds = _posix_seconds(mtime)
        header = _local_header(
            encoded,
            flags=FLAG_UTF8,
            method=method,
            seconds=seconds,
            crc=crc,
            compressed=len(payload),
            size=size,
            zip64=zip64,
        )
        if len(payload) < _SMALL_PAYLOAD:
            self._out.write(header + payload)  # records: one write per entry
        else:
            self._out.write(header)
            self._out.write(payload)
        return self._end(
            ZipEntry(name, header_offset, crc, len(payload), size, method, seconds, FLAG_UTF8, zip64)
        )

    def add_stored(
        self, name: str, chunks: Iterable[BytesLike], *, size: int, crc32: int, mtime: float
    ) -> ZipEntry:
        """Stream a STORED entry whose size and CRC-32 are known up front.

        Raises ContentMismatchError (and the writer is unusable) if the chunks
        do not add up to exactly ``size`` bytes with that CRC.
        """
        if size < 0 or not 0 <= crc32 <= U32_MAX:
            raise ValueError(f"{name}: invalid size {size} or CRC-32 {crc32}")
        encoded = _encode_name(name)
        self._begin()
        header_offset = self.offset
        zip64 = self._force_zip64 or size >= U32_MAX
        seconds = _posix_seconds(mtime)
        self._out.write(
            _local_header(
                encoded,
                flags=FLAG_UTF8,
                method=METHOD_STORED,
                seconds=seconds,
                crc=crc32,
                compressed=size,
                size=size,
                zip64=zip64,
            )
        )
        crc = written = 0
        for chunk in chunks:
            written += len(chunk)
            if written > size:
                raise ContentMismatchError(f"{name}: content is longer than the declared {size} bytes")
            crc = self._crc32(chunk, crc)
            self._out.write(chunk)
        if written != size:
            raise ContentMismatchError(f"{name}: content is {written} bytes, {size} were declared")
        if crc != crc32:
            raise ContentMismatchError(f"{name}: content CRC-32 is {crc:08x}, {crc32:08x} was declared")
        return self._end(
            ZipEntry(name, header_offset, crc, size, size, METHOD_STORED, seconds, FLAG_UTF8, zip64)
        )

    def add_stream(
        self,
        name: str,
        chunks: Iterable[BytesLike],
        *,
        size_hint: int | None,
        mtime: float,
        compress: bool = False,
    ) -> ZipEntry:
        """Stream an entry whose CRC is not known up front, in constant memory.

        The content goes in as deflate stored blocks (uncompressed, memory speed) unless ``compress``:
        then its head (the first 256 KiB, or the first chunk if bigger) is sampled, and the whole is
        deflated on the fly at ``asset_level`` if the sample says it pays (``compression.deflate_pays``).

        ``size_hint`` (an upper bound of the size) decides the data descriptor's
        form. ``None`` or >= 4 GiB: Zip64, which Java's ZipInputStream before
        JDK 23 cannot read for entries that turn out smaller than 4 GiB. Else
        4-byte sizes, and ContentMismatchError if the content outgrows them.
        """
        encoded = _encode_name(name)
        self._begin()
        header_offset = self.offset
        bound = deflate_bound if compress else stored_deflate_size
        # Not forced: Java's ZipInputStream before JDK 23 (JDK-8303866) reads a
        # Zip64 data descriptor on an entry under 4 GiB as corrupt.
        zip64 = size_hint is None or bound(size_hint) >= U32_MAX
        flags = FLAG_UTF8 | FLAG_DATA_DESCRIPTOR
        seconds = _posix_seconds(mtime)
        self._out.write(
            _local_header(
                encoded,
                flags=flags,
                method=METHOD_DEFLATED,
                seconds=seconds,
                crc=0,
                compressed=0,
                size=0,
                zip64=zip64,
            )
        )
        data_offset = self.offset
        encoder: StoredBlockFramer | _Deflater = StoredBlockFramer(self._out)
        if compress:
            head, chunks = _take_head(chunks, _STREAM_HEAD)
            if self._deflate_pays(head):
                encoder = _Deflater(self._out, self._backend.raw_deflate(self._asset_level))
            del head
        crc = size = 0
        for chunk in chunks:
            size += len(chunk)
            if not zip64 and bound(size) >= U32_MAX:
                raise ContentMismatchError(
                    f"{name}: content passes 4 GiB but size_hint was {size_hint}; pass size_hint=None"
                )
            crc = self._crc32(chunk, crc)
            encoder.write(chunk)
        encoder.finish(final=True)
        compressed_size = self.offset - data_offset
        if not zip64 and compressed_size >= U32_MAX:  # deflate_bound is a bound: cannot happen
            raise ContentMismatchError(f"{name}: deflated to {compressed_size} bytes, past 4 GiB")
        descriptor = _DESCRIPTOR_64 if zip64 else _DESCRIPTOR_32
        self._out.write(descriptor.pack(_DESCRIPTOR_SIG, crc, compressed_size, size))
        return self._end(
            ZipEntry(name, header_offset, crc, compressed_size, size, METHOD_DEFLATED, seconds, flags, zip64)
        )

    def close(self, central_directory: bool = True) -> None:
        """Write the central directory (unless this is a chunk for an assembler) and flush."""
        if self._closed:
            return
        if self._in_entry:
            raise WriterBrokenError("an entry failed halfway; the archive is incomplete")
        if central_directory:
            write_central_directory(
                self._out, self._entries, cd_offset=self.offset, force_zip64=self._force_zip64
            )
        self._out.flush()
        self._closed = True

    def __enter__(self) -> ZipStreamWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()

    def _begin(self) -> None:
        if self._closed:
            raise ValueError("the zip writer is closed")
        if self._in_entry:
            raise WriterBrokenError("an entry failed halfway; the archive is incomplete")
        self._in_entry = True

    def _end(self, entry: ZipEntry) -> ZipEntry:
        self._entries.append(entry)
        self._in_entry = False
        return entry


class _Deflater:
    """A raw deflate stream into ``out``, with StoredBlockFramer's interface."""

    def __init__(self, out: BatchingWriter, compressor: Compressor) -> None:
        self._out = out
        self._compressor = compressor

    def write(self, data: BytesLike) -> None:
        self._out.write(self._compressor.compress(data))

    def finish(self, *, final: bool) -> None:
        if not final:
            raise ValueError("a deflate stream of a zip entry always ends with its entry")
        self._out.write(self._compressor.flush())


def _take_head(chunks: Iterable[BytesLike], size: int) -> tuple[BytesLike, Iterator[BytesLike]]:
    """The first ``size`` bytes of ``chunks`` (or its first chunk, if bigger), and all of ``chunks`` again.
    Buffered chunks are kept as bytes: a source may reuse its buffer once a chunk is consumed."""
    iterator = iter(chunks)
    pieces: list[bytes] = []
    taken = 0
    for chunk in iterator:
        pieces.append(chunk if type(chunk) is bytes else bytes(chunk))
        taken += len(chunk)
        if taken >= size:
            break
    head = pieces[0] if len(pieces) == 1 else b"".join(pieces)
    return head, itertools.chain(pieces, iterator)


def write_central_directory(
    sink: Writable,
    entries: Sequence[ZipEntry],
    *,
    cd_offset: int,
    comment: bytes = b"",
    force_zip64: bool = False,
) -> int:
    """Write the central directory for ``entries`` at archive offset ``cd_offset``; return its length.

    Adds the Zip64 end-of-central-directory record and locator when a count,
    size or offset overflows the classic fields (or ``force_zip64``).
    """
    if len(comment) > U16_MAX:
        raise ValueError("zip comment is longer than 65,535 bytes")
    out = BatchingWriter(sink, offset=cd_offset)
    for entry in entries:
        out.write(_central_header(entry, force_zip64=force_zip64))
    cd_size = out.offset - cd_offset
    count = len(entries)
    zip64 = force_zip64 or count >= U16_MAX or cd_size >= U32_MAX or cd_offset >= U32_MAX
    if zip64:
        zip64_eocd_offset = out.offset
        out.write(
            _ZIP64_EOCD.pack(
                _ZIP64_EOCD_SIG,
                _ZIP64_EOCD.size - 12,  # size of the rest of the record
                _MADE_BY_UNIX | _VERSION_ZIP64,
                _VERSION_ZIP64,
                0,
                0,
                count,
                count,
                cd_size,
                cd_offset,
            )
        )
        out.write(_ZIP64_LOCATOR.pack(_ZIP64_LOCATOR_SIG, 0, zip64_eocd_offset, 1))
    count16 = U16_MAX if zip64 and (force_zip64 or count >= U16_MAX) else count
    size32 = U32_MAX if zip64 and (force_zip64 or cd_size >= U32_MAX) else cd_size
    offset32 = U32_MAX if zip64 and (force_zip64 or cd_offset >= U32_MAX) else cd_offset
    out.write(_EOCD.pack(_EOCD_SIG, 0, 0, count16, count16, size32, offset32, len(comment)) + comment)
    out.flush()
    return out.offset - cd_offset


def _encode_name(name: str) -> bytes:
    encoded = check_entry_name(name)
    if len(encoded) > U16_MAX:
        raise ValueError(f"zip entry name is longer than 65,535 bytes: {name[:80]!r}...")
    return encoded


def _posix_seconds(mtime: float) -> int:
    return math.floor(mtime)


@functools.lru_cache(maxsize=64)  # entries of an export share one mtime
def _time_fields(seconds: int) -> tuple[int, int, bytes]:
    """DOS time, DOS date and the extended-timestamp extra field for ``seconds``."""
    t = time.gmtime(min(max(seconds, _DOS_EPOCH), _DOS_END))
    dos_time = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    dos_date = ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    # Same bytes in local and central headers: flags=1 (mtime only), signed 32-bit seconds.
    extra = struct.pack("<HHBi", _TIMESTAMP_TAG, 5, 1, seconds) if -(1 << 31) <= seconds < 1 << 31 else b""
    return dos_time, dos_date, extra


def _local_header(
    name: bytes, *, flags: int, method: int, seconds: int, crc: int, compressed: int, size: int, zip64: bool
) -> bytes:
    dos_time, dos_date, extra = _time_fields(seconds)
    if zip64:
        # A local Zip64 field must hold both sizes; the classic fields then say "see Zip64".
        extra = struct.pack("<HHQQ", _ZIP64_TAG, 16, size, compressed) + extra
        compressed = size = U32_MAX
    version = _VERSION_ZIP64 if zip64 else _VERSION
    header = _LOCAL_HEADER.pack(
        _LOCAL_SIG, version, flags, method, dos_time, dos_date, crc, compressed, size, len(name), len(extra)
    )
    return header + name + extra


def _central_header(entry: ZipEntry, *, force_zip64: bool) -> bytes:
    size, compressed, offset = entry.uncompressed_size, entry.compressed_size, entry.header_offset
    # Zip64 values appear only for the fields that are set to the marker, in this order.
    zip64_values = []
    if force_zip64 or size >= U32_MAX:
        zip64_values.append(size)
        size = U32_MAX
    if force_zip64 or compressed >= U32_MAX:
        zip64_values.append(compressed)
        compressed = U32_MAX
    if force_zip64 or offset >= U32_MAX:
        zip64_values.append(offset)
        offset = U32_MAX
    dos_time, dos_date, extra = _time_fields(entry.mtime)
    if zip64_values:
        zip64_extra = struct.pack(
            f"<HH{len(zip64_values)}Q", _ZIP64_TAG, 8 * len(zip64_values), *zip64_values
        )
        extra = zip64_extra + extra
    name = entry.name.encode("utf-8")
    version = _VERSION_ZIP64 if zip64_values or entry.zip64_header else _VERSION
    header = _CENTRAL_HEADER.pack(
        _CENTRAL_SIG,
        _MADE_BY_UNIX | version,
        version,
        entry.flags,
        entry.method,
        dos_time,
        dos_date,
        entry.crc32,
        compressed,
        size,
        len(name),
        len(extra),
        0,  # comment length
        0,  # disk number
        0,  # internal attributes
        _REGULAR_FILE_0644,
        offset,
    )
    return header + name + extra
