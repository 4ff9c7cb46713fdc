"""Deflate libraries and levels on the export's three kinds of content: the basis of the levels chosen.

- one record at a time (a zip entry each): microseconds per ~900-byte record and the size ratio;
- the records as one stream (tar.gz): MB/s and ratio;
- binaries streamed in 1 MiB chunks (tar.gz): MB/s and ratio, and deflate stored blocks (the caller says
  which binaries: random bytes, the incompressible extreme).
"""

from __future__ import annotations

import statistics
import time
import zlib
from collections.abc import Callable
from importlib import import_module
from typing import Any

from data_export.archive import BatchingWriter, StoredBlockFramer
from data_export.yaml_emit import dump_record

from benchmarks.sinks import PartSink

CHOICES = [
    ("isal", 0),
    ("isal", 1),
    ("isal", 2),
    ("zlib-ng", 1),
    ("zlib-ng", 6),
    ("stdlib", 1),
    ("stdlib", 6),
]
MODULES = {"isal": "isal.isal_zlib", "zlib-ng": "zlib_ng.zlib_ng", "stdlib": "zlib"}
CHUNK = 1 << 20


def median_seconds(run: Callable[[], Any], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def measure(
    module: Any, level: int, documents: list[bytes], chunks: list[memoryview], repeats: int
) -> dict[str, float]:
    stream = b"".join(documents)
    size = sum(map(len, chunks))

    def one_by_one() -> list[bytes]:
        return [module.compress(document, level, -15) for document in documents]

    def gzip_stream() -> int:
        compressor = module.compressobj(level, zlib.DEFLATED, 31)
        return sum(len(compressor.compress(chunk)) for chunk in chunks) + len(compressor.flush())

    record_seconds = median_seconds(one_by_one, repeats)
    stream_seconds = median_seconds(lambda: module.compress(stream, level, -15), repeats)
    binary_seconds = median_seconds(gzip_stream, max(1, repeats // 2))
    return {
        "record_us": record_seconds / len(documents) * 1e6,
        "record_ratio": sum(map(len, one_by_one())) / len(stream),
        "stream_mb_s": len(stream) / stream_seconds / 1e6,
        "stream_ratio": len(module.compress(stream, level, -15)) / len(stream),
        "binary_mb_s": size / binary_seconds / 1e6,
        "binary_ratio": gzip_stream() / size,
    }


def run(*, records: list[dict[str, Any]], binaries: list[bytes], repeats: int) -> list[dict[str, Any]]:
    documents = [dump_record(record) for record in records]
    blob = b"".join(binaries)
    chunks = [memoryview(blob)[start : start + CHUNK] for start in range(0, len(blob), CHUNK)]
    rows: list[dict[str, Any]] = []
    for library, level in CHOICES:
        try:
            module = import_module(MODULES[library])
        except ImportError:
            continue
        rows.append(
            {"library": library, "level": level, **measure(module, level, documents, chunks, repeats)}
        )

    def stored_blocks() -> int:
        out = BatchingWriter(PartSink())
        framer = StoredBlockFramer(out)
        for chunk in chunks:
            framer.write(chunk)
        framer.finish(final=True)
        out.flush()
        return out.offset

    seconds = median_seconds(stored_blocks, repeats)
    rows.append(
        {
            "library": "stored blocks",
            "level": None,
            "binary_mb_s": len(blob) / seconds / 1e6,
            "binary_ratio": stored_blocks() / len(blob),
        }
    )
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    print("\nDeflate per kind of content (one core)")
    print(
        f"  {'library, level':16} {'record us':>10} {'ratio':>6} {'stream MB/s':>12} {'ratio':>6}"
        f" {'binary MB/s':>12} {'ratio':>7}"
    )
    for row in rows:
        name = row["library"] if row["level"] is None else f"{row['library']} {row['level']}"
        if "record_us" in row:
            text = (
                f"{row['record_us']:10.2f} {row['record_ratio']:6.3f} {row['stream_mb_s']:12.0f}"
                f" {row['stream_ratio']:6.3f}"
            )
        else:
            text = f"{'':>10} {'':>6} {'':>12} {'':>6}"
        print(f"  {name:16} {text} {row['binary_mb_s']:12.0f} {row['binary_ratio']:7.4f}")
