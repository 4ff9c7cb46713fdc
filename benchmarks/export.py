"""Whole export through the local stack (moto server), ours against naive designs, each in its own process.

The parent runs moto (pinned to one core); each export runs in a fresh child process pinned to the other
core (``benchmarks.export_child``), so that the client's peak memory and disk writes are measured alone.
Rates are content bytes (binaries as seeded) per second.

Each variant (no latency; every GET delayed, as real S3's first byte) and format runs one warm-up export
(ours) and then ``rounds`` rounds of every design, in alternating order. Every archive, the warm-up's too,
is downloaded and opened (``zipfile``, ``tarfile``): every product's YAML loaded and compared with the
fixture, every binary's SHA-256 compared with its source's, the count of records of every section checked;
the ceiling's upload (assets one after another) is checked asset by asset. Only then is it deleted.

``run_big`` exports a big organization (4 GB) once, ours only, for its peak memory with read-ahead on.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import yaml

from benchmarks.harness import Comparison, Contender, VerificationError, check
from benchmarks.synthetic import SyntheticOrg

REPO = Path(__file__).resolve().parents[1]
DESIGNS = {
    "ours": ("ours: ExportBuilder, streamed multipart upload, 8 reads ahead", "ours"),
    "naive": ("naive: zipfile deflate 6 / tarfile level 9 on disk, reads one by one, upload_file", "peer"),
    "naive-tuned": (
        "tuned naive: 8 reads ahead, level 1, JPEG/PNG/PDF stored (zip); on disk, upload_file",
        "peer",
    ),
    "floor": ("S3 traffic alone: reads (8 ahead) + multipart upload", "ceiling"),
}
DOWNLOAD_CHUNK = 8 << 20


def comparison_name(archive_format: str, latency_ms: float = 0) -> str:
    name = f"Whole export ({archive_format}), local stack"
    return f"{name}, {latency_ms:g} ms per S3 GET" if latency_ms else name


def run_child(
    design: str,
    archive_format: str,
    organization_id: str,
    cpu: int | None,
    latency_ms: float = 0,
    environment: dict[str, str] | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        result_path = Path(folder) / "result.json"
        env = {
            **os.environ,
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "BENCH_S3_GET_LATENCY_MS": f"{latency_ms:g}",
            **(environment or {}),
        }
        command = [sys.executable, "-m", "benchmarks.export_child", design, archive_format, organization_id]
        completed = subprocess.run(
            [*command, "-" if cpu is None else str(cpu), str(result_path)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"{design} {archive_format} export failed:\n{completed.stderr[-4000:]}")
        result: dict[str, Any] = json.loads(result_path.read_text())
        return result


# --- verification -----------------------------------------------------------------------------------------


def download(s3: Any, bucket: str, key: str, folder: Path) -> Path:
    path = folder / key.rsplit("/", 1)[-1]
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with path.open("wb") as file:
        while chunk := body.read(DOWNLOAD_CHUNK):
            file.write(chunk)
    return path


def archive_entries(path: Path, archive_format: str) -> Iterator[tuple[str, IO[bytes]]]:
    """Every file of the archive, in order, with a reader of its content."""
    if archive_format == "zip":
        with zipfile.ZipFile(path) as opened:
            for info in opened.infolist():
                with opened.open(info) as content:  # zipfile checks each CRC-32 as it reads
                    yield info.filename, content
    else:
        with tarfile.open(path, "r|gz") as opened:  # streamed, as a user's tar reads it
            for member in opened:
                extracted = opened.extractfile(member)
                check(extracted is not None, f"{member.name} is not a regular file")
                assert extracted is not None
                yield member.name, extracted


def sha256_of(content: IO[bytes]) -> bytes:
    digest = hashlib.sha256()
    while chunk := content.read(DOWNLOAD_CHUNK):
        digest.update(chunk)
    return digest.digest()


def verify_archive(path: Path, archive_format: str, org: SyntheticOrg) -> None:
    """The archive holds every record of the fixture as YAML, and every binary byte for byte."""
    documents: dict[str, Any] = {}
    hashes: dict[str, bytes] = {}
    tops: set[str] = set()
    for name, content in archive_entries(path, archive_format):
        top, _, inner = name.partition("/")
        tops.add(top)
        if inner.endswith(".yaml") and inner.count("/") == 1:  # records: <section>/<id>.yaml
            documents[inner] = yaml.load(content.read(), Loader=yaml.CSafeLoader)
        else:
            hashes[inner] = sha256_of(content)
    check(len(tops) == 1, f"not one top-level folder: {sorted(tops)[:3]}")
    for section, count in org.counts.items():
        found = sum(1 for name in documents if name.startswith(f"{section}/"))
        check(found == count, f"{section}: {found} records in the archive, {count} seeded")
    binaries = 0
    for product_id, (fields, expected) in org.expected.items():
        document = documents.get(f"products/{product_id}.yaml")
        check(isinstance(document, dict), f"products/{product_id}.yaml is missing")
        assert isinstance(document, dict)
        for field, value in fields.items():
            check(document.get(field) == value, f"product {product_id}: {field} differs from the fixture")
        for field, sources in expected.items():
            refs = document.get(field) or []
            check(
                len(refs) == len(sources), f"product {product_id}: {len(refs)} {field}, {len(sources)} seeded"
            )
            for ref, (sha256, size) in zip(refs, sources, strict=True):
                got = hashes.get(str(ref.get("file")))
                check(got == sha256, f"product {product_id}: {ref.get('file')} differs from its source")
                check(ref.get("size_bytes", size) == size, f"product {product_id}: wrong size_bytes")
                binaries += 1
    check(binaries == org.images, f"{binaries} binaries verified, {org.images} seeded")


def verify_floor(path: Path, order: Sequence[str], org: SyntheticOrg) -> None:
    """The ceiling's upload: every asset's bytes, one after another, in the order it read them."""
    check(len(order) == org.images, f"the ceiling read {len(order)} assets, {org.images} seeded")
    with path.open("rb") as file:
        for key in order:
            *_, product_id, field, index = key.split("/")
            sha256, size = org.expected[product_id][1][field][int(index)]
            check(
                hashlib.sha256(file.read(size)).digest() == sha256, f"ceiling: {key} differs from its source"
            )
        check(file.read(1) == b"", "ceiling: bytes left over")


def verified_size(
    s3: Any, bucket: str, result: dict[str, Any], archive_format: str, org: SyntheticOrg
) -> int:
    """Download the export's object, check it (raises VerificationError), delete it; its size in bytes."""
    key = result["object_key"]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-verify-") as folder:
            path = download(s3, bucket, key, Path(folder))
            if result["design"] == "floor":
                verify_floor(path, result["asset_order"], org)
            else:
                verify_archive(path, archive_format, org)
            size = path.stat().st_size
        check(
            size == result["archive_bytes"],
            f"{size} bytes downloaded, the export said {result['archive_bytes']}",
        )
        return size
    except VerificationError as error:
        raise VerificationError(f"{result['design']} {archive_format}: {error}") from error
    finally:
        s3.delete_object(Bucket=bucket, Key=key)  # moto keeps objects in memory


# --- runs -------------------------------------------------------------------------------------------------


def design_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
        "archive_bytes": runs[-1]["archive_bytes"],
        "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
        "rss_before_bytes": max(r["rss_before_bytes"] for r in runs),
        "temp_disk_peak_bytes": max(r["temp_disk_peak_bytes"] for r in runs),
        "disk_write_bytes": max(r["disk_write_bytes"] for r in runs),
    }


def run(
    stack: Any,
    org: SyntheticOrg,
    *,
    rounds: int,
    formats: Sequence[str],
    cpu: int | None,
    latency_ms: float = 0,
    designs: Sequence[str] = tuple(DESIGNS),
) -> list[Comparison]:
    s3, bucket = stack.client("s3"), stack.physical["ExportsBucket"]
    content_bytes = org.image_bytes
    comparisons = []
    for archive_format in formats:
        contenders = {design: Contender(DESIGNS[design][0], DESIGNS[design][1]) for design in designs}
        results: dict[str, list[dict[str, Any]]] = {design: [] for design in designs}
        # A warm-up export (moto's first requests, the page cache), verified like the others, not counted.
        warmup = run_child("ours", archive_format, org.organization_id, cpu, latency_ms)
        verified_size(s3, bucket, warmup, archive_format, org)
        print(f"  {archive_format} warm-up (ours): {warmup['seconds']:.1f} s", flush=True)
        for round_index in range(rounds):
            order = list(designs) if round_index % 2 == 0 else list(reversed(designs))
            for design in order:
                result = run_child(design, archive_format, org.organization_id, cpu, latency_ms)
                size = verified_size(s3, bucket, result, archive_format, org)
                contenders[design].record(content_bytes / result["seconds"], size)
                results[design].append(result)
                print(
                    f"  {archive_format} {design}: {result['seconds']:.1f} s, {size / 1e6:.1f} MB", flush=True
                )
        comparisons.append(
            Comparison(
                comparison_name(archive_format, latency_ms),
                "bytes",
                list(contenders.values()),
                notes=f"{org.products} products, {org.images} binaries from the realistic corpus, "
                f"{org.image_bytes / 1e6:.0f} MB; a warm-up export, then {rounds} rounds"
                + (f"; every GetObject delayed {latency_ms:g} ms" if latency_ms else ""),
                extra={
                    **{design: design_figures(runs) for design, runs in results.items()},
                    "warmup_seconds": warmup["seconds"],
                },
            )
        )
    return comparisons


def run_big(stack: Any, org: SyntheticOrg, *, archive_format: str, cpu: int | None) -> dict[str, Any]:
    """One export of a big organization (ours, read-ahead on): its peak memory, verified like the others."""
    s3, bucket = stack.client("s3"), stack.physical["ExportsBucket"]
    result = run_child("ours", archive_format, org.organization_id, cpu)
    size = verified_size(s3, bucket, result, archive_format, org)
    return {
        "format": archive_format,
        "products": org.products,
        "binaries": org.images,
        "content_bytes": org.image_bytes,
        "archive_bytes": size,
        "verified": True,
        "seconds": result["seconds"],
        "cpu_seconds": result["cpu_seconds"],
        "peak_rss_bytes": result["peak_rss_bytes"],
        "rss_before_bytes": result["rss_before_bytes"],
        "temp_disk_peak_bytes": result["temp_disk_peak_bytes"],
        "disk_write_bytes": result["disk_write_bytes"],
        "asset_read_ahead": result["asset_read_ahead"],
    }
