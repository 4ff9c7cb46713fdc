"""One interface over the zip and tar.gz streaming writers, as the builder needs it.

Each entry's size and SHA-256 are taken as it is written (an asset's chunk by chunk as they stream through,
never read twice) and kept in ``files`` for the manifest: one small tuple per file, so ~250 bytes each, about
25 MB for 100,000 files."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Protocol

from data_export.archive import Writable
from data_export.archive.tar import TarGzStreamWriter
from data_export.archive.zip import ZipEntry, ZipStreamWriter
from data_export.models import ArchiveFormat
from data_export.settings import MIB
from data_export.storage.objects import Asset

# Assets up to this size are read whole so that zip can write them with their CRC and sizes up front, STORED
# or, when a sample says deflate pays, DEFLATED (what every unzipper likes best; Java's ZipInputStream needs
# it for STORED); bigger ones stream through in one pass with constant memory, deflated on the fly when the
# sample of their head says it pays, else as deflate stored blocks, with a data descriptor either way.
BUFFERED_ASSET_LIMIT = 16 * MIB


class ArchiveFile(NamedTuple):
    """A file of the archive as the manifest lists it."""

    path: str  # the entry's name in the archive
    size: int
    sha256: str  # hex


class DigestedChunks:
    """Passes chunks through, counting and hashing them on the way."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self._digest = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self._digest.update(chunk)
            self.size += len(chunk)
            yield chunk

    def file(self, path: str) -> ArchiveFile:
        return ArchiveFile(path, self.size, self._digest.hexdigest())


def file_of(path: str, data: bytes) -> ArchiveFile:
    return ArchiveFile(path, len(data), hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class ChunkIndex:
    """What the assembler needs of a chunk: zip entries to shift, or the tar segment's CRC-32 and size."""

    zip_entries: list[ZipEntry] = field(default_factory=list)
    tar_crc32: int = 0
    tar_size: int = 0


class ArchiveEntries(Protocol):
    files: list[ArchiveFile]  # every entry written so far, in archive order

    def add_file(self, name: str, data: bytes) -> None: ...
    def add_asset(self, name: str, asset: Asset) -> None: ...
    def close(self) -> None: ...
    def close_chunk(self) -> ChunkIndex:
        """Finish a unit of a chunked build: no zip central directory; a tar.gz segment of one member."""
        ...


class ZipEntries:
    def __init__(self, sink: Writable, mtime: datetime) -> None:
        self._writer = ZipStreamWriter(sink)
        self._mtime = mtime.timestamp()
        self.files: list[ArchiveFile] = []

    def add_file(self, name: str, data: bytes) -> None:
        self._writer.add_bytes(name, data, mtime=self._mtime)
        self.files.append(file_of(name, data))

    def add_asset(self, name: str, asset: Asset) -> None:
        if asset.size <= BUFFERED_ASSET_LIMIT:
            data = b"".join(asset.chunks)
            self._writer.add_file(name, data, mtime=self._mtime)
            self.files.append(file_of(name, data))
        else:
            chunks = DigestedChunks(asset.chunks)
            self._writer.add_stream(name, chunks, size_hint=asset.size, mtime=self._mtime, compress=True)
            self.files.append(chunks.file(name))

    def close(self) -> None:
        self._writer.close()

    def close_chunk(self) -> ChunkIndex:
        self._writer.close(central_directory=False)
        return ChunkIndex(zip_entries=list(self._writer.entries))


class TarGzEntries:
    def __init__(self, sink: Writable, mtime: datetime, *, segment: bool = False) -> None:
        # A segment of a chunked build: the assembler writes the member's gzip header once, first.
        self._writer = TarGzStreamWriter(sink, gzip_header=not segment)
        self._mtime = mtime.timestamp()
        self.files: list[ArchiveFile] = []

    def add_file(self, name: str, data: bytes) -> None:
        self._writer.add_bytes(name, data, mtime=self._mtime)
        self.files.append(file_of(name, data))

    def add_asset(self, name: str, asset: Asset) -> None:
        chunks = DigestedChunks(asset.chunks)
        self._writer.add_stream(name, chunks, size=asset.size, mtime=self._mtime)
        self.files.append(chunks.file(name))

    def close(self) -> None:
        self._writer.close()

    def close_chunk(self) -> ChunkIndex:
        self._writer.close_segment()
        return ChunkIndex(tar_crc32=self._writer.crc32, tar_size=self._writer.uncompressed_size)


def open_entries(
    archive_format: ArchiveFormat, sink: Writable, mtime: datetime, *, chunk: bool = False
) -> ArchiveEntries:
    """Entries of a whole archive, or of one chunk of a chunked build (``chunk=True``)."""
    if archive_format is ArchiveFormat.ZIP:
        return ZipEntries(sink, mtime)
    return TarGzEntries(sink, mtime, segment=chunk)
