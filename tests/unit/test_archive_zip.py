"""ZipStreamWriter: archives built here must open, byte for byte, in every common unzipper."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
from data_export.archive import ContentMismatchError, WriterBrokenError
from data_export.archive.compression import available_backends, get_backend
from data_export.archive.zip import (
    METHOD_DEFLATED,
    METHOD_STORED,
    ZipEntry,
    ZipStreamWriter,
    stored_deflate_size,
    write_central_directory,
)

from tests.unit.archive_tools import (
    MTIME,
    UNSAFE_NAMES,
    chunked,
    has_tool,
    read_tree,
    require,
    run,
    sample_files,
)

# Reads the archive sequentially with java.util.zip.ZipInputStream, which verifies every
# entry's CRC and sizes. With a destination it extracts; without, it lists "name<TAB>size".
JAVA_ZIP_CHECK = """
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.zip.*;

public class ZipCheck {
    public static void main(String[] args) throws IOException {
        PrintStream stdout = new PrintStream(new FileOutputStream(FileDescriptor.out), true, "UTF-8");
        Path out = args.length > 1 ? Paths.get(args[1]).toAbsolutePath().normalize() : null;
        byte[] buf = new byte[1 << 16];
        try (ZipInputStream zin = new ZipInputStream(
                new BufferedInputStream(new FileInputStream(args[0])), StandardCharsets.UTF_8)) {
            ZipEntry entry;
            while ((entry = zin.getNextEntry()) != null) {
                OutputStream sink = OutputStream.nullOutputStream();
                if (out != null) {
                    Path path = out.resolve(entry.getName()).normalize();
                    if (!path.startsWith(out)) throw new IOException("unsafe name " + entry.getName());
                    Files.createDirectories(path.getParent());
                    sink = Files.newOutputStream(path);
                }
                long size = 0;
                try (OutputStream os = sink) {
                    int n;
                    while ((n = zin.read(buf)) > 0) { os.write(buf, 0, n); size += n; }
                }
                if (out == null) stdout.println(entry.getName() + "\\t" + size);
            }
        }
    }
}
"""

READERS = ["zipfile", "unzip", "7z", "bsdtar", "bsdtar-stdin", "jar", "java-zis"]
_TOOLS = {"zipfile": (), "bsdtar-stdin": ("bsdtar",), "java-zis": ("java",)}


@pytest.fixture(scope="session")
def java_zip_check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory holding the compiled ZipCheck class (skips if there is no JDK)."""
    require("javac", "java")
    classes = tmp_path_factory.mktemp("java")
    source = classes / "ZipCheck.java"
    source.write_text(JAVA_ZIP_CHECK)
    run(["javac", "-d", classes, source])
    return classes


def java_major() -> int:
    result = subprocess.run(["java", "-version"], capture_output=True, text=True, check=True)
    match = re.search(r'version "(\d+)', result.stderr)
    assert match, result.stderr
    return int(match.group(1))


def extract(reader: str, archive: Path, dest: Path, java_classes: Path | None = None) -> dict[str, bytes]:
    """Extract ``archive`` with ``reader`` into ``dest`` and return the files found."""
    require(*_TOOLS.get(reader, (reader,)))
    if reader == "zipfile":
        with zipfile.ZipFile(archive) as zf:
            assert zf.testzip() is None
            return {info.filename: zf.read(info) for info in zf.infolist()}
    dest.mkdir(parents=True)
    if reader == "unzip":
        run(["unzip", "-q", archive, "-d", dest])
    elif reader == "7z":
        run(["7z", "x", "-y", f"-o{dest}", archive])
    elif reader == "bsdtar":
        run(["bsdtar", "-xf", archive, "-C", dest])
    elif reader == "bsdtar-stdin":  # a pipe: libarchive must read the local headers sequentially
        run(["bsdtar", "-xf", "-", "-C", dest], stdin=archive)
    elif reader == "jar":
        run(["jar", "xf", archive.resolve()], cwd=dest)
    elif reader == "java-zis":
        assert java_classes is not None
        run(["java", "-cp", java_classes, "ZipCheck", archive, dest])
    else:
        raise AssertionError(reader)
    return read_tree(dest)


def list_names(reader: str, archive: Path, java_classes: Path | None = None) -> list[str]:
    """Entry names in archive order, as a listing (no extraction) with ``reader`` sees them."""
    require(*_TOOLS.get(reader, (reader,)))
    if reader == "zipfile":
        with zipfile.ZipFile(archive) as zf:
            return zf.namelist()
    if reader == "unzip":
        run(["unzip", "-tqq", archive])
        return run(["unzip", "-Z1", archive]).splitlines()
    if reader == "7z":
        output = run(["7z", "l", "-slt", "-ba", archive])
        return [line[len("Path = ") :] for line in output.splitlines() if line.startswith("Path = ")]
    if reader in ("bsdtar", "bsdtar-stdin"):
        return run(["bsdtar", "-tf", "-"], stdin=archive).splitlines()
    if reader == "jar":
        return run(["jar", "tf", archive]).splitlines()
    if reader == "java-zis":
        return [
            line.split("\t")[0]
            for line in run(["java", "-cp", java_classes or "", "ZipCheck", archive]).splitlines()
        ]
    raise AssertionError(reader)


def add_all_ways(writer: ZipStreamWriter, files: dict[str, bytes], *, size_hints: bool) -> dict[str, bytes]:
    """Add every file through every entry kind; return the expected archive content."""
    expected: dict[str, bytes] = {}
    for name, data in files.items():
        writer.add_bytes(f"deflated/{name}", data, mtime=MTIME)
        writer.add_bytes(f"stored/{name}", data, mtime=MTIME, compress=False)
        writer.add_stored(
            f"stored-stream/{name}",
            chunked(data, 10_000),
            size=len(data),
            crc32=zlib.crc32(data),
            mtime=MTIME,
        )
        # Empty chunks in between must change nothing.
        chunks = [b"", *chunked(data, 7_000), b""]
        writer.add_stream(f"stream/{name}", chunks, size_hint=len(data) if size_hints else None, mtime=MTIME)
        # Assets: deflated where a sample says it pays (all-bytes.bin, the YAML), else stored (the noise).
        writer.add_file(f"file/{name}", data, mtime=MTIME)
        hint = len(data) if size_hints else None
        writer.add_stream(f"stream-deflate/{name}", chunks, size_hint=hint, mtime=MTIME, compress=True)
        expected.update({f"{kind}/{name}": data for kind in ENTRY_KINDS})
    return expected


ENTRY_KINDS = ("deflated", "stored", "stored-stream", "stream", "file", "stream-deflate")


@dataclass(frozen=True)
class Variant:
    force_zip64: bool = False
    size_hints: bool = True
    backend: str | None = None


VARIANTS = {
    "plain": Variant(),
    "zip64": Variant(force_zip64=True),
    "unknown-sizes": Variant(size_hints=False),
    "zip64-unknown-sizes": Variant(force_zip64=True, size_hints=False),
    **{f"backend-{name}": Variant(backend=name) for name in available_backends()},
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def sample_zip(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Variant, Path, dict[str, bytes]]:
    variant = VARIANTS[request.param]
    archive = tmp_path_factory.mktemp("zip") / f"{request.param}.zip"
    with archive.open("wb") as sink:
        writer = ZipStreamWriter(
            sink,
            force_zip64=variant.force_zip64,
            backend=get_backend(variant.backend) if variant.backend else None,
        )
        expected = add_all_ways(writer, sample_files(), size_hints=variant.size_hints)
        writer.close()
    return variant, archive, expected


@pytest.mark.parametrize("reader", READERS)
def test_every_reader_extracts_every_entry_byte_for_byte(
    reader: str,
    sample_zip: tuple[Variant, Path, dict[str, bytes]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    variant, archive, expected = sample_zip
    classes = request.getfixturevalue("java_zip_check") if reader == "java-zis" else None
    if reader == "java-zis" and not variant.size_hints and java_major() < 23:
        pytest.skip(
            "ZipInputStream before JDK 23 misreads Zip64 data descriptors of small entries (JDK-8303866)"
        )
    assert extract(reader, archive, tmp_path / "out", classes) == expected
    assert list_names(reader, archive, classes) == list(expected)


def test_entries_carry_utf8_flag_unix_mode_and_utc_mtime(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with archive.open("wb") as sink, ZipStreamWriter(sink) as writer:
        add_all_ways(writer, {"huila café.jpg": b"\xff\xd8" * 5000}, size_hints=True)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            assert info.flag_bits & 0x800, info.filename
            assert info.create_system == 3
            assert info.external_attr >> 16 == 0o100644
            assert info.date_time == time.gmtime(MTIME)[:6]
    require("unzip")
    run(["unzip", "-q", archive, "-d", tmp_path / "out"])
    extracted = tmp_path / "out" / "stream" / "huila café.jpg"
    # unzip takes the exact UTC time from the "UT" extra field, whatever the local time zone.
    assert extracted.stat().st_mtime == MTIME
    assert extracted.stat().st_mode & 0o777 == 0o644 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_add_bytes_compresses_only_when_it_helps() -> None:
    sink = io.BytesIO()
    with ZipStreamWriter(sink) as writer:
        text = writer.add_bytes("a.yaml", b"name: value\n" * 1000, mtime=MTIME)
        noise = writer.add_bytes("b.jpg", os.urandom(5000), mtime=MTIME)
        plain = writer.add_bytes("c.yaml", b"name: value\n" * 1000, mtime=MTIME, compress=False)
        empty = writer.add_bytes("d.txt", b"", mtime=MTIME)
    assert text.method == METHOD_DEFLATED
    assert text.compressed_size < text.uncompressed_size // 10
    assert (noise.method, noise.compressed_size) == (METHOD_STORED, 5000)
    assert (plain.method, plain.compressed_size) == (METHOD_STORED, 12_000)
    assert (empty.method, empty.compressed_size) == (METHOD_STORED, 0)
    assert zipfile.ZipFile(sink).testzip() is None


@pytest.mark.parametrize("chunk_size", [1, 1000, 65_535, 65_536, 200_000])
@pytest.mark.parametrize("size", [0, 1, 65_535, 65_536, 300_007])
def test_add_stream_frames_full_stored_blocks_whatever_the_chunking(size: int, chunk_size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    sink = io.BytesIO()
    with ZipStreamWriter(sink) as writer:
        entry = writer.add_stream("s.bin", chunked(data, chunk_size), size_hint=size, mtime=MTIME)
    assert entry.compressed_size == stored_deflate_size(size)
    assert (entry.uncompressed_size, entry.crc32, entry.zip64_header) == (size, zlib.crc32(data), False)
    # The entry data is a valid raw deflate stream holding the content.
    with zipfile.ZipFile(sink) as zf:
        assert zf.read("s.bin") == data


def test_zip64_structures_appear_only_when_needed() -> None:
    small = io.BytesIO()
    with ZipStreamWriter(small) as writer:
        writer.add_stream("s", [b"x"], size_hint=1, mtime=MTIME)
    assert b"PK\x06\x06" not in small.getvalue()
    assert b"PK\x07\x08" in small.getvalue()
    forced = io.BytesIO()
    with ZipStreamWriter(forced, force_zip64=True) as writer:
        writer.add_bytes("b", b"x", mtime=MTIME)
    data = forced.getvalue()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    assert data.endswith(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00")  # EOCD: all "see Zip64"


def test_stream_without_size_hint_uses_zip64_descriptor() -> None:
    sink = io.BytesIO()
    with ZipStreamWriter(sink) as writer:
        entry = writer.add_stream("s", [b"abc"], size_hint=None, mtime=MTIME)
    assert entry.zip64_header
    descriptor = b"PK\x07\x08" + zlib.crc32(b"abc").to_bytes(4, "little")
    descriptor += stored_deflate_size(3).to_bytes(8, "little") + (3).to_bytes(8, "little")
    assert descriptor in sink.getvalue()
    with zipfile.ZipFile(sink) as zf:
        assert zf.read("s") == b"abc"


@pytest.fixture(scope="module")
def many_entries_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive = tmp_path_factory.mktemp("many") / "many.zip"
    with archive.open("wb") as sink, ZipStreamWriter(sink) as writer:
        for index in range(70_000):
            writer.add_bytes(f"records/{index}.yaml", b"%d\n" % index, mtime=MTIME, compress=False)
    return archive


@pytest.mark.parametrize("reader", READERS)
def test_more_than_65535_entries(reader: str, many_entries_zip: Path, request: pytest.FixtureRequest) -> None:
    assert b"PK\x06\x06" in many_entries_zip.read_bytes()[-200:]
    classes = request.getfixturevalue("java_zip_check") if reader == "java-zis" else None
    assert list_names(reader, many_entries_zip, classes) == [
        f"records/{index}.yaml" for index in range(70_000)
    ]
    if reader == "zipfile":
        with zipfile.ZipFile(many_entries_zip) as zf:
            assert zf.testzip() is None
            assert zf.read("records/69999.yaml") == b"69999\n"


def write_chunk(files: dict[str, bytes], prefix: str) -> tuple[bytes, list[ZipEntry]]:
    """One chunk of a parallel build: its own object, starting at offset 0, no central directory."""
    sink = io.BytesIO()
    writer = ZipStreamWriter(sink)
    add_all_ways(writer, {f"{prefix}/{name}": data for name, data in files.items()}, size_hints=True)
    writer.close(central_directory=False)
    assert writer.offset == len(sink.getvalue())
    # Chunks record their entries somewhere (JSON) for the assembler.
    return sink.getvalue(), [ZipEntry(**json.loads(json.dumps(asdict(entry)))) for entry in writer.entries]


@pytest.mark.parametrize("reader", ["zipfile", "unzip", "7z", "bsdtar-stdin", "java-zis"])
def test_concatenated_chunks_with_shifted_central_directory(
    reader: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    files = sample_files()
    first, first_entries = write_chunk(files, "one")
    second, second_entries = write_chunk(files, "two")
    entries = [*first_entries, *(entry.shifted(len(first)) for entry in second_entries)]
    archive = tmp_path / "assembled.zip"
    with archive.open("wb") as sink:
        sink.write(first + second)
        cd_size = write_central_directory(sink, entries, cd_offset=len(first) + len(second))
    assert archive.stat().st_size == len(first) + len(second) + cd_size
    expected = {
        f"{kind}/{chunk}/{name}": data
        for chunk in ("one", "two")
        for kind in ENTRY_KINDS
        for name, data in files.items()
    }
    classes = request.getfixturevalue("java_zip_check") if reader == "java-zis" else None
    assert extract(reader, archive, tmp_path / "out", classes) == expected


def test_writer_starting_at_an_offset_accounts_for_the_bytes_before_it(tmp_path: Path) -> None:
    prefix = b"#!/bin/sh\necho self-extracting\nexit 0\n"
    archive = tmp_path / "prefixed.zip"
    with archive.open("wb") as sink:
        sink.write(prefix)
        with ZipStreamWriter(sink, offset=len(prefix)) as writer:
            writer.add_bytes("a.txt", b"a" * 100, mtime=MTIME)
            writer.add_stream("b.txt", [b"b"], size_hint=1, mtime=MTIME)
    assert writer.entries[0].header_offset == len(prefix)
    assert extract("zipfile", archive, tmp_path / "z") == {"a.txt": b"a" * 100, "b.txt": b"b"}
    assert extract("unzip", archive, tmp_path / "u") == {"a.txt": b"a" * 100, "b.txt": b"b"}


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_unsafe_names_are_rejected(name: str) -> None:
    sink = io.BytesIO()
    writer = ZipStreamWriter(sink)
    with pytest.raises(ValueError):
        writer.add_bytes(name, b"x", mtime=MTIME)
    with pytest.raises(ValueError):
        writer.add_stream(name, [b"x"], size_hint=1, mtime=MTIME)
    with pytest.raises(ValueError):
        writer.add_stored(name, [b"x"], size=1, crc32=zlib.crc32(b"x"), mtime=MTIME)
    # A rejected name writes nothing, so the writer remains usable.
    writer.add_bytes("ok.txt", b"x", mtime=MTIME)
    writer.close()
    assert zipfile.ZipFile(sink).namelist() == ["ok.txt"]


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ([b"hello", b" world!"], "longer than the declared 11 bytes"),
        ([b"hello"], "content is 5 bytes, 11 were declared"),
        ([b"hellO world"], "CRC-32"),
    ],
)
def test_add_stored_refuses_content_that_does_not_match(chunks: list[bytes], message: str) -> None:
    writer = ZipStreamWriter(io.BytesIO())
    with pytest.raises(ContentMismatchError, match=message):
        writer.add_stored("a.txt", chunks, size=11, crc32=zlib.crc32(b"hello world"), mtime=MTIME)
    # The bytes already written make the archive a lie: it must not be finished.
    with pytest.raises(WriterBrokenError):
        writer.add_bytes("b.txt", b"b", mtime=MTIME)
    with pytest.raises(WriterBrokenError):
        writer.close()


def test_failing_source_stream_breaks_the_writer() -> None:
    def source() -> Iterator[bytes]:
        yield b"partial"
        raise OSError("connection reset")

    writer = ZipStreamWriter(io.BytesIO())
    with pytest.raises(OSError, match="connection reset"):
        writer.add_stream("a.bin", source(), size_hint=None, mtime=MTIME)
    with pytest.raises(WriterBrokenError):
        writer.close()


class CountingSink:
    def __init__(self) -> None:
        self.calls = 0
        self.data = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.calls += 1
        self.data += data
        return len(data)


def test_small_writes_are_batched_and_streams_reach_the_sink_while_streaming() -> None:
    sink = CountingSink()
    writer = ZipStreamWriter(sink)
    for index in range(1000):
        writer.add_bytes(f"{index}.txt", b"tiny", mtime=MTIME)
    assert sink.calls <= 1  # ~70 KB of headers and data so far: nothing or one batch

    seen_while_streaming: list[int] = []

    def source() -> Iterator[bytes]:
        for _ in range(128):
            seen_while_streaming.append(len(sink.data))
            yield bytes(65_536)

    writer.add_stream("big.bin", source(), size_hint=None, mtime=MTIME)
    writer.close()
    # Constant memory: the sink had most of the stream before the source ended.
    assert seen_while_streaming[-1] > 7 * 2**20
    assert sink.calls < 40
    with zipfile.ZipFile(io.BytesIO(bytes(sink.data))) as zf:
        assert zf.testzip() is None
        assert len(zf.namelist()) == 1001


def test_entry_shift_and_zip64_need() -> None:
    entry = ZipEntry("a", 10, 0, 5, 5, METHOD_STORED, MTIME, 0x800)
    assert not entry.needs_zip64
    moved = entry.shifted(2**32)
    assert moved.header_offset == 2**32 + 10
    assert moved.needs_zip64
    assert entry.header_offset == 10


def test_closed_writer_refuses_entries() -> None:
    writer = ZipStreamWriter(io.BytesIO())
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.add_bytes("a", b"", mtime=MTIME)


class SparseFileSink:
    """A real file where all-zero writes become holes, so multi-GiB archives cost no disk or time."""

    def __init__(self, file: io.BufferedRandom) -> None:
        self._file = file
        self._zeros = bytes(8 * 2**20)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if len(data) == len(self._zeros) and data == self._zeros:
            self._file.seek(len(data), os.SEEK_CUR)
        else:
            self._file.write(data)
        return len(data)


def test_entry_and_offsets_past_4_gib(tmp_path: Path) -> None:
    size = 4 * 2**30 + 8 * 2**20  # 4 GiB + 8 MiB of zeros, as a hole
    chunk = bytes(8 * 2**20)
    crc = 0
    backend = get_backend()
    for _ in range(size // len(chunk)):
        crc = backend.crc32(chunk, crc)
    archive = tmp_path / "sparse.zip"
    with archive.open("w+b") as file:
        writer = ZipStreamWriter(SparseFileSink(file))
        big = writer.add_stored(
            "big.bin", (chunk for _ in range(size // len(chunk))), size=size, crc32=crc, mtime=MTIME
        )
        after = writer.add_bytes("after.txt", b"after 4 GiB\n", mtime=MTIME)
        streamed = writer.add_stream("streamed.txt", [b"streamed\n"], size_hint=9, mtime=MTIME)
        writer.close()
        file.truncate()
    assert big.needs_zip64 and big.zip64_header
    assert after.header_offset > 2**32 and after.needs_zip64
    assert not streamed.zip64_header
    with zipfile.ZipFile(archive) as zf:
        assert zf.getinfo("big.bin").file_size == size
        assert zf.read("after.txt") == b"after 4 GiB\n"
        assert zf.read("streamed.txt") == b"streamed\n"
    if has_tool("unzip"):
        output = run(["unzip", "-p", archive, "after.txt", "streamed.txt"])
        assert output == "after 4 GiB\nstreamed\n"
        listing = run(["unzip", "-Zl", archive])
        assert str(size) in listing
    if has_tool("7z"):
        output = run(["7z", "x", "-so", archive, "streamed.txt"])
        assert output == "streamed\n"


@pytest.mark.slow
def test_single_streamed_entry_over_4_gib(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    size = 4 * 2**30 + 65_537  # past 4 GiB and not a whole number of stored blocks
    chunk = bytes(4 * 2**20)

    def zeros() -> Iterator[bytes]:
        remaining = size
        while remaining:
            piece = chunk[: min(remaining, len(chunk))]
            remaining -= len(piece)
            yield piece

    archive = tmp_path / "big.zip"
    with archive.open("wb") as sink, ZipStreamWriter(sink) as writer:
        entry = writer.add_stream("zeros.bin", zeros(), size_hint=None, mtime=MTIME)
        writer.add_bytes("after.txt", b"after\n", mtime=MTIME)
    assert entry.uncompressed_size == size and entry.needs_zip64
    with zipfile.ZipFile(archive) as zf:
        assert zf.testzip() is None  # reads every byte and checks the CRC
        assert zf.getinfo("zeros.bin").file_size == size
    require("unzip")
    assert "No errors detected" in run(["unzip", "-t", archive])
    if has_tool("java"):
        # Past 4 GiB even old ZipInputStreams expect the Zip64 data descriptor.
        classes = request.getfixturevalue("java_zip_check")
        listing = run(["java", "-cp", classes, "ZipCheck", archive])
        assert listing.splitlines() == [f"zeros.bin\t{size}", "after.txt\t6"]
