"""One whole export, in a fresh process, so that its peak memory and disk writes are its own.

Usage (by ``benchmarks.export``): ``python -m benchmarks.export_child DESIGN FORMAT ORG_ID CPU RESULT``
with DESIGN one of ``ours``, ``naive``, ``naive-tuned``, ``floor``. The environment (endpoint, table and
bucket names) comes from the parent, which runs the local stack.

- ours: ``ExportBuilder.build``: records and assets streamed into an S3 multipart upload.
- naive: the archive built on local disk with stdlib ``zipfile`` (deflate, the usual default) or ``tarfile``
  ``w:gz`` (its default level 9), records as YAML by PyYAML's ``CSafeDumper``, then ``upload_file``.
- naive-tuned: the same design with the best stdlib settings: zip stores binaries, tar.gz uses level 1.
- floor: the S3 traffic alone (every asset read, as many bytes uploaded as parts), the assets read ahead
  as ours reads them: no design can beat it on the same server, so it is the ceiling of this benchmark.

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
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import yaml

READ_CHUNK = 1 << 20


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
    def add_stream(self, name: str, body: BinaryIO, size: int, *, binary: bool) -> None: ...
    def close(self) -> None: ...


class NaiveZip:
    def __init__(self, path: Path, *, store_binaries: bool) -> None:
        self._zip = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED)
        self._store_binaries = store_binaries

    def add_file(self, name: str, data: bytes) -> None:
        self._zip.writestr(name, data)

    def add_stream(self, name: str, body: BinaryIO, size: int, *, binary: bool) -> None:
        info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
        stored = binary and self._store_binaries
        info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        with self._zip.open(info, "w") as entry:
            shutil.copyfileobj(body, entry, READ_CHUNK)

    def close(self) -> None:
        self._zip.close()


class NaiveTar:
    def __init__(self, path: Path, *, level: int) -> None:
        self._tar = tarfile.open(path, "w:gz", compresslevel=level)  # noqa: SIM115 - closed in close()

    def add_file(self, name: str, data: bytes) -> None:
        self.add_stream(name, io.BytesIO(data), len(data), binary=False)

    def add_stream(self, name: str, body: BinaryIO, size: int, *, binary: bool) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, int(time.time()), 0o644
        self._tar.addfile(info, body)

    def close(self) -> None:
        self._tar.close()


def naive_export(organization_id: str, archive_format: str, folder: Path, *, tuned: bool) -> tuple[str, int]:
    from data_export import wiring
    from data_export.models import SECTION_KEYS
    from data_export.settings import get_settings
    from data_export.storage.layout import BINARY_FIELDS

    settings, s3 = get_settings(), wiring.client("s3")
    path = folder / f"export.{archive_format}"
    archive: ArchiveOut = (
        NaiveZip(path, store_binaries=tuned)
        if archive_format == "zip"
        else NaiveTar(path, level=1 if tuned else 9)
    )
    top = "synthetic-export"
    for section in SECTION_KEYS:
        records: Iterator[dict[str, Any]] = (
            wiring.api_keys().iter_metadata(organization_id)
            if section == "api_keys"
            else wiring.org_data().iter_records(organization_id, section)
        )
        for record in records:
            record_id = str(record["id"])
            for field, is_list in BINARY_FIELDS.get(section, {}).items():
                value = record.get(field)
                for ref in (value if is_list else [value]) if value else []:
                    obj = s3.get_object(Bucket=settings.assets_bucket, Key=ref.pop("asset_key"))
                    ref["file"] = f"{section}/{record_id}/{field}/{ref['filename']}"
                    archive.add_stream(f"{top}/{ref['file']}", obj["Body"], obj["ContentLength"], binary=True)
            text = yaml.dump(record, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True)
            archive.add_file(f"{top}/{section}/{record_id}.yaml", text.encode("utf-8"))
    archive.close()
    key = f"naive/{organization_id}/{time.time_ns()}/export.{archive_format}"
    s3.upload_file(str(path), settings.exports_bucket, key)
    size = path.stat().st_size
    path.unlink()
    return key, size


def moto_floor(organization_id: str) -> tuple[str, int]:
    """The S3 traffic of an export and nothing else: every asset read (ahead, as ours does), its bytes
    uploaded as parts."""
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
    if design == "ours":
        key, size = our_export(organization_id, archive_format)
    elif design == "floor":
        key, size = moto_floor(organization_id)
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
    }
    shutil.rmtree(folder, ignore_errors=True)
    Path(result_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
