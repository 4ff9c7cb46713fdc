"""The inputs of the benchmarks: records and binaries, from the realistic corpus or the synthetic extremes.

- ``binary_set("corpus", total)``: files of real formats (JPEG, PNG, PDF, SVG, CSV, text) from
  ``benchmarks.corpus.build_corpus``; ``binary_set("random", total)``: pure random bytes (the incompressible
  extreme, kept apart). Each file carries its SHA-256 (what every output is checked against) and how much
  deflate shrinks the whole of it, at the tar.gz writer's level (1) and at the zip writer's level for
  assets (``ASSET_LEVEL``): what the same-work ceilings go by, an oracle no writer has (the writers decide
  from a sample).
- ``record_set("corpus", n)``: product records from ``corpus_records`` (varied names, descriptions, GTINs,
  prices, tags, attributes: as few repeats as a real catalog); ``record_set("synthetic", n)``: the older
  generator of ``benchmarks.data`` (few distinct strings: flattering to any cache).

Building the corpus takes seconds per MiB (Pillow encodes every image), so it is cached on disk, keyed by
the seed, the size and the corpus module's source (``DATA_EXPORT_BENCH_CACHE``, else
``~/.cache/data-export-benchmarks``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_export.archive.compression import ASSET_LEVEL, FAST_LEVEL, MIN_SAVING, get_backend

SOURCES = ("corpus", "random")
RECORD_SOURCES = ("corpus", "synthetic")
TOP = "acme-coffee-export-9rmGWTfn73qSm2TjFwu33Y"
TAR_MIN_SAVING = 0.05  # the tar.gz writer stores content a sample of which deflates by less
CACHE_VERSION = 2  # of the cached BinaryFile tuples


@dataclass(frozen=True)
class BinaryFile:
    name: str  # a file name (not unique)
    content_type: str
    kind: str  # jpeg, png, pdf, svg, csv, text, random
    data: bytes
    sha256: bytes
    fast_ratio: float  # deflated size / size, at level 1 (the tar.gz writer's)
    asset_ratio: float  # the same at the zip writer's level for assets (compression.ASSET_LEVEL)

    @property
    def compressible(self) -> bool:
        """Worth deflating in a tar.gz: what its writer aims to compress (and the ceiling does)."""
        return self.fast_ratio <= 1 - TAR_MIN_SAVING

    @property
    def deflate_pays(self) -> bool:
        """Worth deflating in a zip: what its writer aims to compress (and the ceiling does)."""
        return self.asset_ratio <= 1 - MIN_SAVING


@dataclass(frozen=True)
class BinarySet:
    source: str  # "corpus" or "random"
    files: tuple[BinaryFile, ...]

    @property
    def label(self) -> str:
        return "realistic corpus" if self.source == "corpus" else "random bytes"

    @property
    def total(self) -> int:
        return sum(len(file.data) for file in self.files)

    def archive_names(self) -> list[str]:
        """A path inside an archive for each file, unique, as the export places binaries."""
        return [
            f"{TOP}/products/p{index:06d}/{'images' if file.kind in ('jpeg', 'png', 'svg') else 'documents'}/"
            f"{file.name}"
            for index, file in enumerate(self.files)
        ]

    def describe(self) -> str:
        counts: Counter[str] = Counter()
        sizes: Counter[str] = Counter()
        for file in self.files:
            counts[file.kind] += 1
            sizes[file.kind] += len(file.data)
        kinds = ", ".join(f"{kind} {counts[kind]} ({sizes[kind] / 1e6:.1f} MB)" for kind in counts)
        compressible = sum(len(f.data) for f in self.files if f.compressible) / max(1, self.total)
        pays = sum(len(f.data) for f in self.files if f.deflate_pays) / max(1, self.total)
        return (
            f"{self.label}: {len(self.files)} files, {self.total / 1e6:.0f} MB ({kinds}); "
            f"{compressible:.0%} of the bytes in files deflate shrinks by >= 5% at level 1, "
            f"{pays:.0%} by >= 2% at the zip writer's asset level"
        )


def cache_folder() -> Path:
    folder = Path(
        os.environ.get("DATA_EXPORT_BENCH_CACHE") or Path.home() / ".cache" / "data-export-benchmarks"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _corpus_module() -> Any:
    from benchmarks import corpus

    return corpus


def _cached(name: str, build: Any) -> Any:
    """``build()``, pickled under ``name`` (which must say everything the result depends on)."""
    path = cache_folder() / f"{name}.pickle"
    if path.exists():
        try:
            with path.open("rb") as file:
                return pickle.load(file)
        except (OSError, EOFError, pickle.UnpicklingError):
            pass
    value = build()
    partial = path.with_suffix(".partial")
    with partial.open("wb") as file:
        pickle.dump(value, file, protocol=pickle.HIGHEST_PROTOCOL)
    partial.replace(path)
    return value


def _corpus_version() -> str:
    corpus = _corpus_module()
    return hashlib.sha256(Path(corpus.__file__).read_bytes()).hexdigest()[:12]


def _binary(name: str, content_type: str, kind: str, data: bytes) -> BinaryFile:
    backend, size = get_backend(), max(1, len(data))
    fast = len(backend.deflate(data, FAST_LEVEL)) / size
    asset = len(backend.deflate(data, ASSET_LEVEL)) / size
    return BinaryFile(name, content_type, kind, data, hashlib.sha256(data).digest(), fast, asset)


def binary_set(source: str, total_bytes: int, *, seed: int = 7, big: bool = False) -> BinarySet:
    """About ``total_bytes`` of files from ``source`` ("corpus" or "random")."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}: one of {SOURCES}")
    corpus = _corpus_module()
    if source == "random":
        made = corpus.random_corpus(seed, total_bytes)
        return BinarySet(source, tuple(_binary(f.name, f.content_type, f.kind, f.data) for f in made))

    def build() -> tuple[BinaryFile, ...]:
        made = corpus.build_corpus(seed, total_bytes, big=big)
        return tuple(_binary(f.name, f.content_type, f.kind, f.data) for f in made)

    key = f"corpus-v{CACHE_VERSION}-{_corpus_version()}-{seed}-{total_bytes}-{'big' if big else 'small'}"
    return BinarySet(source, _cached(key, build))


def record_set(source: str, count: int, *, seed: int = 42) -> list[dict[str, Any]]:
    if source == "corpus":
        records: list[dict[str, Any]] = _corpus_module().corpus_records(seed, count)
        return records
    if source == "synthetic":
        from benchmarks import data

        return data.records(count, seed)
    raise ValueError(f"unknown record source {source!r}: one of {RECORD_SOURCES}")


def strings_of(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings_of(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_of(item)


def repetition(records: Sequence[dict[str, Any]]) -> str:
    """How many of the records' strings (keys and values) are repeats: what a string cache can save."""
    strings = [text for record in records for text in strings_of(record)]
    distinct = len(set(strings))
    return (
        f"{len(strings):,} strings, {distinct:,} distinct ({1 - distinct / max(1, len(strings)):.0%} repeats)"
    )
