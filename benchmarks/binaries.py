"""Binary sections (images, PDFs, CSV...), in MB/s of content, against peers and same-work ceilings.

Each comparison runs on one set of files (``inputs.BinarySet``): the realistic corpus, and pure random bytes
apart. Every contender reads the same in-memory objects in 1 MiB chunks and writes into the same kind of
sink (``PartSink``: one copy into an upload part).

- zip, ours: what the builder does with an asset (``export.entries.ZipEntries.add_asset``, without the
  manifest's SHA-256 of each file): up to 16 MiB read whole and ``add_file`` (deflated at ``ASSET_LEVEL``
  when a sample says it saves 2 %, else stored), bigger ones ``add_stream(compress=True)``.
- zip peers: ``zipfile`` deflate at its default level 6 on every file (the size to match) and ``zipfile``
  stored.
- zip ceiling, same work: read, CRC-32 (isal), then the bytes copied to the sink as they are for a file
  deflate does not shrink by 2 %, or deflated at the same level as ours for one it does (an oracle decides,
  from the whole file: no sampling, no headers, no central directory).
- tar.gz, ours: ``TarGzStreamWriter.add_stream``. Peers: ``tarfile`` ``w:gz`` at level 1 (our level for
  content deflate shrinks) and at level 0 (stored blocks: our work for content it does not).
- tar.gz ceiling, same work: one gzip member, deflate stored blocks framed for a file deflate does not shrink
  (after a full flush), isal level 1 for one it does, CRC-32 of everything; no tar headers.

Every timed output is opened and checked: each file's SHA-256 (and CRC) against its source.
"""

from __future__ import annotations

import hashlib
import io
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from data_export.archive.compression import ASSET_LEVEL, FAST_LEVEL, get_backend
from data_export.archive.tar import TarGzStreamWriter
from data_export.archive.zip import ZipStreamWriter

from benchmarks.harness import Comparison, Contender, Output, check, compare
from benchmarks.inputs import BinarySet
from benchmarks.sinks import PartSink, read_chunks

MTIME = 1_700_000_000
BUFFERED_ASSET_LIMIT = 16 << 20  # export.entries: assets up to this size are read whole
STORED_BLOCK = 0xFFFF
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def zip_add_asset(writer: ZipStreamWriter, name: str, chunks: Iterable[bytes], size: int) -> None:
    """What ``ZipEntries.add_asset`` does with the writer (the builder's zip path for a binary)."""
    if size <= BUFFERED_ASSET_LIMIT:
        writer.add_file(name, b"".join(chunks), mtime=MTIME)
    else:
        writer.add_stream(name, chunks, size_hint=size, mtime=MTIME, compress=True)


def stored_blocks(sink: PartSink, chunk: bytes) -> None:
    """Frame ``chunk`` as non-final deflate stored blocks (5-byte header, up to 65,535 bytes each)."""
    view = memoryview(chunk)
    for start in range(0, len(view), STORED_BLOCK):
        piece = view[start : start + STORED_BLOCK]
        sink.write(struct.pack("<BHH", 0, len(piece), len(piece) ^ 0xFFFF))
        sink.write(piece)


class BinaryChecks:
    def __init__(self, binaries: BinarySet, names: list[str]) -> None:
        self.files, self.names = binaries.files, names

    def _same(self, index: int, content: bytes, what: str) -> None:
        check(
            hashlib.sha256(content).digest() == self.files[index].sha256,
            f"{what}: {self.names[index]} differs from its source",
        )

    def zip_archive(self, sink: PartSink) -> int:
        data = sink.getvalue()
        with zipfile.ZipFile(io.BytesIO(data)) as opened:
            check(opened.namelist() == self.names, "zip: not the expected entries, in order")
            for index, name in enumerate(self.names):
                self._same(index, opened.read(name), "zip")  # zipfile checks each CRC too
        return len(data)

    def tar_archive(self, sink: PartSink) -> int:
        data = sink.getvalue()
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as opened:
            members = opened.getmembers()
            check([m.name for m in members] == self.names, "tar.gz: not the expected entries, in order")
            for index, member in enumerate(members):
                extracted = opened.extractfile(member)
                check(extracted is not None, f"tar.gz: {member.name} is not a file")
                assert extracted is not None
                self._same(index, extracted.read(), "tar.gz")
        return len(data)

    def zip_ceiling(self, output: tuple[PartSink, list[tuple[int, int, bool]]]) -> int:
        sink, entries = output
        data, offset = sink.getvalue(), 0
        check(len(entries) == len(self.files), "ceiling: not one entry per file")
        for index, (crc, length, deflated) in enumerate(entries):
            stored = data[offset : offset + length]
            content = zlib.decompress(stored, -15) if deflated else stored
            check(crc == zlib.crc32(content), f"ceiling: wrong CRC-32 for {self.names[index]}")
            self._same(index, content, "ceiling")
            offset += length
        check(offset == len(data), "ceiling: bytes left over")
        return len(data)

    def gzip_stream(self, sink: PartSink) -> int:
        data = sink.getvalue()
        content, offset = zlib.decompress(data, 31), 0  # checks the trailer's CRC-32 and size
        for index, file in enumerate(self.files):
            self._same(index, content[offset : offset + len(file.data)], "ceiling")
            offset += len(file.data)
        check(offset == len(content), "ceiling: bytes left over")
        return len(data)


def run(binaries: BinarySet, *, rounds: int) -> list[Comparison]:
    files = binaries.files
    names = binaries.archive_names()
    checks = BinaryChecks(binaries, names)
    triples = [(file.data, name, file.compressible) for file, name in zip(files, names, strict=True)]
    zip_triples = [(file.data, name, file.deflate_pays) for file, name in zip(files, names, strict=True)]
    size = binaries.total
    best = get_backend()

    def chunks_of(data: bytes) -> Iterator[bytes]:
        return read_chunks(data)

    def zip_ours() -> Output:
        sink = PartSink()
        with ZipStreamWriter(sink) as writer:
            for data, name, _ in triples:
                zip_add_asset(writer, name, chunks_of(data), len(data))
        return Output(size, sink)

    def zip_ours_stream() -> Output:
        sink = PartSink()
        with ZipStreamWriter(sink) as writer:
            for data, name, _ in triples:
                writer.add_stream(name, chunks_of(data), size_hint=len(data), mtime=MTIME, compress=True)
        return Output(size, sink)

    def zipfile_writer(compression: int) -> Any:
        def write() -> Output:
            sink = PartSink()
            with zipfile.ZipFile(sink, "w", compression) as archive:
                for data, name, _ in triples:
                    info = zipfile.ZipInfo(name, date_time=(2023, 11, 14, 22, 13, 20))
                    info.compress_type = compression
                    with archive.open(info, "w") as entry:
                        for chunk in chunks_of(data):
                            entry.write(chunk)
            return Output(size, sink)

        return write

    def zip_ceiling() -> Output:
        sink, crc32, entries = PartSink(), best.crc32, []
        for data, _, deflate in zip_triples:
            crc, length = 0, 0
            compressor = best.raw_deflate(ASSET_LEVEL) if deflate else None
            for chunk in chunks_of(data):
                crc = crc32(chunk, crc)
                out = compressor.compress(chunk) if compressor is not None else chunk
                sink.write(out)
                length += len(out)
            if compressor is not None:
                tail = compressor.flush()
                sink.write(tail)
                length += len(tail)
            entries.append((crc, length, deflate))
        return Output(size, (sink, entries))

    def tar_ours() -> Output:
        sink = PartSink()
        with TarGzStreamWriter(sink) as writer:
            for data, name, _ in triples:
                writer.add_stream(name, chunks_of(data), size=len(data), mtime=MTIME)
        return Output(size, sink)

    def tarfile_writer(level: int) -> Any:
        def write() -> Output:
            sink = PartSink()
            # w:gz (not w|gz, whose level is fixed at 9 before Python 3.12) on a stream that never seeks.
            with tarfile.open(fileobj=sink, mode="w:gz", compresslevel=level) as archive:  # type: ignore[call-overload]
                for data, name, _ in triples:
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime = len(data), MTIME
                    archive.addfile(info, io.BytesIO(data))
            return Output(size, sink)

        return write

    def tar_ceiling() -> Output:
        sink, crc32, compressor = PartSink(), best.crc32, best.raw_deflate(FAST_LEVEL)
        sink.write(GZIP_HEADER)
        crc = 0
        for data, _, deflate in triples:
            if not deflate:
                sink.write(compressor.flush(zlib.Z_FULL_FLUSH))
            for chunk in chunks_of(data):
                crc = crc32(chunk, crc)
                if deflate:
                    sink.write(compressor.compress(chunk))
                else:
                    stored_blocks(sink, chunk)
        sink.write(compressor.flush())
        sink.write(struct.pack("<II", crc, size & 0xFFFFFFFF))
        return Output(size, sink)

    notes = binaries.describe()
    suffix = f" ({binaries.label})"
    return [
        compare(
            "Binaries -> zip" + suffix,
            "bytes",
            [
                Contender(
                    "ours: the builder's zip path (add_bytes / add_stream)",
                    "ours",
                    zip_ours,
                    checks.zip_archive,
                ),
                Contender(
                    "ours: add_stream(compress=True) for every file",
                    "variant",
                    zip_ours_stream,
                    checks.zip_archive,
                ),
                Contender(
                    "zipfile deflate (level 6, every file)",
                    "peer",
                    zipfile_writer(zipfile.ZIP_DEFLATED),
                    checks.zip_archive,
                ),
                Contender("zipfile stored", "peer", zipfile_writer(zipfile.ZIP_STORED), checks.zip_archive),
                Contender(
                    f"same work: read + CRC-32 + copy, or {best.name} deflate at ours' level where 2% shrink",
                    "ceiling",
                    zip_ceiling,
                    checks.zip_ceiling,
                ),
            ],
            rounds=rounds,
            notes=notes,
        ),
        compare(
            "Binaries -> tar.gz" + suffix,
            "bytes",
            [
                Contender("ours: TarGzStreamWriter.add_stream", "ours", tar_ours, checks.tar_archive),
                Contender("tarfile w:gz level 1", "peer", tarfile_writer(1), checks.tar_archive),
                Contender("tarfile w:gz level 0 (stored)", "peer", tarfile_writer(0), checks.tar_archive),
                Contender(
                    f"same work: stored blocks, or {best.name} deflate level 1 where it shrinks; CRC-32",
                    "ceiling",
                    tar_ceiling,
                    checks.gzip_stream,
                ),
            ],
            rounds=rounds,
            notes=notes,
        ),
    ]
