"""Whole export through the local stack (moto server), ours against the naive design, each in its own process.

The parent runs moto (pinned to one core); each export runs in a fresh child process pinned to the other
core, so that the client's peak memory and disk writes are measured alone, and the export competes for its
core with nothing but its own threads. Rates are content bytes (images and records as seeded) per second.

moto answers a GET in a few milliseconds; real S3 takes tens before the first byte. ``latency_ms`` makes
every design's GetObject requests wait that long on the client side (``export_child.delay_gets``), so the
same organization can be measured as if its assets were read from a remote store.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import Comparison, Contender
from benchmarks.synthetic import SyntheticOrg

REPO = Path(__file__).resolve().parents[1]
DESIGNS = {
    "ours": ("ours: ExportBuilder, streamed multipart upload", "ours"),
    "naive": ("naive: zipfile/tarfile on disk + upload_file", "peer"),
    "naive-tuned": ("naive, tuned (zip: binaries stored; tar.gz: level 1)", "peer"),
    "floor": ("S3 traffic alone (reads + multipart upload)", "ceiling"),
}


def comparison_name(archive_format: str, latency_ms: float = 0) -> str:
    name = f"Whole export ({archive_format}), local stack"
    return f"{name}, {latency_ms:g} ms per S3 GET" if latency_ms else name


def run_child(
    design: str, archive_format: str, organization_id: str, cpu: int | None, latency_ms: float = 0
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        result_path = Path(folder) / "result.json"
        env = {**os.environ, "POWERTOOLS_LOG_LEVEL": "WARNING", "BENCH_S3_GET_LATENCY_MS": f"{latency_ms:g}"}
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


def run(
    stack: Any,
    org: SyntheticOrg,
    content_bytes: int,
    *,
    rounds: int,
    formats: tuple[str, ...],
    cpu: int | None,
    latency_ms: float = 0,
) -> list[Comparison]:
    s3, bucket = stack.client("s3"), stack.physical["ExportsBucket"]
    comparisons = []
    for archive_format in formats:
        contenders = {design: Contender(label, role) for design, (label, role) in DESIGNS.items()}
        results: dict[str, list[dict[str, Any]]] = {design: [] for design in DESIGNS}
        for round_index in range(rounds):
            order = list(DESIGNS) if round_index % 2 == 0 else list(reversed(DESIGNS))
            for design in order:
                result = run_child(design, archive_format, org.organization_id, cpu, latency_ms)
                s3.delete_object(Bucket=bucket, Key=result["object_key"])  # moto keeps objects in memory
                contenders[design].rates.append(content_bytes / result["seconds"])
                results[design].append(result)
                print(f"  {archive_format} {design}: {result['seconds']:.1f} s", flush=True)
        extra = {
            design: {
                "median_seconds": statistics.median(r["seconds"] for r in runs),
                "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
                "archive_bytes": runs[-1]["archive_bytes"],
                "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
                "rss_before_bytes": max(r["rss_before_bytes"] for r in runs),
                "temp_disk_peak_bytes": max(r["temp_disk_peak_bytes"] for r in runs),
                "disk_write_bytes": max(r["disk_write_bytes"] for r in runs),
            }
            for design, runs in results.items()
        }
        comparisons.append(
            Comparison(
                comparison_name(archive_format, latency_ms),
                "bytes",
                list(contenders.values()),
                notes=f"{org.products} products, {org.images} images, {org.image_bytes / 1e6:.0f} MB"
                + (f", every GetObject delayed {latency_ms:g} ms" if latency_ms else ""),
                extra=extra,
            )
        )
    return comparisons
