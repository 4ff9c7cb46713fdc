"""TarGzStreamWriter: archives built here must open, byte for byte, in every common tar reader."""

from __future__ import annotations

import gzip
import io
import math
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from data_export.archive import ContentMismatchError, WriterBrokenError
from data_export.archive.compression import available_backends, get_backend
from data_export.archive.tar import BLOCK_SIZE, TarGzStreamWriter, tar_header
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.archive_tools import (
    MTIME,
    UNSAFE_NAMES,
    chunked,
    read_tree,
    require,
    run,
    sample_files,
)

READERS = ["tarfile", "tar", "bsdtar", "bsdtar-stdin", "7z"]


def extract(reader: str, archive: Path, dest: Path) -> dict[str, bytes]:
    """Extract ``archive`` with ``reader`` into ``dest`` and return the files found."""
    if reader == "tarfile":
        with tarfile.open(archive, "r:gz") as tf:
            return {member.name: tf.extractfile(member).read() for member in tf}  # type: ignore[union-attr]
    require("bsdtar" if reader == "bsdtar-stdin" else reader)
    dest.mkdir(parents=True)
    if reader == "tar":
        run(["tar", "-xzf", archive, "-C", dest])
    elif reader == "bsdtar":
        run(["bsdtar", "-xf", archive, "-C", dest])
    elif reader == "bsdtar-stdin":
        run(["bsdtar", "-xzf", "-", "-C", dest], stdin=archive)
    elif reader == "7z":  # gzip layer, then tar layer
        run(["7z", "x", "-y", f"-o{dest.parent / 'gunzipped'}", archive])
        run(["7z", "x", "-y", f"-o{dest}", dest.parent / "gunzipped" / archive.name.removesuffix(".gz")])
    else:
        raise AssertionError(reader)
    return read_tree(dest)


def add_both_ways(writer: TarGzStreamWriter, files: dict[str, bytes]) -> dict[str, bytes]:
    """Add every file in memory and as a stream; return the expected archive content."""
    for name, data in files.items():
        writer.add_bytes(f"bytes/{name}", data, mtime=MTIME)
        writer.add_stream(f"stream/{name}", [b"", *chunked(data, 7_000), b""], size=len(data), mtime=MTIME)
    return {f"{kind}/{name}": data for name, data in files.items() for kind in ("bytes", "stream")}


@pytest.fixture(scope="module", params=["default", *available_backends()])
def sample_tar(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, bytes]]:
    backend = None if request.param == "default" else get_backend(request.param)
    archive = tmp_path_factory.mktemp("tar") / "sample.tar.gz"
    with archive.open("wb") as sink, TarGzStreamWriter(sink, backend=backend) as writer:
        expected = add_both_ways(writer, sample_files())
    return archive, dict(sorted(expected.items()))


@pytest.mark.parametrize("reader", READERS)
def test_every_reader_extracts_every_entry_byte_for_byte(
    reader: str, sample_tar: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    archive, expected = sample_tar
    assert dict(sorted(extract(reader, archive, tmp_path / "out").items())) == expected


def test_members_are_plain_0644_files_owned_by_nobody_in_particular(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    with archive.open("wb") as sink, TarGzStreamWriter(sink) as writer:
        add_both_ways(writer, {"huila café.jpg": b"\xff\xd8" * 100})
    with tarfile.open(archive, "r:gz") as tf:
        for member in tf:
            assert member.isreg()
            assert (member.mode, member.uid, member.gid, member.uname, member.gname) == (0o644, 0, 0, "", "")
            assert member.mtime == MTIME
    require("tar")
    run(["tar", "-xzf", archive, "-C", tmp_path])
    assert (tmp_path / "stream" / "huila café.jpg").stat().st_mtime == MTIME


def test_sizes_are_tracked(tmp_path: Path) -> None:
    sink = io.BytesIO()
    writer = TarGzStreamWriter(sink)
    writer.add_bytes("a.txt", b"a" * 1000, mtime=MTIME)
    writer.add_stream("b.txt", [b"b" * 10], size=10, mtime=MTIME)
    writer.close()
    output = sink.getvalue()
    assert writer.compressed_size == len(output)
    # header + 1000 bytes padded to 1024, header + 10 bytes padded to 512, end of archive
    assert writer.uncompressed_size == len(gzip.decompress(output)) == 512 + 1024 + 512 + 512 + 1024


def write_member(files: dict[str, bytes], *, last: bool) -> bytes:
    sink = io.BytesIO()
    writer = TarGzStreamWriter(sink)
    add_both_ways(writer, files)
    writer.close(end_of_archive=last)
    return sink.getvalue()


@pytest.mark.parametrize("reader", READERS)
def test_concatenated_members_form_one_archive(reader: str, tmp_path: Path) -> None:
    files = sample_files()
    first = write_member({f"one/{name}": data for name, data in files.items()}, last=False)
    second = write_member({f"two/{name}": data for name, data in files.items()}, last=True)
    archive = tmp_path / "chunked.tar.gz"
    archive.write_bytes(first + second)
    expected = {
        f"{kind}/{chunk}/{name}": data
        for chunk in ("one", "two")
        for kind in ("bytes", "stream")
        for name, data in files.items()
    }
    assert extract(reader, archive, tmp_path / "out") == expected


def test_only_the_last_member_ends_the_archive(tmp_path: Path) -> None:
    files = {"a.txt": b"a" * 700}
    entries = b"".join(
        tar_header(f"{kind}/a.txt", 700, MTIME) + files["a.txt"] + bytes(324) for kind in ("bytes", "stream")
    )
    first, last = write_member(files, last=False), write_member(files, last=True)
    assert gzip.decompress(first) == entries
    assert gzip.decompress(last) == entries + bytes(2 * BLOCK_SIZE)
    require("gzip")
    archive = tmp_path / "two-members.tar.gz"
    archive.write_bytes(first + last)
    run(["gzip", "-t", archive])
    assert run(["gzip", "-dc", archive]).encode() == 2 * entries + bytes(2 * BLOCK_SIZE)


def test_pax_records_for_what_ustar_cannot_hold() -> None:
    big = tar_header("big.bin", 9 * 2**30, MTIME)
    assert b" size=9663676416\n" in big
    long_name = "products/" + "x" * 200 + "/café.jpg"
    named = tar_header(long_name, 1, MTIME)
    assert f"path={long_name}\n".encode() in named
    plain = tar_header("a.txt", 1, MTIME)
    assert len(plain) == BLOCK_SIZE  # no PAX header when ustar suffices
    for header, name, size in ((big, "big.bin", 9 * 2**30), (named, long_name, 1)):
        assert len(header) % BLOCK_SIZE == 0
        # A streaming reader parses the header without needing the content.
        with tarfile.open(fileobj=io.BytesIO(header), mode="r|") as tf:
            member = tf.next()
            assert member is not None
            assert (member.name, member.size) == (name, size)


@pytest.mark.parametrize(
    ("chunks", "message"),
    [([b"hello", b" world!"], "longer than the declared 11 bytes"), ([b"hello"], "content is 5 bytes, 11")],
)
def test_add_stream_refuses_content_of_another_size(chunks: list[bytes], message: str) -> None:
    writer = TarGzStreamWriter(io.BytesIO())
    with pytest.raises(ContentMismatchError, match=message):
        writer.add_stream("a.txt", chunks, size=11, mtime=MTIME)
    with pytest.raises(WriterBrokenError):
        writer.add_bytes("b.txt", b"b", mtime=MTIME)
    with pytest.raises(WriterBrokenError):
        writer.close()


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_unsafe_names_are_rejected(name: str) -> None:
    sink = io.BytesIO()
    writer = TarGzStreamWriter(sink)
    with pytest.raises(ValueError):
        writer.add_bytes(name, b"x", mtime=MTIME)
    with pytest.raises(ValueError):
        writer.add_stream(name, [b"x"], size=1, mtime=MTIME)
    writer.add_bytes("ok.txt", b"x", mtime=MTIME)
    writer.close()
    with tarfile.open(fileobj=io.BytesIO(sink.getvalue()), mode="r:gz") as tf:
        assert tf.getnames() == ["ok.txt"]


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
    writer = TarGzStreamWriter(sink)
    for index in range(1000):
        writer.add_bytes(f"{index}.txt", b"tiny %d" % index, mtime=MTIME)
    assert sink.calls <= 1
    seen_while_streaming: list[int] = []
    noise = random.Random(3).randbytes(65_536)  # incompressible, so output flows at the input's pace

    def source() -> Iterator[bytes]:
        for index in range(200):
            seen_while_streaming.append(len(sink.data))
            yield noise[index:] + noise[:index]

    writer.add_stream("big.bin", source(), size=200 * len(noise), mtime=MTIME)
    writer.close()
    assert seen_while_streaming[-1] > 10 * 2**20
    with tarfile.open(fileobj=io.BytesIO(bytes(sink.data)), mode="r:gz") as tf:
        assert len(tf.getnames()) == 1001


def test_closed_writer_refuses_entries() -> None:
    writer = TarGzStreamWriter(io.BytesIO())
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.add_bytes("a", b"", mtime=MTIME)


@given(
    name=st.text(st.sampled_from("ab-_.~ 0/"), min_size=1, max_size=110).filter(
        lambda name: all(part not in ("", ".", "..") for part in name.split("/"))
    ),
    size=st.integers(min_value=0, max_value=8**11 + 5),
    mtime=st.floats(min_value=-10.0, max_value=8.0**11 + 5, allow_nan=False),
)
def test_headers_read_back_as_written(name: str, size: int, mtime: float) -> None:
    """The fast ustar path and the PAX fallback both mean exactly the entry described."""
    header = tar_header(name, size, mtime)
    assert len(header) % BLOCK_SIZE == 0
    with tarfile.open(fileobj=io.BytesIO(header), mode="r|") as tf:  # checks the header checksum too
        member = tf.next()
        assert member is not None
        assert (member.name, member.size, member.mtime) == (name, size, math.floor(mtime))
        assert (member.type, member.mode, member.uid, member.gid) == (tarfile.REGTYPE, 0o644, 0, 0)
        assert (member.uname, member.gname) == ("", "")
    plain = len(name) <= 100 and size < 8**11 and 0 <= mtime < 8**11
    assert (len(header) == BLOCK_SIZE) == plain


def gzip_stream_of(files: list[tuple[str, bytes]], backend: str, *, stream: bool) -> bytes:
    sink = io.BytesIO()
    with TarGzStreamWriter(sink, backend=get_backend(backend)) as writer:
        for name, data in files:
            if stream:
                writer.add_stream(name, chunked(data, 300_000), size=len(data), mtime=MTIME)
            else:
                writer.add_bytes(name, data, mtime=MTIME)
    return sink.getvalue()


@pytest.mark.parametrize("stream", [False, True], ids=["bytes", "stream"])
@pytest.mark.parametrize("backend", available_backends())
def test_incompressible_content_is_stored_and_compressible_content_compressed(
    backend: str, stream: bool, tmp_path: Path
) -> None:
    rng = random.Random(5)
    noise, text = rng.randbytes(1_000_000), b"name: Huila\nroast: light\n" * 40_000
    files = [("a.yaml", text), ("b.jpg", noise), ("c.yaml", text), ("d.jpg", noise[1:]), ("e.yaml", text)]
    output = gzip_stream_of(files, backend, stream=stream)
    # Stored: the noise costs its size plus block headers; the text still shrinks a lot.
    assert len(noise) * 2 < len(output) < len(noise) * 2.01 + len(text) * 3 / 10
    with tarfile.open(fileobj=io.BytesIO(output), mode="r:gz") as tf:
        assert [(m.name, tf.extractfile(m).read()) for m in tf] == files  # type: ignore[union-attr]
    require("gzip")
    archive = tmp_path / "mixed.tar.gz"
    archive.write_bytes(output)
    run(["gzip", "-t", archive])


def test_a_small_first_chunk_or_a_small_file_is_compressed() -> None:
    noise = random.Random(6).randbytes(200_000)
    sink = io.BytesIO()
    with TarGzStreamWriter(sink) as writer:
        # Nothing to judge from 10 bytes: compressed (at a small cost), and still correct.
        writer.add_stream("late.bin", [noise[:10], noise[10:]], size=len(noise), mtime=MTIME)
    assert len(sink.getvalue()) > len(noise)
    with tarfile.open(fileobj=io.BytesIO(sink.getvalue()), mode="r:gz") as tf:
        assert tf.extractfile("late.bin").read() == noise  # type: ignore[union-attr]
