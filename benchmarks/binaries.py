"""Binary sections (images, PDFs: already compressed), in MB/s of content, against peers and ceilings.

- zip ours: what the builder does for an asset up to 16 MiB: read it whole, ``add_bytes(compress=False)``
  (STORED, CRC up front); and ``add_stream`` (bigger assets: deflate stored blocks + data descriptor).
- zip ceiling: read + CRC-32 + copy to the sink, nothing else.
- tar.gz ours: ``TarGzStreamWriter.add_stream``; peer: stdlib ``tarfile`` ``w|gz``; ceiling: one gzip
  member at level 1 with the fastest library (isal), no tar at all.
Every contender reads the same in-memory objects in 1 MiB chunks and writes into the same kind of sink.
"""

from __future__ import annotations

import io
import tarfile
import zipfile

from data_export.archive.compression import FAST_LEVEL, get_backend
from data_export.archive.tar import TarGzStreamWriter
from data_export.archive.zip import ZipStreamWriter

from benchmarks import data
from benchmarks.harness import Comparison, Contender, compare
from benchmarks.sinks import PartSink, read_chunks

MTIME = 1_700_000_000


def verify(blobs: list[bytes], names: list[str]) -> None:
    """What is measured must be right: both archives open with the stdlib and give the bytes back."""
    zip_sink, tar_sink = io.BytesIO(), io.BytesIO()
    with ZipStreamWriter(zip_sink) as zip_writer, TarGzStreamWriter(tar_sink) as tar_writer:
        for blob, name in zip(blobs[:20], names, strict=False):
            zip_writer.add_bytes(name, b"".join(read_chunks(blob)), mtime=MTIME, compress=False)
            tar_writer.add_stream(name, read_chunks(blob), size=len(blob), mtime=MTIME)
    tar_sink.seek(0)
    with zipfile.ZipFile(zip_sink) as zip_archive, tarfile.open(fileobj=tar_sink, mode="r:gz") as tar_archive:
        for blob, name in zip(blobs[:20], names, strict=False):
            member = tar_archive.extractfile(name)
            if zip_archive.read(name) != blob or member is None or member.read() != blob:
                raise AssertionError(f"{name} does not read back")


def run(*, total_bytes: int, rounds: int) -> list[Comparison]:
    blobs = data.binaries(total_bytes)
    names = data.binary_names(blobs)
    verify(blobs, names)
    pairs = list(zip(blobs, names, strict=True))
    size = sum(map(len, blobs))
    best = get_backend()

    def zip_ours() -> int:
        with ZipStreamWriter(PartSink()) as writer:
            for blob, name in pairs:
                writer.add_bytes(name, b"".join(read_chunks(blob)), mtime=MTIME, compress=False)
        return size

    def zip_ours_stream() -> int:
        with ZipStreamWriter(PartSink()) as writer:
            for blob, name in pairs:
                writer.add_stream(name, read_chunks(blob), size_hint=len(blob), mtime=MTIME)
        return size

    def zip_peer() -> int:
        with zipfile.ZipFile(PartSink(), "w", zipfile.ZIP_STORED) as archive:
            for blob, name in pairs:
                info = zipfile.ZipInfo(name, date_time=(2023, 11, 14, 22, 13, 20))
                with archive.open(info, "w") as entry:
                    for chunk in read_chunks(blob):
                        entry.write(chunk)
        return size

    def zip_ceiling() -> int:
        sink, crc32 = PartSink(), best.crc32
        for blob in blobs:
            crc = 0
            for chunk in read_chunks(blob):
                crc = crc32(chunk, crc)
                sink.write(chunk)
        return size

    def tar_ours() -> int:
        with TarGzStreamWriter(PartSink()) as writer:
            for blob, name in pairs:
                writer.add_stream(name, read_chunks(blob), size=len(blob), mtime=MTIME)
        return size

    def tar_peer() -> int:
        with tarfile.open(fileobj=PartSink(), mode="w|gz") as archive:  # type: ignore[call-overload]
            for blob, name in pairs:
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(blob), MTIME
                archive.addfile(info, io.BytesIO(blob))
        return size

    def tar_ceiling() -> int:
        sink = PartSink()
        compressor = get_backend("isal").gzip_member(FAST_LEVEL)
        for blob in blobs:
            for chunk in read_chunks(blob):
                sink.write(compressor.compress(chunk))
        sink.write(compressor.flush())
        return size

    notes = f"{len(blobs)} incompressible files of 50-500 KB, {size / 1e6:.0f} MB"
    return [
        compare(
            "Binaries -> zip",
            "bytes",
            [
                Contender("ours: add_bytes STORED", "ours", zip_ours),
                Contender("ours: add_stream (> 16 MiB path)", "variant", zip_ours_stream),
                Contender("zipfile ZIP_STORED", "peer", zip_peer),
                Contender(f"read + CRC-32 ({best.name}) + copy", "ceiling", zip_ceiling),
            ],
            rounds=rounds,
            notes=notes,
        ),
        compare(
            "Binaries -> tar.gz",
            "bytes",
            [
                Contender("ours: TarGzStreamWriter.add_stream", "ours", tar_ours),
                Contender("tarfile w|gz", "peer", tar_peer),
                Contender("isal gzip level 1", "ceiling", tar_ceiling),
            ],
            rounds=rounds,
            notes=notes,
        ),
    ]
