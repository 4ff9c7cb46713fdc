"""One whole export, in a fresh process, so that its peak memory and disk writes are its own.

Usage (by ``benchmarks.export``): ``python -m benchmarks.export_child DESIGN FORMAT ORG_ID CPU RESULT``
with DESIGN one of ``ours``, ``naive``, ``naive-tuned``, ``floor``. The environment (endpoint, table and
bucket names) comes from the parent, which runs the local stack, verifies the archive and deletes it.

- ours: ``ExportBuilder.build``: records and assets streamed into an S3 multipart upload, assets read ahead
  (``ASSET_READ_AHEAD``, 8 GETs in flight).
- naive: the archive built on local disk with stdlib ``zipfile`` (deflate at its default level 6) or
  ``tarfile`` ``w:gz`` (its default level 9), records as YAML by PyYAML's ``CSafeDumper``, assets read one
  after another, then ``upload_file``.
- naive-tuned: the same design with the best stdlib settings and the same read-ahead as ours: 8 GETs in
  flight on a thread pool (each asset read whole); zip stores JPEG/PNG/PDF (by content type) and deflates
  everything else at level 1; tar.gz at level 1.
- floor: the S3 traffic alone (every asset read, ahead as ours reads them, its bytes uploaded as parts):
  no design can beat it on the same server, so it is the ceiling of this benchmark.

``BENCH_S3_GET_LATENCY_MS`` (set by the parent's ``--s3-latency-ms``) makes every S3 GetObject of every
design wait that long before it is sent, as real S3's first byte does and moto's (local) does not.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import yaml

READ_CHUNK = 1 << 20
READ_AHEAD = 8  # GETs in flight for the tuned naive design: ours' default (ASSET_READ_AHEAD)
# Content a tuned naive zip stores rather than deflates: already compressed formats.
STORED_TYPES = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf", "application/zip"}
)


class DiskSampler(threading.Thread):
    """Peak bytes of the files under a folder, sampled every few milliseconds."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.005):
            total = 0
            for root, _, files in os.walk(self.folder):
                for name in files:
                    with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                        total += os.stat(os.path.join(root, name)).st_size
            self.peak = max(self.peak, total)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def peak_rss() -> int:
    """This process's peak resident memory. Not ``ru_maxrss``: that one inherits the parent's across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def io_write_bytes() -> int:
    """Bytes this process sent (or will send) to storage: dirtied page-cache pages count."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


class ArchiveOut(Protocol):
    def add_file(self, name: str, data: bytes) -> None: ...
    def add_stream(self, name: str, body: BinaryIO, size: int, *, content_type: str) -> None: ...
    def close(self) -> None: ...


class NaiveZip:
    def __init__(self, path: Path, *, tuned: bool) -> None:
        # Tuned: level 1 for what is deflated; compressed formats stored.
        self._zip = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1 if tuned else None)
        self._tuned = tuned

    def add_file(self, name: str, data: bytes) -> None:
        self._zip.writestr(name, data)

    def add_stream(self, name: str, body: BinaryIO, size: int, *, content_type: str) -> None:
        info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
        stored = self._tuned and content_type in STORED_TYPES
        info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        with self._zip.open(info, "w") as entry:
            shutil.copyfileobj(body, entry, READ_CHUNK)

    def close(self) -> None:
        self._zip.close()


class NaiveTar:
    def __init__(self, path: Path, *, level: int) -> None:
        self._tar = tarfile.open(path, "w:gz", compresslevel=level)  # noqa: SIM115 - closed in close()

    def add_file(self, name: str, data: bytes) -> None:
        self.add_stream(name, io.BytesIO(data), len(data), content_type="application/yaml")

    def add_stream(self, name: str, body: BinaryIO, size: int, *, content_type: str) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, int(time.time()), 0o644
        self._tar.addfile(info, body)

    def close(self) -> None:
        self._tar.close()


Refs = list[tuple[dict[str, Any], str]]  # (binary reference, its asset key) of one record
Body = tuple[BinaryIO, int]  # an asset's content and its size
Reads = Iterator[tuple[dict[str, Any], list[tuple[dict[str, Any], Body]]]]


def binary_refs(section: str, record: dict[str, Any]) -> Refs:
    from data_export.storage.layout import BINARY_FIELDS

    refs: Refs = []
    for field, is_list in BINARY_FIELDS.get(section, {}).items():
        value = record.get(field)
        for ref in (value if is_list else [value]) if value else []:
            refs.append((ref, ref.pop("asset_key")))
            ref["file"] = f"{section}/{record['id']}/{field}/{ref['filename']}"
    return refs


def sequential_reads(get: Callable[[str], Body], records: Iterable[dict[str, Any]], section: str) -> Reads:
    """Each record with its assets' bodies, each asset requested when its turn comes (the naive way)."""
    for record in records:
        refs = binary_refs(section, record)
        yield record, [(ref, get(key)) for ref, key in refs]


def reads_ahead(
    get: Callable[[str], Body], records: Iterable[dict[str, Any]], section: str, depth: int = READ_AHEAD
) -> Reads:
    """The same, with up to ``depth`` GETs in flight on a thread pool (each asset read whole, in memory)."""

    def fetch(key: str) -> Body:
        data = get(key)[0].read()
        return io.BytesIO(data), len(data)

    window: deque[tuple[dict[str, Any], list[tuple[dict[str, Any], Future[Body]]]]] = deque()
    in_flight = 0
    with ThreadPoolExecutor(depth, thread_name_prefix="naive-read") as pool:
        for record in records:
            pending = [(ref, pool.submit(fetch, key)) for ref, key in binary_refs(section, record)]
            window.append((record, pending))
            in_flight += len(pending)
            while window and (in_flight > depth or not window[0][1]):
                done_record, done = window.popleft()
                in_flight -= len(done)
                yield done_record, [(ref, future.result()) for ref, future in done]
        while window:
            done_record, done = window.popleft()
            yield done_record, [(ref, future.result()) for ref, future in done]


def naive_export(organization_id: str, archive_format: str, folder: Path, *, tuned: bool) -> tuple[str, int]:
    from data_export import wiring
    from data_export.models import SECTION_KEYS
    from data_export.settings import get_settings

    settings, s3 = get_settings(), wiring.client("s3")

    def get(key: str) -> Body:
        response = s3.get_object(Bucket=settings.assets_bucket, Key=key)
        return response["Body"], int(response["ContentLength"])

    path = folder / f"export.{archive_format}"
    archive: ArchiveOut = (
        NaiveZip(path, tuned=tuned) if archive_format == "zip" else NaiveTar(path, level=1 if tuned else 9)
    )
    top = "synthetic-export"
    read = reads_ahead if tuned else sequential_reads
    for section in SECTION_KEYS:
        records: Iterator[dict[str, Any]] = (
            wiring.api_keys().iter_metadata(organization_id)
            if section == "api_keys"
            else wiring.org_data().iter_records(organization_id, section)
        )
        for record, assets in read(get, records, section):
            for ref, (body, size) in assets:
                archive.add_stream(f"{top}/{ref['file']}", body, size, content_type=str(ref["content_type"]))
            text = yaml.dump(record, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True)
            archive.add_file(f"{top}/{section}/{record['id']}.yaml", text.encode("utf-8"))
    archive.close()
    key = f"naive/{organization_id}/{time.time_ns()}/export.{archive_format}"
    s3.upload_file(str(path), settings.exports_bucket, key)
    size = path.stat().st_size
    path.unlink()
    return key, size


def moto_floor(organization_id: str, order: list[str]) -> tuple[str, int]:
    """The S3 traffic of an export and nothing else: every asset read (ahead, as ours does), its bytes
    uploaded as parts, one after another; ``order`` gets their keys (to verify the upload)."""
    from data_export import wiring
    from data_export.export.prefetch import AssetPrefetcher
    from data_export.models import SECTION_KEYS
    from data_export.settings import get_settings
    from data_export.storage.layout import BINARY_FIELDS

    settings, builder = get_settings(), wiring.export_builder()
    key = f"floor/{organization_id}/{time.time_ns()}/export.bin"
    sink = builder.exports.start_upload(key, "application/octet-stream", part_size=settings.part_size_bytes)
    for section in SECTION_KEYS:
        if section == "api_keys" or section not in BINARY_FIELDS:
            continue
        fields = BINARY_FIELDS[section]
        with AssetPrefetcher(builder.assets.open, fields, max_in_flight=settings.asset_read_ahead) as ahead:
            for record in ahead.records(wiring.org_data().iter_records(organization_id, section)):
                for field, is_list in fields.items():
                    value = record.get(field)
                    for ref in (value if is_list else [value]) if value else []:
                        asset = ahead.open(ref["asset_key"])
                        if asset is not None:
                            order.append(ref["asset_key"])
                            for chunk in asset.chunks:
                                sink.write(chunk)
    return key, sink.complete()


def our_export(organization_id: str, archive_format: str) -> tuple[str, int]:
    from data_export import wiring
    from data_export.export.builder import output_filename
    from data_export.ids import new_id
    from data_export.jobs import Job
    from data_export.models import ArchiveFormat, JobStatus

    builder = wiring.export_builder()
    job_id, fmt = new_id(), ArchiveFormat(archive_format)
    job = Job.new(
        organization_id=organization_id,
        job_id=job_id,
        archive_format=fmt,
        output_filename=output_filename("synthetic", job_id, fmt.extension),
        created_at=datetime.now(UTC),
        retention_days=7,
    )
    builder.jobs.create(job)
    result = builder.build(organization_id, job_id)
    if result is None or result.status is not JobStatus.COMPLETED or result.object_key is None:
        raise RuntimeError(f"export did not complete: {result}")
    return result.object_key, result.file_size_bytes or 0


def delay_gets(client: Any, milliseconds: float) -> None:
    """Make each GetObject of this client wait before it is sent (on the thread that sends it)."""

    def wait(**_: Any) -> None:
        time.sleep(milliseconds / 1000)

    client.meta.events.register("before-send.s3.GetObject", wait)


def main(argv: list[str]) -> None:
    design, archive_format, organization_id, cpu, result_path = argv
    if cpu != "-" and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu)})
    folder = Path(tempfile.mkdtemp(prefix="bench-export-"))
    tempfile.tempdir = str(folder)  # anything that spills to disk does it where it is counted
    from data_export import wiring

    wiring.export_builder()  # clients and services built before timing, as in a warm container
    latency_ms = float(os.environ.get("BENCH_S3_GET_LATENCY_MS") or 0)
    if latency_ms:
        delay_gets(wiring.client("s3"), latency_ms)  # the one S3 client every design uses
    sampler = DiskSampler(folder)
    sampler.start()
    rss_before = peak_rss()
    written_before = io_write_bytes()
    cpu_before = time.process_time()
    start = time.perf_counter()
    order: list[str] = []
    if design == "ours":
        key, size = our_export(organization_id, archive_format)
    elif design == "floor":
        key, size = moto_floor(organization_id, order)
    else:
        key, size = naive_export(organization_id, archive_format, folder, tuned=design == "naive-tuned")
    elapsed = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_before
    result = {
        "design": design,
        "format": archive_format,
        "seconds": elapsed,
        "cpu_seconds": cpu_seconds,  # this process only: what the export costs its own core
        "archive_bytes": size,
        "object_key": key,
        "peak_rss_bytes": peak_rss(),
        "rss_before_bytes": rss_before,
        "temp_disk_peak_bytes": sampler.stop(),
        "disk_write_bytes": io_write_bytes() - written_before,
        "asset_order": order,  # the floor's upload: these assets' bytes, one after another
        "asset_read_ahead": int(os.environ.get("ASSET_READ_AHEAD") or 8),
    }
    shutil.rmtree(folder, ignore_errors=True)
    Path(result_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
