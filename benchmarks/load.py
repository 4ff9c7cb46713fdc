"""A bounded load test of the local stack (issue 5): many concurrent API requests and polls while dozens of
exports run at once; throughput, latency percentiles and errors; every export completed, downloaded and
verified against what was seeded, and no job left open.

Run from the repository root::

    .venv/bin/python -m benchmarks.load                      # 24 exports, 3,000 requests, 32 at a time
    .venv/bin/python -m benchmarks.load --exports 48 --requests 10000 --concurrency 64

Everything stays on loopback (moto server, API gateway and presigned downloads on 127.0.0.1). Each export
belongs to one of ``ceil(exports / 2)`` small seeded organizations (two exports each, zip and tar.gz, under
the limit of three open exports per organization), whose keys carry rate-limit overrides big enough for the
load. Every loop is bounded by a count and by ``--timeout`` seconds. Results go to
``benchmarks/load-results.json``; docs/load-test.md explains them. ``tests/e2e/test_load.py`` runs a small
version of the same workload on the test suite's stack.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import platform
import secrets
import string
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

BASE = "/dashboard/api/v1/data-export"
RESULTS_PATH = Path(__file__).with_name("load-results.json")
CREATED_AT = "2025-01-01T00:00:00+00:00"
BINARY_FIELDS = {"organization": ("logo",), "brands": ("logo",), "products": ("images", "documents")}
SECTIONS = ("organization", "members", "api_keys", "brands", "products", "offers", "locations")
OPEN_STATUSES = ("pending", "processing")
POLL_INTERVAL_SECONDS = 0.25
# One in this many background requests asks for a job that does not exist (the 404 path).
UNKNOWN_JOB_EVERY = 10
_KEY_ALPHABET = string.ascii_letters + string.digits


# -- the seeded organizations ------------------------------------------------------------------------------
@dataclass
class Tenant:
    organization_id: str
    key: str
    records: dict[str, list[dict[str, Any]]]  # section -> records as seeded
    binaries: dict[str, bytes]  # "<section>/<record id>/<field>/<filename>" -> the seeded bytes


def _new_key() -> str:
    body = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(32))
    return f"csb_{body}_{zlib.crc32(body.encode()):08x}"


def _binary(filename: str, content_type: str, size: int, seed: int) -> dict[str, Any]:
    return {
        "filename": filename,
        "content_type": content_type,
        "generate": {"size_bytes": size, "seed": seed},
    }


def tenant_data(index: int, key: str) -> dict[str, Any]:
    """A small organization: 1 owner, 1 key (high rate limits), 2 brands and 3 products with 9 binaries."""
    from data_export.ids import new_id

    seed = index * 100
    brands = [
        {
            "id": new_id(),
            "name": f"Brand {b}",
            "created_at": CREATED_AT,
            "logo": _binary(f"logo-{b}.png", "image/png", 2048 + b * 512, seed + b),
        }
        for b in range(2)
    ]
    products = [
        {
            "id": new_id(),
            "name": f"Product {p}",
            "gtin": "00012345678905",
            "created_at": CREATED_AT,
            "brand_id": brands[p % 2]["id"],
            "images": [_binary(f"front-{p}.jpg", "image/jpeg", 8192 + p * 1000, seed + 10 + p)],
            "documents": [_binary(f"sheet-{p}.pdf", "application/pdf", 4096 + p, seed + 20 + p)],
        }
        for p in range(3)
    ]
    return {
        "organization": {
            "id": new_id(),
            "name": f"Load {index}",
            "slug": f"load-{index}",
            "created_at": CREATED_AT,
            "logo": _binary("logo.png", "image/png", 3000, seed + 99),
        },
        "members": [
            {
                "id": new_id(),
                "email": "owner@load.example",
                "name": "Owner",
                "role": "owner",
                "joined_at": CREATED_AT,
            }
        ],
        "api_keys": [
            {
                "id": new_id(),
                "name": "load",
                "key": key,
                "created_at": CREATED_AT,
                "rate_limit_per_minute": 1_000_000,
                "rate_limit_per_day": 10_000_000,
            }
        ],
        "brands": brands,
        "products": products,
    }


def seed_tenants(stack: Any, folder: Path, count: int) -> list[Tenant]:
    """Seed ``count`` organizations into the running stack's stores, as the seed command does."""
    from data_export.settings import get_settings
    from data_export_cli.seed import Binary, load_fixture, seed_file

    keys = [_new_key() for _ in range(count)]
    organizations = [tenant_data(index, key) for index, key in enumerate(keys)]
    path = folder / "load-fixture.yaml"
    path.write_text(yaml.safe_dump({"format": 1, "organizations": organizations}, sort_keys=False))
    seed_file(
        path, dynamodb_client=stack.client("dynamodb"), s3_client=stack.client("s3"), settings=get_settings()
    )
    fixture = load_fixture(path)
    tenants = []
    for data, key in zip(organizations, keys, strict=True):
        records = {
            section: [data["organization"]] if section == "organization" else data.get(section, [])
            for section in SECTIONS
        }
        binaries: dict[str, bytes] = {}
        for section, fields in BINARY_FIELDS.items():
            for record in records[section]:
                for name in fields:
                    value = record.get(name)
                    for source in value if isinstance(value, list) else [value] if value else []:
                        content = fixture.binary_bytes(Binary.model_validate(source))
                        assert content is not None
                        binaries[f"{section}/{record['id']}/{name}/{source['filename']}"] = content
        tenants.append(Tenant(data["organization"]["id"], key, records, binaries))
    return tenants


# -- verification ------------------------------------------------------------------------------------------
def archive_files(body: bytes, archive_format: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    if archive_format == "zip":
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise ValueError(f"CRC mismatch in {bad}")
            files = {info.filename: archive.read(info) for info in archive.infolist()}
    else:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
            for member in archive.getmembers():
                extracted = archive.extractfile(member)
                if extracted is None:
                    raise ValueError(f"{member.name} is not a regular file")
                files[member.name] = extracted.read()
    return files


def verify_archive(body: bytes, archive_format: str, job_id: str, tenant: Tenant) -> list[str]:
    """Open the archive; the manifest's counts equal the seeded ones, every binary equals the seeded bytes.
    Returns the problems found (empty when all is well)."""
    try:
        files = archive_files(body, archive_format)
    except (zipfile.BadZipFile, tarfile.TarError, OSError, ValueError) as error:
        return [f"unreadable {archive_format}: {error}"]
    tops = {name.split("/", 1)[0] for name in files}
    if len(tops) != 1:
        return [f"expected one top-level folder, found {sorted(tops)}"]
    top = tops.pop()
    manifest = yaml.safe_load(files.get(f"{top}/manifest.yaml", b"{}")) or {}
    problems = [] if manifest.get("job_id") == job_id else [f"manifest job_id {manifest.get('job_id')!r}"]
    reported = {s["key"]: s for s in manifest.get("sections", [])}
    for section in SECTIONS:
        records = tenant.records[section]
        binaries = sum(1 for name in tenant.binaries if name.startswith(f"{section}/"))
        got = reported.get(section, {})
        if (got.get("status"), got.get("record_count"), got.get("binary_count")) != (
            "completed",
            len(records),
            binaries,
        ):
            problems.append(
                f"{section}: manifest {got}, seeded {len(records)} records and {binaries} binaries"
            )
        for record in records:
            name = (
                f"{top}/organization/organization.yaml"
                if section == "organization"
                else f"{top}/{section}/{record['id']}.yaml"
            )
            if name not in files:
                problems.append(f"missing {name}")
                continue
            exported = yaml.safe_load(files[name])
            for field_name in BINARY_FIELDS.get(section, ()):
                refs = exported.get(field_name) or []
                for ref in refs if isinstance(refs, list) else [refs]:
                    expected = tenant.binaries.get(f"{section}/{record['id']}/{field_name}/{ref['filename']}")
                    if expected is None or files.get(f"{top}/{ref.get('file')}") != expected:
                        problems.append(
                            f"{name}: {field_name} {ref['filename']} differs from the seeded bytes"
                        )
    return problems


def open_jobs(stack: Any, tenants: list[Tenant]) -> list[str]:
    """Jobs of these organizations still pending or processing in the jobs table."""
    dynamodb = stack.client("dynamodb")
    found = []
    for tenant in tenants:
        pages = dynamodb.get_paginator("query").paginate(
            TableName=stack.physical["JobsTable"],
            KeyConditionExpression="organization_id = :o",
            ExpressionAttributeValues={":o": {"S": tenant.organization_id}},
        )
        for page in pages:
            for item in page["Items"]:
                # Pointer items (open#zip, idempotency#...) share the partition and carry no status.
                if item.get("status", {}).get("S") in OPEN_STATUSES:
                    found.append(f"{tenant.organization_id}/{item['job_id']['S']}: {item['status']['S']}")
    return found


# -- the load ----------------------------------------------------------------------------------------------
@dataclass
class Sample:
    operation: str
    status: int  # 0: no HTTP answer (connection error or timeout)
    seconds: float
    expected: int


@dataclass
class ExportOutcome:
    organization_id: str
    archive_format: str
    job_id: str = ""
    status: str = "not started"
    seconds: float = 0.0
    size_bytes: int = 0
    statuses_seen: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Recorder:
    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self._lock = threading.Lock()

    def call(
        self, operation: str, method: str, url: str, key: str | None, expected: int = 200
    ) -> tuple[int, bytes]:
        headers = {"X-API-Key": key} if key else {}
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"not a loopback URL: {url}")  # the load never leaves this machine
        request = urllib.request.Request(url, method=method, headers=headers)
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        except OSError:
            status, body = 0, b""
        with self._lock:
            self.samples.append(Sample(operation, status, time.perf_counter() - started, expected))
        return status, body


def _export(
    recorder: Recorder, api_url: str, tenant: Tenant, outcome: ExportOutcome, deadline: float
) -> None:
    """Start one export, poll it to the end, download and verify it; the outcome records what happened."""
    started = time.perf_counter()
    status, body = recorder.call(
        "start",
        "POST",
        f"{api_url}{BASE}/{tenant.organization_id}?archive_format={outcome.archive_format}",
        tenant.key,
    )
    if status != 200:
        outcome.problems.append(f"start answered {status}: {body[:200]!r}")
        return
    outcome.job_id = json.loads(body)["job_id"]
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, body = recorder.call(
            "poll", "GET", f"{api_url}{BASE}/{tenant.organization_id}/{outcome.job_id}", tenant.key
        )
        if status == 200:
            job = json.loads(body)
            if not outcome.statuses_seen or outcome.statuses_seen[-1] != job["status"]:
                outcome.statuses_seen.append(job["status"])
            if job["status"] not in OPEN_STATUSES:
                break
        time.sleep(POLL_INTERVAL_SECONDS)
    outcome.status = job.get("status", "unknown")
    outcome.seconds = time.perf_counter() - started
    if outcome.status != "completed":
        outcome.problems.append(f"job ended {outcome.status}: {job.get('error')}")
        return
    status, archive = recorder.call("download", "GET", job["download_url"], None)
    outcome.size_bytes = len(archive)
    if status != 200 or len(archive) != job["file_size_bytes"]:
        outcome.problems.append(
            f"download answered {status}, {len(archive)} of {job['file_size_bytes']} bytes"
        )
        return
    outcome.problems.extend(verify_archive(archive, outcome.archive_format, outcome.job_id, tenant))


def _background(
    recorder: Recorder,
    api_url: str,
    targets: list[tuple[Tenant, str]],
    count: int,
    concurrency: int,
    deadline: float,
) -> None:
    """``count`` polls (one in ten for an unknown job, a 404) from ``concurrency`` threads at once."""
    from data_export.ids import new_id

    tickets = iter(range(count))
    tickets_lock = threading.Lock()

    def worker() -> None:
        while time.monotonic() < deadline:
            with tickets_lock:
                ticket = next(tickets, None)
            if ticket is None:
                return
            tenant, job_id = targets[ticket % len(targets)]
            if ticket % UNKNOWN_JOB_EVERY == UNKNOWN_JOB_EVERY - 1:
                url = f"{api_url}{BASE}/{tenant.organization_id}/{new_id()}"
                recorder.call("poll unknown job", "GET", url, tenant.key, expected=404)
            else:
                recorder.call("poll", "GET", f"{api_url}{BASE}/{tenant.organization_id}/{job_id}", tenant.key)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="load") as pool:
        for running in [pool.submit(worker) for _ in range(concurrency)]:
            running.result()


def run_load(
    stack: Any,
    api_url: str,
    tenants: list[Tenant],
    *,
    exports: int,
    requests: int,
    concurrency: int,
    timeout: float,
) -> dict[str, Any]:
    """The whole workload: ``exports`` exports started at once (two per organization, zip and tar.gz), and
    meanwhile ``requests`` background polls from ``concurrency`` threads. Returns the results document."""
    deadline = time.monotonic() + timeout
    outcomes = [
        ExportOutcome(tenants[index // 2].organization_id, "zip" if index % 2 == 0 else "tar.gz")
        for index in range(exports)
    ]
    by_id = {tenant.organization_id: tenant for tenant in tenants}
    recorder = Recorder()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=exports, thread_name_prefix="export") as pool:
        running = [
            pool.submit(_export, recorder, api_url, by_id[o.organization_id], o, deadline) for o in outcomes
        ]
        # The background load polls the exports' own jobs, so it waits for them to be started.
        while time.monotonic() < deadline and sum(bool(o.job_id or o.problems) for o in outcomes) < exports:
            time.sleep(0.05)
        targets = [(by_id[o.organization_id], o.job_id) for o in outcomes if o.job_id]
        if targets:
            _background(recorder, api_url, targets, requests, concurrency, deadline)
        for future in running:
            future.result()
    wall = time.perf_counter() - started
    return summarize(
        recorder.samples,
        outcomes,
        open_jobs(stack, tenants),
        wall,
        {
            "exports": exports,
            "requests": requests,
            "concurrency": concurrency,
            "organizations": len(tenants),
            "timeout_seconds": timeout,
        },
    )


# -- the report --------------------------------------------------------------------------------------------
def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def _latency(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 1),
        "p95_ms": round(percentile(ordered, 0.95) * 1000, 1),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 1),
        "max_ms": round((ordered[-1] if ordered else 0.0) * 1000, 1),
    }


def summarize(
    samples: list[Sample],
    outcomes: list[ExportOutcome],
    still_open: list[str],
    wall: float,
    parameters: dict[str, Any],
) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for operation, group in itertools.groupby(
        sorted(samples, key=lambda s: s.operation), lambda s: s.operation
    ):
        items = list(group)
        operations[operation] = {
            "count": len(items),
            "per_second": round(len(items) / wall, 1),
            "server_errors": sum(1 for s in items if s.status >= 500),
            "unanswered": sum(1 for s in items if s.status == 0),
            "unexpected_status": sum(1 for s in items if s.status != s.expected),
            "statuses": {
                str(k): sum(1 for s in items if s.status == k) for k in sorted({s.status for s in items})
            },
            **_latency([s.seconds for s in items]),
        }
    api = [s for s in samples if s.operation != "download"]
    completed = [o for o in outcomes if o.status == "completed"]
    return {
        "parameters": parameters,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "wall_seconds": round(wall, 2),
        "api_requests": len(api),
        "api_requests_per_second": round(len(api) / wall, 1),
        "operations": operations,
        "exports": {
            "requested": len(outcomes),
            "completed": len(completed),
            "verified": sum(1 for o in completed if not o.problems),
            "per_minute": round(len(completed) / wall * 60, 1),
            "bytes": sum(o.size_bytes for o in completed),
            **_latency([o.seconds for o in completed]),
        },
        "jobs_left_open": still_open,
        "problems": [
            f"{o.organization_id}/{o.job_id} ({o.archive_format}): {p}" for o in outcomes for p in o.problems
        ],
        "outcomes": [asdict(o) for o in outcomes],
    }


def failures(results: dict[str, Any]) -> list[str]:
    """Everything that makes the run a failure (empty when none)."""
    found = list(results["problems"]) + [f"left open: {job}" for job in results["jobs_left_open"]]
    for operation, stats in results["operations"].items():
        for kind in ("server_errors", "unanswered", "unexpected_status"):
            if stats[kind]:
                found.append(f"{operation}: {stats[kind]} {kind.replace('_', ' ')} ({stats['statuses']})")
    exports = results["exports"]
    if exports["verified"] != exports["requested"]:
        found.append(f"{exports['verified']} of {exports['requested']} exports completed and verified")
    return found


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{'operation':<18}{'count':>7}{'req/s':>8}{'5xx':>5}{'lost':>6}{'other':>6}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    ]
    for operation, s in results["operations"].items():
        lines.append(
            f"{operation:<18}{s['count']:>7}{s['per_second']:>8}{s['server_errors']:>5}"
            f"{s['unanswered']:>6}{s['unexpected_status']:>6}{s['p50_ms']:>9}{s['p95_ms']:>9}"
            f"{s['p99_ms']:>9}{s['max_ms']:>9}"
        )
    e = results["exports"]
    lines.append(
        f"{'export (end to end)':<18}{e['completed']:>7}{'':>8}{'':>5}{'':>6}{'':>6}"
        f"{e['p50_ms']:>9}{e['p95_ms']:>9}{e['p99_ms']:>9}{e['max_ms']:>9}"
    )
    lines.append(
        f"{results['api_requests']} API requests in {results['wall_seconds']} s = "
        f"{results['api_requests_per_second']} req/s; exports {e['completed']}/{e['requested']} completed, "
        f"{e['verified']} verified, {e['per_minute']}/min, {e['bytes']} bytes; "
        f"jobs left open: {len(results['jobs_left_open'])}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--exports", type=int, default=24, help="exports at once, two per organization")
    parser.add_argument("--requests", type=int, default=3000, help="background API requests")
    parser.add_argument("--concurrency", type=int, default=32, help="background request threads")
    parser.add_argument("--timeout", type=float, default=300, help="stop after this many seconds regardless")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    if min(args.exports, args.requests, args.concurrency) < 1:
        parser.error("--exports, --requests and --concurrency must be at least 1")
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "data-export")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "DataExport")

    from data_export_cli.gateway import ApiGateway
    from data_export_cli.stack import LocalStack
    from data_export_cli.worker import QueuePoller

    # Function logs (one audit line per request) would drown the table; warnings and errors still show.
    stack = LocalStack(extra_environment={"POWERTOOLS_LOG_LEVEL": "WARNING"}).start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            tenants = seed_tenants(stack, Path(folder), (args.exports + 1) // 2)
        gateway = ApiGateway(stack, "127.0.0.1", 0).start()
        poller = QueuePoller(stack).start()
        try:
            results = run_load(
                stack,
                gateway.url,
                tenants,
                exports=args.exports,
                requests=args.requests,
                concurrency=args.concurrency,
                timeout=args.timeout,
            )
        finally:
            poller.stop()
            gateway.stop()
    finally:
        stack.stop()
    results["command"] = " ".join(["python -m benchmarks.load", *(sys.argv[1:] if argv is None else argv)])
    problems = failures(results)
    results["failures"] = problems
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    print(f"results: {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
