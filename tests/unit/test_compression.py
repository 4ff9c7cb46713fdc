"""Deflate backends: every available one (the stdlib fallback included) must produce standard output."""

from __future__ import annotations

import gzip
import os
import random
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from data_export.archive import compression
from data_export.archive.compression import (
    ASSET_LEVEL,
    DEFAULT_LEVEL,
    ENV_VAR,
    FAST_LEVEL,
    SAMPLE_WINDOW,
    DeflateBackend,
    available_backends,
    backend_name,
    deflate_pays,
    get_backend,
    sample_windows,
)

ROOT = Path(__file__).resolve().parents[2]
TEXT = b"id: product-1\nname: Huila caf\xc3\xa9\nprice: 12.5\n" * 5000
NOISE = random.Random(5).randbytes(200_000)


@pytest.fixture(params=available_backends())
def backend(request: pytest.FixtureRequest) -> DeflateBackend:
    return get_backend(request.param)


def test_stdlib_is_always_available_and_last() -> None:
    names = available_backends()
    assert names[-1] == "stdlib"
    assert backend_name() in names
    # Without the env var, the fastest one is chosen.
    assert backend_name() == (os.environ.get(ENV_VAR) or names[0])


@pytest.mark.parametrize("level", [None, 0, FAST_LEVEL, DEFAULT_LEVEL, 9])
@pytest.mark.parametrize("data", [b"", TEXT, NOISE], ids=["empty", "text", "noise"])
def test_raw_deflate_round_trips(backend: DeflateBackend, level: int | None, data: bytes) -> None:
    compressor = backend.raw_deflate(level)
    # Feed in pieces, as the writers do.
    deflated = b"".join(
        compressor.compress(data[start : start + 30_000]) for start in range(0, len(data), 30_000)
    )
    deflated += compressor.flush()
    assert zlib.decompress(deflated, -15) == data
    assert zlib.decompress(backend.deflate(data, level), -15) == data
    if data is TEXT and level != 0:
        assert len(deflated) < len(data) // 10


def test_gzip_members_round_trip_alone_and_concatenated(backend: DeflateBackend) -> None:
    members = []
    for data in (TEXT, b"", NOISE):
        compressor = backend.gzip_member()
        members.append(compressor.compress(data) + compressor.flush())
        assert gzip.decompress(members[-1]) == data
    assert gzip.decompress(b"".join(members)) == TEXT + NOISE


def test_crc32_matches_zlib(backend: DeflateBackend) -> None:
    assert backend.crc32(TEXT) == zlib.crc32(TEXT)
    assert backend.crc32(NOISE[1000:], backend.crc32(NOISE[:1000])) == zlib.crc32(NOISE)
    assert backend.crc32(memoryview(NOISE)) == zlib.crc32(NOISE)


def test_module_functions_use_the_chosen_backend() -> None:
    chosen = get_backend()
    assert chosen.name == backend_name()
    assert compression.crc32(TEXT) == zlib.crc32(TEXT)
    raw = compression.raw_deflate_compressor(DEFAULT_LEVEL)
    assert zlib.decompress(raw.compress(TEXT) + raw.flush(), -15) == TEXT
    member = compression.gzip_member_compressor(backend=get_backend("stdlib"))
    assert gzip.decompress(member.compress(TEXT) + member.flush()) == TEXT


def test_levels_map_onto_isals_scale() -> None:
    isal = DeflateBackend("isal", None)
    assert [isal.native_level(level) for level in range(10)] == [0, 1, 1, 1, 1, 1, 2, 3, 3, 3]
    stdlib = get_backend("stdlib")
    assert [stdlib.native_level(level) for level in range(10)] == list(range(10))
    for level in (-1, 10):
        with pytest.raises(ValueError, match="0-9"):
            stdlib.native_level(level)


def test_the_sample_spreads_from_the_first_byte_to_the_last() -> None:
    data = bytes(range(256)) * 1000
    windows = sample_windows(data)
    assert [len(window) for window in windows] == [SAMPLE_WINDOW] * 4
    assert bytes(windows[0]) == data[:SAMPLE_WINDOW] and bytes(windows[-1]) == data[-SAMPLE_WINDOW:]
    assert [bytes(window) for window in sample_windows(data[:10_000])] == [data[:10_000]]


def test_deflate_pays_for_text_and_flat_edges_not_for_noise(backend: DeflateBackend) -> None:
    deflate = backend.deflater(ASSET_LEVEL)
    assert deflate_pays(TEXT, deflate)
    # A product shot's shape: flat background at the top and bottom (the sample's end windows), noise between.
    photo = bytes(40_000) + NOISE + bytes(40_000)
    assert deflate_pays(photo, deflate)
    assert not deflate_pays(NOISE, deflate)
    assert not deflate_pays(b"", deflate)


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown compression backend"):
        get_backend("brotli")


def _backend_chosen_with(env_value: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, ENV_VAR: env_value, "PYTHONPATH": str(ROOT / "layers" / "shared")}
    code = "from data_export.archive.compression import backend_name; print(backend_name())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("name", available_backends())
def test_env_var_forces_the_backend(name: str) -> None:
    result = _backend_chosen_with(name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == name


def test_env_var_with_a_bad_value_fails_at_import() -> None:
    result = _backend_chosen_with("gzip9000")
    assert result.returncode != 0
    assert "unknown compression backend 'gzip9000'" in result.stderr
