"""A tar.gz built in segments (chunked exports) is ONE gzip member that every reader reads whole, Python's
streaming tarfile mode included, which stops at the end of a first member."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest
from data_export.archive import compression
from data_export.archive.compression import _crc32_combine_python, crc32_combine
from data_export.archive.tar import GZIP_HEADER, TarGzStreamWriter

MTIME = 1_700_000_000.0


def segment(files: dict[str, bytes]) -> tuple[bytes, int, int]:
    out = io.BytesIO()
    writer = TarGzStreamWriter(out, gzip_header=False)
    for name, data in files.items():
        writer.add_bytes(name, data, mtime=MTIME)
    writer.close_segment()
    return out.getvalue(), writer.crc32, writer.uncompressed_size


def assemble(segments: list[dict[str, bytes]], last: dict[str, bytes]) -> bytes:
    parts, crc, size = [GZIP_HEADER], 0, 0
    for files in segments:
        data, segment_crc, segment_size = segment(files)
        parts.append(data)
        crc, size = crc32_combine(crc, segment_crc, segment_size), size + segment_size
    tail = io.BytesIO()
    writer = TarGzStreamWriter(tail, gzip_header=False)
    for name, data in last.items():
        writer.add_bytes(name, data, mtime=MTIME)
    writer.close_final_segment(crc, size)
    return b"".join(parts) + tail.getvalue()


SEGMENTS = [
    {f"top/a/{i}.yaml": f"id: {i}\\nname: é {i}\\n".encode() for i in range(50)},
    {},  # an empty unit
    {"top/b/big.bin": os.urandom(300_000), "top/b/text.yaml": b"x: 1\\n" * 5000},
]
LAST = {"top/manifest.yaml": b"format_version: '1.0'\\n"}


def expected() -> dict[str, bytes]:
    return {name: data for files in [*SEGMENTS, LAST] for name, data in files.items()}


def test_segments_make_one_member_that_streaming_tarfile_reads_whole() -> None:
    archive = assemble(SEGMENTS, LAST)
    inflater = zlib.decompressobj(31)
    inflater.decompress(archive)
    assert inflater.eof and inflater.unused_data == b""  # one member, its trailer checked by zlib
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r|gz") as stream:
        got = {member.name: stream.extractfile(member).read() for member in stream}  # type: ignore[union-attr]
    assert got == expected()


@pytest.mark.parametrize("tool", [["gzip", "-t"], ["tar", "-tzf"], ["bsdtar", "-tzf"]])
def test_tools_accept_the_assembled_member(tool: list[str], tmp_path: Path) -> None:
    if shutil.which(tool[0]) is None:
        pytest.skip(f"{tool[0]} is not installed")
    path = tmp_path / "a.tar.gz"
    path.write_bytes(assemble(SEGMENTS, LAST))
    result = subprocess.run([*tool, str(path)], capture_output=True, check=False)
    assert result.returncode == 0, result.stderr
    if tool[0] != "gzip":
        assert set(result.stdout.decode().split()) == set(expected())


def test_a_wrong_crc_is_caught_by_readers() -> None:
    archive = bytearray(assemble(SEGMENTS, LAST))
    archive[-8] ^= 0xFF  # the trailer's CRC-32
    with pytest.raises(zlib.error):
        zlib.decompressobj(31).decompress(bytes(archive))


@pytest.mark.parametrize("sizes", [(0, 0), (1, 0), (0, 1), (5, 7), (1000, 65_537), (70_000, 3)])
def test_crc32_combine_matches_zlib(sizes: tuple[int, int]) -> None:
    first, second = os.urandom(sizes[0]), os.urandom(sizes[1])
    whole = zlib.crc32(first + second)
    assert crc32_combine(zlib.crc32(first), zlib.crc32(second), len(second)) == whole
    assert _crc32_combine_python(zlib.crc32(first), zlib.crc32(second), len(second)) == whole


def test_stdlib_only_backend_combines_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "_load", lambda name: None)
    first, second = b"hello ", b"world"
    assert crc32_combine(zlib.crc32(first), zlib.crc32(second), len(second)) == zlib.crc32(first + second)
