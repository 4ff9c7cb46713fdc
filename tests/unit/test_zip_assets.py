"""Zip compresses what is compressible: assets are deflated where a sample says it pays, in entry forms that
every unzipper reads (Java's ZipInputStream included: STORED only with sizes and CRC up front), compressed
sizes reach the chunk indexes of a chunked build, and on the realistic corpus the archive stays within 1 % of
``zipfile``'s level 6."""

from __future__ import annotations

import hashlib
import io
import json
import random
import struct
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest
from data_export.archive.compression import available_backends, get_backend
from data_export.archive.zip import (
    FLAG_DATA_DESCRIPTOR,
    METHOD_DEFLATED,
    METHOD_STORED,
    U32_MAX,
    ZipEntry,
    ZipStreamWriter,
    stored_deflate_size,
    write_central_directory,
)
from data_export.export import entries as entries_module
from data_export.export.entries import ZipEntries
from data_export.storage.objects import Asset
from data_export.yaml_emit import dump_record

from benchmarks.corpus import CorpusFile, build_corpus, corpus_records
from tests.unit.archive_tools import MTIME, chunked
from tests.unit.test_archive_zip import READERS, extract, java_major, java_zip_check, list_names  # noqa: F401

TEXT = b"".join(b"%d,Huila caf\xc3\xa9 340 g,21.50,CAD,in_stock\n" % n for n in range(12_000))  # ~470 KB
NOISE = random.Random(11).randbytes(300_000)
PHOTO = bytes(40_000) + random.Random(12).randbytes(400_000) + bytes(40_000)  # a product shot's shape
LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")


def local_header(archive: bytes, entry: ZipEntry) -> tuple[int, int, int, int, int]:
    """Flags, method, CRC-32, compressed and uncompressed size as the entry's local header has them."""
    fields = LOCAL_HEADER.unpack_from(archive, entry.header_offset)
    assert fields[0] == 0x04034B50
    return fields[2], fields[3], fields[6], fields[7], fields[8]


@pytest.fixture(params=available_backends())
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_add_file_puts_sizes_and_crc_up_front_deflated_or_stored(backend_name: str) -> None:
    sink = io.BytesIO()
    with ZipStreamWriter(sink, backend=get_backend(backend_name)) as writer:
        text = writer.add_file("text.csv", TEXT, mtime=MTIME)
        photo = writer.add_file("photo.jpg", PHOTO, mtime=MTIME)
        noise = writer.add_file("noise.jpg", NOISE, mtime=MTIME)
        small_text = writer.add_file("small.txt", TEXT[:5000], mtime=MTIME)
        small_noise = writer.add_file("small.bin", NOISE[:5000], mtime=MTIME)  # tried whole: not smaller
        empty = writer.add_file("empty.txt", b"", mtime=MTIME)
    archive = sink.getvalue()
    assert text.method == photo.method == small_text.method == METHOD_DEFLATED
    assert text.compressed_size < len(TEXT) // 4 and photo.compressed_size < len(PHOTO) * 0.9
    assert (noise.method, noise.compressed_size) == (METHOD_STORED, len(NOISE))
    assert (small_noise.method, empty.method) == (METHOD_STORED, METHOD_STORED)
    for entry in (text, photo, noise, small_text, small_noise, empty):
        flags, method, crc, compressed, size = local_header(archive, entry)
        assert not flags & FLAG_DATA_DESCRIPTOR, entry.name  # Java's ZipInputStream: never for STORED
        assert (method, crc, compressed, size) == (
            entry.method,
            entry.crc32,
            entry.compressed_size,
            entry.uncompressed_size,
        )
    with zipfile.ZipFile(sink) as zf:
        assert zf.testzip() is None
        assert zf.read("text.csv") == TEXT and zf.read("photo.jpg") == PHOTO and zf.read("noise.jpg") == NOISE


@pytest.mark.parametrize("chunk_size", [1, 1000, 65_536, 300_000])
def test_add_stream_deflates_compressible_content_on_the_fly(backend_name: str, chunk_size: int) -> None:
    sink = io.BytesIO()
    data = TEXT[:200_000] if chunk_size == 1 else TEXT
    with ZipStreamWriter(sink, backend=get_backend(backend_name)) as writer:
        text = writer.add_stream(
            "text.csv", chunked(data, chunk_size), size_hint=len(data), mtime=MTIME, compress=True
        )
        noise = writer.add_stream(
            "noise.jpg", chunked(NOISE, chunk_size), size_hint=len(NOISE), mtime=MTIME, compress=True
        )
    assert text.method == METHOD_DEFLATED and text.flags & FLAG_DATA_DESCRIPTOR
    assert text.compressed_size < len(data) // 4 and text.uncompressed_size == len(data)
    assert noise.compressed_size == stored_deflate_size(len(NOISE))  # stored blocks, as without compress
    assert (text.zip64_header, noise.zip64_header) == (False, False)
    with zipfile.ZipFile(sink) as zf:
        assert zf.testzip() is None
        assert zf.read("text.csv") == data and zf.read("noise.jpg") == NOISE


def test_the_sampled_head_survives_a_source_that_reuses_its_buffer() -> None:
    def reused() -> Iterator[bytearray]:
        buffer = bytearray(10_000)
        for start in range(0, len(TEXT), len(buffer)):
            piece = TEXT[start : start + len(buffer)]
            buffer[: len(piece)] = piece
            yield buffer if len(piece) == len(buffer) else bytearray(piece)

    sink = io.BytesIO()
    with ZipStreamWriter(sink) as writer:
        writer.add_stream("text.csv", reused(), size_hint=len(TEXT), mtime=MTIME, compress=True)
    assert zipfile.ZipFile(sink).read("text.csv") == TEXT


def test_a_deflated_stream_reaches_the_sink_while_streaming() -> None:
    sizes: list[int] = []
    sink = io.BytesIO()

    def source() -> Iterator[bytes]:
        for _ in range(160):
            sizes.append(sink.tell())
            yield TEXT[:131_072]

    with ZipStreamWriter(sink) as writer:
        entry = writer.add_stream("big.csv", source(), size_hint=None, mtime=MTIME, compress=True)
    assert entry.compressed_size < entry.uncompressed_size // 4
    assert sizes[-1] > entry.compressed_size // 2  # constant memory: not held until the end


def test_a_deflated_stream_near_4_gib_gets_a_zip64_descriptor() -> None:
    hint = U32_MAX - 1_000_000  # stored blocks would fit 32 bits; deflate's bound does not
    assert stored_deflate_size(hint) < U32_MAX
    sink = io.BytesIO()
    with ZipStreamWriter(sink) as writer:
        stored = writer.add_stream("a.txt", [b"abc"], size_hint=hint, mtime=MTIME)
        deflated = writer.add_stream("b.txt", [b"abc"], size_hint=hint, mtime=MTIME, compress=True)
    assert (stored.zip64_header, deflated.zip64_header) == (False, True)
    with zipfile.ZipFile(sink) as zf:
        assert zf.read("a.txt") == zf.read("b.txt") == b"abc"


# -- realistic files, every reader ---------------------------------------------------------------------------


@cache
def realistic_files() -> dict[str, bytes]:
    """Real formats from the benchmark corpus: text, PNG, a full-frame photo (stored), CSV, a product shot
    (deflated by ~6 %), a small PDF and a 1.6 MB photo."""
    files = build_corpus(5, 1_500_000)
    assert {file.kind for file in files} >= {"jpeg", "png", "pdf", "csv", "text"}
    return {f"{index:02d}/{file.name}": file.data for index, file in enumerate(files)}


@pytest.fixture(scope="module")
def realistic_zip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes], list[ZipEntry]]:
    archive = tmp_path_factory.mktemp("realistic") / "realistic.zip"
    expected: dict[str, bytes] = {}
    with archive.open("wb") as sink, ZipStreamWriter(sink) as writer:
        for name, data in realistic_files().items():
            writer.add_file(f"file/{name}", data, mtime=MTIME)
            chunks = chunked(data, 65_536)
            writer.add_stream(f"stream/{name}", chunks, size_hint=len(data), mtime=MTIME, compress=True)
            expected.update({f"file/{name}": data, f"stream/{name}": data})
    return archive, expected, list(writer.entries)


def test_realistic_files_take_every_form(
    realistic_zip: tuple[Path, dict[str, bytes], list[ZipEntry]],
) -> None:
    _, _, entries = realistic_zip
    files = [entry for entry in entries if entry.name.startswith("file/")]
    streams = [entry for entry in entries if entry.name.startswith("stream/")]
    assert {entry.method for entry in files} == {METHOD_STORED, METHOD_DEFLATED}
    assert not any(entry.flags & FLAG_DATA_DESCRIPTOR for entry in files)
    deflated = [e for e in streams if e.compressed_size < stored_deflate_size(e.uncompressed_size)]
    assert deflated and len(deflated) < len(streams)  # some streams deflated, some stored blocks
    assert all(entry.flags & FLAG_DATA_DESCRIPTOR and entry.method == METHOD_DEFLATED for entry in streams)


@pytest.mark.parametrize("reader", READERS)
def test_every_reader_extracts_realistic_files(
    reader: str,
    realistic_zip: tuple[Path, dict[str, bytes], list[ZipEntry]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    archive, expected, _ = realistic_zip
    classes = request.getfixturevalue("java_zip_check") if reader == "java-zis" else None
    assert extract(reader, archive, tmp_path / "out", classes) == expected
    assert list_names(reader, archive, classes) == list(expected)


# -- the builder's entries, whole and in chunks -----------------------------------------------------------


def asset_of(data: bytes, chunk: int = 1 << 20) -> Asset:
    return Asset(size=len(data), chunks=iter(chunked(data, chunk)))


def write_unit(files: dict[str, bytes]) -> tuple[bytes, list[ZipEntry], list[tuple[str, int, str]]]:
    """One unit of a chunked build as ``build_unit`` writes it: local entries, no central directory, its
    entry index through JSON (as the unit's index object carries it)."""
    sink = io.BytesIO()
    unit = ZipEntries(sink, datetime.fromtimestamp(MTIME, UTC))
    for name, data in files.items():
        unit.add_asset(name, asset_of(data, 100_000))
    index = unit.close_chunk()
    zip_entries = json.loads(json.dumps([dict(vars(entry)) for entry in index.zip_entries]))
    return sink.getvalue(), [ZipEntry(**entry) for entry in zip_entries], list(unit.files)


@pytest.mark.parametrize("reader", ["zipfile", "unzip", "7z", "bsdtar-stdin", "java-zis"])
def test_chunk_indexes_carry_compressed_sizes_to_the_assembled_archive(
    reader: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    # Assets over 200 KB stream (deflated or stored blocks, data descriptor); smaller ones are read whole.
    monkeypatch.setattr(entries_module, "BUFFERED_ASSET_LIMIT", 200_000)
    files = realistic_files()
    names = list(files)
    first, first_entries, first_files = write_unit({f"one/{name}": files[name] for name in names[:4]})
    second, second_entries, second_files = write_unit({f"two/{name}": files[name] for name in names[4:]})
    entries = [*first_entries, *(entry.shifted(len(first)) for entry in second_entries)]
    assert any(
        e.compressed_size < e.uncompressed_size and not e.flags & FLAG_DATA_DESCRIPTOR for e in entries
    )
    assert any(e.compressed_size < e.uncompressed_size and e.flags & FLAG_DATA_DESCRIPTOR for e in entries)
    archive = tmp_path / "assembled.zip"
    with archive.open("wb") as sink:
        sink.write(first + second)
        write_central_directory(sink, entries, cd_offset=len(first) + len(second))
    expected = {name: files[name.split("/", 1)[1]] for name in [e.name for e in entries]}
    # The manifest's view of each file: its content, whatever the entry made of it.
    for path, size, sha256 in [*first_files, *second_files]:
        assert (size, sha256) == (len(expected[path]), hashlib.sha256(expected[path]).hexdigest())
    classes = request.getfixturevalue("java_zip_check") if reader == "java-zis" else None
    assert extract(reader, archive, tmp_path / "out", classes) == expected


# -- size: within 1 % of zipfile's level 6 on the realistic corpus -----------------------------------------


def test_zip_is_within_one_percent_of_zipfile_level_6_on_the_realistic_corpus() -> None:
    """The builder's zip (records at the fast level, assets through ``ZipEntries.add_asset``) against
    ``zipfile`` deflating everything at level 6, on a modest corpus (~6 MB, seed 1: JPEG, PNG, PDF, SVG,
    text) and 200 records. A size check, not a timing one."""
    corpus: list[CorpusFile] = build_corpus(1, 6_000_000)
    records = [(f"r/{record['id']}.yaml", dump_record(record)) for record in corpus_records(1, 200)]
    ours_sink, peer_sink, stored_sink = io.BytesIO(), io.BytesIO(), io.BytesIO()
    ours = ZipEntries(ours_sink, datetime.fromtimestamp(MTIME, UTC))
    with (
        zipfile.ZipFile(peer_sink, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as peer,
        ZipStreamWriter(stored_sink) as before,  # what the builder did before: assets STORED
    ):
        for index, file in enumerate(corpus):
            name = f"p/{index}/{file.name}"
            ours.add_asset(name, asset_of(file.data))
            peer.writestr(name, file.data)
            before.add_bytes(name, file.data, mtime=MTIME, compress=False)
        for name, data in records:
            ours.add_file(name, data)
            peer.writestr(name, data)
            before.add_bytes(name, data, mtime=MTIME)
        ours.close()
    ours_size, peer_size = len(ours_sink.getvalue()), len(peer_sink.getvalue())
    ratio = ours_size / peer_size
    assert ratio <= 1.01, f"ours {ours_size:,} B, zipfile level 6 {peer_size:,} B: {ratio:.4f}"
    assert len(stored_sink.getvalue()) / peer_size > 1.03  # the corpus has something to compress
    with zipfile.ZipFile(ours_sink) as archive:
        assert archive.testzip() is None  # every entry's CRC-32 checked
        assert [info.filename for info in archive.infolist()] == [
            *(f"p/{index}/{file.name}" for index, file in enumerate(corpus)),
            *(name for name, _ in records),
        ]


def test_zip_entries_read_assets_whole_up_to_the_limit_then_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(entries_module, "BUFFERED_ASSET_LIMIT", 300_000)
    sink = io.BytesIO()
    unit = ZipEntries(sink, datetime.fromtimestamp(MTIME, UTC))
    for name, data in (("text.csv", TEXT), ("noise.jpg", NOISE), ("small.csv", TEXT[:100_000])):
        unit.add_asset(name, asset_of(data, 65_536))
    unit.close()
    with zipfile.ZipFile(sink) as zf:
        assert zf.testzip() is None
        big_text, noise, small_text = zf.infolist()
    assert big_text.flag_bits & FLAG_DATA_DESCRIPTOR and big_text.compress_size < len(TEXT) // 4
    assert (noise.compress_type, noise.flag_bits & FLAG_DATA_DESCRIPTOR) == (METHOD_STORED, 0)
    assert small_text.compress_type == METHOD_DEFLATED and not small_text.flag_bits & FLAG_DATA_DESCRIPTOR
    assert [file.sha256 for file in unit.files] == [
        hashlib.sha256(data).hexdigest() for data in (TEXT, NOISE, TEXT[:100_000])
    ]
