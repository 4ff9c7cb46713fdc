"""Deflate with the fastest library available: isal, then zlib-ng, then stdlib zlib.

The choice is made once at import and can be forced with the environment
variable ``DATA_EXPORT_COMPRESSION`` (``isal``, ``zlib-ng`` or ``stdlib``);
``backend_name()`` reports it.

Levels are given on zlib's 0-9 scale everywhere and translated per library.
isal only has levels 0-3 and its level 0 expands incompressible data by ~20 %
(static Huffman codes only), so it is never picked for a positive level:

=========  ==================  ======================
zlib       isal                meaning
=========  ==================  ======================
0          0                   (zlib: no compression)
1-5        1                   ``FAST_LEVEL`` (1)
6          2                   ``DEFAULT_LEVEL`` (6)
7-9        3                   best, much slower
=========  ==================  ======================

Measured here on YAML text, one core: isal 1 ~5.8 GB/s, zlib-ng 1 ~2.7 GB/s,
zlib 1 ~0.8 GB/s, all with similar ratios; CRC-32 isal ~25 GB/s, zlib ~4 GB/s.

``sample_ratio`` and ``deflate_pays`` judge from a sample whether a file is
worth deflating (``MIN_SAVING``), so that the zip writer stores what deflate
cannot shrink (most photos, PNGs, compressed PDFs) without deflating it whole
first.
"""

from __future__ import annotations

import functools
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Protocol

from data_export.archive import BytesLike

ENV_VAR = "DATA_EXPORT_COMPRESSION"
FAST_LEVEL = 1
DEFAULT_LEVEL = 6
# Files (assets) in zip: deflated at this level when a sample says it pays. With isal, level 2: as fast as
# level 1 on media (~0.4-0.7 GB/s), and 0.1-0.3 % smaller on the realistic corpus (docs/performance.md).
# With zlib-ng or the standard library's zlib (fallbacks), level 6 itself: zipfile's sizes, ~10x slower.
ASSET_LEVEL = DEFAULT_LEVEL
# Deflate pays when a sample of the content shrinks by at least this fraction: JPEG product shots on a light
# background (5-15 %), PDFs, SVG, CSV and text do; full-frame photos (~1 %), most PNGs and random bytes
# do not, and go in stored at memory speed instead of the ~0.4-0.7 GB/s that deflate needs to find that out.
MIN_SAVING = 0.02
# The sample: SAMPLE_WINDOWS stretches of SAMPLE_WINDOW bytes spread evenly from the content's first byte
# to its last, deflated together. Spread, because a photo's compressible rows (a flat background) lie at
# its top and bottom; the first window takes in the headers, which errs towards deflating (a photo that
# saves ~1 %), never towards storing what would shrink. Content shorter than SAMPLE_MIN_SIZE is not
# sampled: deflating it whole costs little.
SAMPLE_WINDOWS = 4
SAMPLE_WINDOW = 4 << 10
SAMPLE_MIN_SIZE = 64 << 10
# Preference order; values are the modules offering a zlib-compatible API.
_MODULES = {"isal": "isal.isal_zlib", "zlib-ng": "zlib_ng.zlib_ng", "stdlib": "zlib"}
_RAW_DEFLATE_WBITS = -15
_GZIP_WBITS = 31


class Compressor(Protocol):
    """The zlib ``compressobj`` interface, shared by the three libraries."""

    def compress(self, data: BytesLike, /) -> bytes: ...

    def flush(self, mode: int = zlib.Z_FINISH, /) -> bytes: ...


@dataclass(frozen=True)
class DeflateBackend:
    name: str
    module: Any

    def native_level(self, level: int) -> int:
        """Translate a zlib-scale level (0-9) into this library's own scale."""
        if not 0 <= level <= 9:
            raise ValueError(f"compression level must be 0-9, got {level}")
        if self.name != "isal":
            return level
        if level == 0:
            return 0
        return 1 if level < DEFAULT_LEVEL else 2 if level == DEFAULT_LEVEL else 3

    def raw_deflate(self, level: int | None = None) -> Compressor:
        """A raw deflate stream (no header), as zip entries hold. ``None`` means ``FAST_LEVEL``."""
        return self._compressobj(level, _RAW_DEFLATE_WBITS)

    def deflate(self, data: BytesLike, level: int | None = None) -> bytes:
        """``data`` as one complete raw deflate stream (cheaper than a compressor for small data)."""
        native = self.native_level(FAST_LEVEL if level is None else level)
        result: bytes = self.module.compress(data, native, _RAW_DEFLATE_WBITS)
        return result

    def deflater(self, level: int | None = None) -> Callable[[BytesLike], bytes]:
        """``deflate`` at a level resolved once, for many small inputs (zip entries of records)."""
        native = self.native_level(FAST_LEVEL if level is None else level)
        deflate: Callable[[BytesLike], bytes] = functools.partial(
            self.module.compress, level=native, wbits=_RAW_DEFLATE_WBITS
        )
        return deflate

    def gzip_member(self, level: int | None = None) -> Compressor:
        """One complete gzip member (header, deflate, CRC and size trailer). ``None`` means ``FAST_LEVEL``."""
        return self._compressobj(level, _GZIP_WBITS)

    def crc32(self, data: BytesLike, value: int = 0) -> int:
        result: int = self.module.crc32(data, value)
        return result

    def _compressobj(self, level: int | None, wbits: int) -> Compressor:
        native = self.native_level(FAST_LEVEL if level is None else level)
        compressor: Compressor = self.module.compressobj(native, zlib.DEFLATED, wbits)
        return compressor


def sample_windows(
    data: BytesLike, *, windows: int = SAMPLE_WINDOWS, window: int = SAMPLE_WINDOW
) -> list[memoryview]:
    """``windows`` stretches of ``window`` bytes spread evenly over ``data``, first and last at its ends (all
    of ``data`` as one window when it is no longer than that)."""
    view = memoryview(data).cast("B")
    if len(view) <= windows * window or windows < 2:
        return [view[: windows * window]]
    span = len(view) - window
    return [view[index * span // (windows - 1) :][:window] for index in range(windows)]


def sample_of(data: BytesLike) -> BytesLike:
    """The sample windows of ``data``, joined."""
    parts = sample_windows(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def sample_ratio(data: BytesLike, deflate: Callable[[BytesLike], bytes]) -> float:
    """What ``deflate`` makes of a sample of ``data`` (``sample_of``), as a fraction of it (1.0 if empty)."""
    sample = sample_of(data)
    return len(deflate(sample)) / len(sample) if len(sample) else 1.0


def deflate_pays(
    data: BytesLike, deflate: Callable[[BytesLike], bytes], *, min_saving: float = MIN_SAVING
) -> bool:
    """True when ``deflate`` shrinks a sample of ``data`` (``sample_of``) by at least ``min_saving`` of it."""
    return sample_ratio(data, deflate) <= 1 - min_saving


def _load(name: str) -> DeflateBackend | None:
    try:
        return DeflateBackend(name, import_module(_MODULES[name]))
    except ImportError:
        return None


def available_backends() -> tuple[str, ...]:
    """Names of the libraries importable here, fastest first (``stdlib`` always last)."""
    return tuple(name for name in _MODULES if _load(name) is not None)


def get_backend(name: str | None = None) -> DeflateBackend:
    """The backend chosen at import, or the one named (ValueError if unknown or not installed)."""
    if name is None:
        return _CHOSEN
    if name not in _MODULES:
        raise ValueError(f"unknown compression backend {name!r}; expected one of {', '.join(_MODULES)}")
    backend = _load(name)
    if backend is None:
        raise ValueError(f"compression backend {name!r} is not installed")
    return backend


def _choose(forced: str | None) -> DeflateBackend:
    if forced:
        return get_backend(forced)
    for name in _MODULES:
        backend = _load(name)
        if backend is not None:
            return backend
    raise AssertionError("unreachable: stdlib zlib is always importable")


# A misconfigured environment fails at import rather than silently running slower.
_CHOSEN = _choose(os.environ.get(ENV_VAR, "").strip() or None)


def backend_name() -> str:
    """Name of the library in use: ``isal``, ``zlib-ng`` or ``stdlib``."""
    return _CHOSEN.name


def raw_deflate_compressor(level: int | None = None, *, backend: DeflateBackend | None = None) -> Compressor:
    """Raw deflate (wbits -15) at a zlib-scale level; ``None`` means ``FAST_LEVEL``."""
    return (backend or _CHOSEN).raw_deflate(level)


def gzip_member_compressor(level: int | None = None, *, backend: DeflateBackend | None = None) -> Compressor:
    """One gzip member (wbits 31) at a zlib-scale level; ``None`` means ``FAST_LEVEL``."""
    return (backend or _CHOSEN).gzip_member(level)


def crc32(data: BytesLike, value: int = 0) -> int:
    """CRC-32 (as in zip and gzip) with the chosen library, continuing from ``value``."""
    return _CHOSEN.crc32(data, value)


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """CRC-32 of A+B from CRC-32(A), CRC-32(B) and len(B), without the bytes: lets an assembler close one
    gzip member over segments built apart. isal and zlib-ng have it; stdlib zlib does not."""
    for backend in (_load("isal"), _load("zlib-ng")):
        if backend is not None:
            return int(backend.module.crc32_combine(crc1, crc2, length2))
    return _crc32_combine_python(crc1, crc2, length2)


def _gf2_times(matrix: list[int], vector: int) -> int:
    total, row = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def _crc32_combine_python(crc1: int, crc2: int, length2: int) -> int:
    """zlib's crc32_combine: apply length2 zero bytes to crc1 by repeated squaring of the shift operator."""
    if length2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(31)]  # the operator for one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:
        even = _gf2_square(odd)  # first pass: one zero byte
        if length2 & 1:
            crc1 = _gf2_times(even, crc1)
        length2 >>= 1
        if not length2:
            break
        odd = _gf2_square(even)
        if length2 & 1:
            crc1 = _gf2_times(odd, crc1)
        length2 >>= 1
        if not length2:
            break
    return crc1 ^ crc2
