"""How an export build scales: wall time and peak memory as the organization grows (issue 3).

Run from the repository root::

    .venv/bin/python -m benchmarks.scale                       # 10MB,100MB,1GB; paths fast, steps, sfn
    .venv/bin/python -m benchmarks.scale --sizes 10MB,100MB,1GB,4GB
    .venv/bin/python -m benchmarks.scale --quick               # a smoke run (10MB, 30MB), under a minute

For each size a synthetic organization shaped like the 100 GB brand of issue 3 (per product: 5 images of
200-600 kB, 2 MB in all, and one offer) is seeded into a fresh local stack, then exported by each path:

- ``fast``: ``ExportBuilder.build``, one stream into one multipart upload (the worker Lambda's fast path).
- ``steps``: the Step Functions task handlers called one after the other (plan, every unit, assemble),
  each measured alone, so that its time and peak memory are one Lambda's.
- ``sfn``: the real state machine from ``template.yaml`` on moto's engine, units built in parallel
  (its Map runs up to 16 at once, all in the build's process).

Three kinds of process, so that each measured peak is the builder's own: moto runs as a child process
(``python -m moto.server``; it keeps objects in memory and copies whole archives on multipart completion),
seeding runs in worker processes, and every build runs in a fresh Python (``--build``), which also serves
the Lambda ``Invoke`` calls of moto's Step Functions engine. moto is pinned to one CPU, the builds to the
other. A build's peak RSS is read from /proc after resetting it (``clear_refs``) once the process has
imported everything and created its AWS clients, as a warm Lambda has. Results go to
``benchmarks/scale-results.json``; docs/scaling.md explains them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "layers" / "shared", REPO / "cli"):  # runnable as a script without an install
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from data_export_cli.limits import Environment  # noqa: E402
from data_export_cli.stack import LocalStack  # noqa: E402 - after the path set-up above

RESULTS_PATH = REPO / "benchmarks" / "scale-results.json"
DEFAULT_SIZES = "10MB,100MB,1GB"
QUICK_SIZES = "10MB,30MB"
PATHS = ("fast", "steps", "sfn")
FORMATS = ("zip", "tar.gz")
MB = 1000 * 1000
MIB = 1024 * 1024
UNITS = {"KB": 1000, "MB": MB, "GB": 1000 * MB, "KIB": 1024, "MIB": MIB, "GIB": 1024 * MIB}
# One product of the 100 GB organization (50,000 products, 250,000 images): 5 images, 2 MB.
IMAGE_SIZES = (200_000, 300_000, 400_000, 500_000, 600_000)
PRODUCT_BYTES = sum(IMAGE_SIZES)
SEED_SLICE_PRODUCTS = 100
MOTO_ENVIRONMENT: dict[str, str] = {"MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(128 * 1024)}
ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
MEMBERS, BRANDS, LOCATIONS = 4, 20, 6
WHEN = "2024-03-02T09:15:00+00:00"


# --- the synthetic organization ---------------------------------------------------------------------


def parse_size(text: str) -> int:
    """``10MB`` -> 10,000,000 bytes (decimal units, as storage is billed; KiB/MiB/GiB are binary)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMG]i?B)\s*", text, re.IGNORECASE)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 10MB, 1GB or 512MiB")
    return int(float(match[1]) * UNITS[match[2].upper()])


def short_id(*parts: object) -> str:
    """A deterministic 22-character shortuuid-alphabet id."""
    number = int.from_bytes(hashlib.sha256(repr(parts).encode()).digest(), "big")
    digits = []
    for _ in range(22):
        number, digit = divmod(number, len(ID_ALPHABET))
        digits.append(ID_ALPHABET[digit])
    return "".join(digits)


def gtin13(index: int) -> str:
    body = f"20{index:010d}"
    total = sum(int(digit) * (3 if position % 2 == 0 else 1) for position, digit in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


@dataclass(frozen=True)
class OrgShape:
    label: str
    products: int

    @classmethod
    def of_size(cls, label: str) -> OrgShape:
        return cls(label, max(1, round(parse_size(label) / PRODUCT_BYTES)))

    @property
    def organization_id(self) -> str:
        return short_id("scale-org", self.products)

    @property
    def data_bytes(self) -> int:
        return self.products * PRODUCT_BYTES

    @property
    def binaries(self) -> int:
        return self.products * len(IMAGE_SIZES)

    @property
    def records(self) -> int:
        # profile, members, one API key, brands, locations, then per product the product and an offer
        return 1 + MEMBERS + 1 + BRANDS + LOCATIONS + 2 * self.products

    @property
    def files(self) -> int:
        return self.records + self.binaries + 1  # + manifest.yaml

    def fixture(self, first: int, stop: int) -> dict[str, Any]:
        """Products [first, stop) with their offers, beside the small sections (the same in every slice,
        so that every slice is a valid fixture on its own and seeding it again changes nothing)."""
        org = self.organization_id
        brands = [short_id(org, "brand", i) for i in range(BRANDS)]
        locations = [short_id(org, "location", i) for i in range(LOCATIONS)]
        members = [short_id(org, "member", i) for i in range(MEMBERS)]
        key_body = short_id(org, "key")[:22] + "0123456789"
        products, offers = [], []
        for index in range(first, stop):
            product_id = short_id(org, "product", index)
            products.append(
                {
                    "id": product_id,
                    "name": f"Single-origin coffee, lot {index}",
                    "gtin": gtin13(index),
                    "created_at": WHEN,
                    "brand_id": brands[index % BRANDS],
                    "description": "Washed arabica from high-altitude farms; notes of cocoa, citrus and "
                    "brown sugar. Roasted to order in small batches and shipped within two days. " * 2,
                    "attributes": {
                        "origin": "Huila",
                        "process": "washed",
                        "roast": "medium",
                        "weight_g": 250,
                    },
                    "tags": ["coffee", "single-origin", f"lot-{index % 97}"],
                    "price": {"amount": f"{12 + index % 30}.50", "currency": "EUR"},
                    "images": [
                        {
                            "filename": f"lot {index} view {k}.jpg",
                            "content_type": "image/jpeg",
                            "generate": {"size_bytes": size, "seed": index * len(IMAGE_SIZES) + k},
                        }
                        for k, size in enumerate(IMAGE_SIZES)
                    ],
                }
            )
            offers.append(
                {
                    "id": short_id(org, "offer", index),
                    "product_id": product_id,
                    "location_id": locations[index % LOCATIONS],
                    "price": {"amount": f"{12 + index % 30}.50", "currency": "EUR"},
                    "stock_status": "in_stock",
                    "updated_at": WHEN,
                }
            )
        from data_export_cli.seed import api_key_checksum

        return {
            "format": 1,
            "organizations": [
                {
                    "organization": {
                        "id": org,
                        "name": f"Scale {self.label}",
                        "slug": "scale",
                        "created_at": WHEN,
                    },
                    "members": [
                        {
                            "id": member_id,
                            "email": f"member{i}@example.com",
                            "name": f"Member {i}",
                            "role": "owner" if i == 0 else "editor",
                            "joined_at": WHEN,
                        }
                        for i, member_id in enumerate(members)
                    ],
                    "api_keys": [
                        {
                            "id": short_id(org, "api-key"),
                            "name": "integration",
                            "key": f"csb_{key_body}_{api_key_checksum(key_body)}",
                            "created_at": WHEN,
                        }
                    ],
                    "brands": [
                        {"id": brand_id, "name": f"Brand {i}", "created_at": WHEN}
                        for i, brand_id in enumerate(brands)
                    ],
                    "locations": [
                        {
                            "id": location_id,
                            "name": f"Store {i}",
                            "kind": "store",
                            "address": {"city": "Oslo", "country": "NO"},
                            "created_at": WHEN,
                        }
                        for i, location_id in enumerate(locations)
                    ],
                    "products": products,
                    "offers": offers,
                }
            ],
        }


def seed_slice(shape: OrgShape, first: int, stop: int) -> int:
    """Seed one slice (in a worker process: the environment points at the stack); returns its asset bytes."""
    from data_export import wiring
    from data_export.settings import get_settings
    from data_export_cli.seed import seed_stores, validate_fixture_data

    fixture = validate_fixture_data(shape.fixture(first, stop), REPO)
    summary = seed_stores(
        fixture,
        dynamodb_client=wiring.client("dynamodb"),
        s3_client=wiring.client("s3"),
        settings=get_settings(),
    )
    return summary.asset_bytes


def seed(shape: OrgShape, workers: int = 3) -> int:
    import multiprocessing

    firsts = range(0, shape.products, SEED_SLICE_PRODUCTS)
    stops = [min(first + SEED_SLICE_PRODUCTS, shape.products) for first in firsts]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return sum(pool.map(seed_slice, itertools.repeat(shape), firsts, stops))


# --- processes: memory and CPU -----------------------------------------------------------------------


def _status_kib(pid: int | str, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class ProcessStats:
    """CPU seconds and resident memory (MiB) of a process, read from /proc (Linux)."""

    pid: int | str = "self"

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def rss_mib(self) -> float:
        return _status_kib(self.pid, "VmRSS") / 1024

    def peak_mib(self) -> float:
        return _status_kib(self.pid, "VmHWM") / 1024

    def reset_peak(self) -> bool:
        """Set the peak RSS back to the current RSS (Linux >= 4.0); False where not allowed."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True


@dataclass
class Span:
    """What one measured stretch cost: wall seconds, CPU of both processes, this process's peak RSS."""

    seconds: float = 0.0
    builder_cpu: float = 0.0
    moto_cpu: float = 0.0
    builder_peak_mib: float = 0.0
    builder_start_mib: float = 0.0
    moto_peak_mib: float = 0.0


@contextlib.contextmanager
def measured(moto: ProcessStats) -> Iterator[Span]:
    me = ProcessStats()
    span = Span()
    me.reset_peak()
    moto.reset_peak()
    span.builder_start_mib = me.rss_mib()
    cpu0, moto0, start = me.cpu_seconds(), moto.cpu_seconds(), time.perf_counter()
    yield span
    span.seconds = time.perf_counter() - start
    span.builder_cpu = me.cpu_seconds() - cpu0
    span.moto_cpu = moto.cpu_seconds() - moto0
    span.builder_peak_mib = me.peak_mib()
    span.moto_peak_mib = moto.peak_mib()


# --- the stack: moto in one process, each build in another ------------------------------------------


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class ScaleStack(LocalStack):
    """The local stack with moto as a child process (``python -m moto.server``) and builds in others.

    ``start`` (the benchmark) runs moto and creates the template's resources; ``attach`` (a build process)
    serves Lambda ``Invoke`` with the handlers in its own process. moto's Step Functions engine calls Lambda
    at ``localhost:$MOTO_PORT`` from moto's process, so that port is chosen first and given to moto; each
    build process binds it in turn. Every task invocation is timed, to split an execution into its steps."""

    def __init__(self) -> None:
        super().__init__(extra_environment={"POWERTOOLS_LOG_LEVEL": "WARNING"})
        self._moto: subprocess.Popen[bytes] | None = None
        self._moto_log: Any = None
        self.lambda_port = 0
        self.moto_pid = 0
        self.invocations: list[tuple[str, float, float]] = []  # (logical id, start, end), perf_counter

    def start(self) -> ScaleStack:
        from data_export import wiring
        from data_export_cli.lambda_service import enable_stepfunctions_execution

        moto_port, self.lambda_port = free_port(self.host), free_port(self.host)
        self.endpoint_url = f"http://{self.host}:{moto_port}"
        # moto logs every request; the log is kept only to explain a crash, and closed with the stack.
        log = self._moto_log = tempfile.TemporaryFile()  # noqa: SIM115
        self._moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(moto_port)],
            env={**os.environ, "MOTO_PORT": str(self.lambda_port), **MOTO_ENVIRONMENT},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.moto_pid = self._moto.pid
        self._wait_for_moto(log)
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1",
            }
        )
        os.environ.pop("AWS_PROFILE", None)
        enable_stepfunctions_execution(self.endpoint_url)
        self._create_resources()
        os.environ.update(self.function_environment())
        os.environ.update(self._extra_environment)
        wiring.reset()
        return self

    def _wait_for_moto(self, log: Any) -> None:
        deadline = time.monotonic() + 60
        while True:
            assert self._moto is not None
            if self._moto.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"moto server exited ({self._moto.returncode}): {log.read()[-2000:]!r}")
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def pin(self) -> bool:
        """moto on one CPU, this process and its children (the builds) on the others: on Lambda, no
        server shares a build's CPU either."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return False
        os.sched_setaffinity(self.moto_pid, {cpus[0]})
        os.sched_setaffinity(0, set(cpus[1:]))
        return True

    def stop(self) -> None:
        if self._lambda_service is not None:
            self._lambda_service.stop()
            self._lambda_service = None
        if self._moto is not None:
            self._moto.terminate()
            try:
                self._moto.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._moto.kill()
                self._moto.wait()
            self._moto = None
            self._moto_log.close()
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))

    def attached(self) -> dict[str, Any]:
        """What a build process needs to attach to this stack (its environment comes from os.environ)."""
        return {"lambda_port": self.lambda_port, "moto_pid": self.moto_pid, "physical": self.physical}

    @classmethod
    def attach(cls, attached: dict[str, Any]) -> ScaleStack:
        from data_export_cli.lambda_service import LambdaService

        stack = cls()
        stack.endpoint_url = os.environ["AWS_ENDPOINT_URL"]
        stack.lambda_port, stack.moto_pid = attached["lambda_port"], attached["moto_pid"]
        stack.physical = attached["physical"]
        service = LambdaService(
            stack._invoke_by_name, stack.endpoint_url, host=stack.host, port=stack.lambda_port
        )
        stack._lambda_service = service.start()
        return stack

    def invoke(
        self, logical_id: str, event: dict[str, Any], *, environment: Environment | None = None
    ) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            return super().invoke(logical_id, event, environment=environment)
        finally:
            self.invocations.append((logical_id, start, time.perf_counter()))


# --- builds (each in a fresh process) ----------------------------------------------------------------


@dataclass
class Run:
    size: str
    path: str
    archive_format: str
    data_bytes: int
    records: int
    files: int
    archive_bytes: int
    span: Span
    units: int = 1
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def mb_per_s(self) -> float:
        return self.data_bytes / MB / self.span.seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "path": self.path,
            "archive_format": self.archive_format,
            "data_bytes": self.data_bytes,
            "records": self.records,
            "files": self.files,
            "archive_bytes": self.archive_bytes,
            "units": self.units,
            "seconds": round(self.span.seconds, 3),
            "mb_per_s": round(self.mb_per_s, 1),
            "builder_cpu_seconds": round(self.span.builder_cpu, 2),
            "moto_cpu_seconds": round(self.span.moto_cpu, 2),
            "builder_peak_rss_mib": round(self.span.builder_peak_mib, 1),
            "builder_rss_before_mib": round(self.span.builder_start_mib, 1),
            "moto_peak_rss_mib": round(self.span.moto_peak_mib, 1),
            **self.detail,
        }


def new_job(shape: OrgShape, archive_format: str) -> Any:
    from data_export import wiring
    from data_export.export.builder import output_filename
    from data_export.ids import new_id
    from data_export.jobs import Job
    from data_export.models import ArchiveFormat

    fmt = ArchiveFormat(archive_format)
    job_id = new_id()
    job = Job.new(
        organization_id=shape.organization_id,
        job_id=job_id,
        archive_format=fmt,
        output_filename=output_filename("scale", job_id, fmt.extension),
        created_at=datetime.now(UTC),
        retention_days=1,
    )
    wiring.export_builder().jobs.create(job)
    return job


def checked(stack: ScaleStack, shape: OrgShape, job_id: str) -> Any:
    """The finished job, once checked that it exported everything; its archive is deleted (moto's memory)."""
    from data_export import wiring
    from data_export.models import JobStatus

    job = wiring.export_builder().jobs.get(shape.organization_id, job_id)
    if job is None or job.status is not JobStatus.COMPLETED:
        raise RuntimeError(f"job {job_id} ended {job and job.status.value}: {job and job.error}")
    records = sum(section.record_count for section in job.sections)
    binaries = sum(section.binary_count for section in job.sections)
    if (records, binaries) != (shape.records, shape.binaries):
        raise RuntimeError(
            f"exported {records} records, {binaries} binaries; seeded {shape.records}, {shape.binaries}"
        )
    s3, bucket = stack.client("s3"), stack.physical["ExportsBucket"]
    stored = s3.head_object(Bucket=bucket, Key=job.object_key)["ContentLength"]
    if stored != job.file_size_bytes or stored < shape.data_bytes:
        raise RuntimeError(f"archive holds {stored} bytes, job says {job.file_size_bytes}")
    s3.delete_object(Bucket=bucket, Key=job.object_key)
    return job


def run_fast(stack: ScaleStack, shape: OrgShape, archive_format: str, moto: ProcessStats) -> Run:
    from data_export import wiring

    job = new_job(shape, archive_format)
    builder = wiring.export_builder()
    with measured(moto) as span:
        builder.build(shape.organization_id, job.job_id)
    job = checked(stack, shape, job.job_id)
    return Run(
        shape.label, "fast", archive_format, shape.data_bytes, shape.records, shape.files,
        job.file_size_bytes, span,
    )  # fmt: skip


def step_event(shape: OrgShape, job_id: str, **extra: Any) -> dict[str, Any]:
    return {"organization_id": shape.organization_id, "job_id": job_id, "run_id": job_id, **extra}


def run_steps(
    stack: ScaleStack,
    shape: OrgShape,
    archive_format: str,
    moto: ProcessStats,
    chunk: int,
    chunk_records: int,
) -> Run:
    """Plan, each unit, assemble: one after the other, each measured alone like the Lambda it is (a warm
    one: the same process serves them all, as a warm Lambda container would)."""
    job = new_job(shape, archive_format)
    plan_event = step_event(shape, job.job_id, chunk_target_bytes=chunk, chunk_max_records=chunk_records)
    unit_spans: list[Span] = []
    unit_bytes: list[int] = []
    with measured(moto) as total:
        with measured(moto) as plan:
            units = stack.invoke("ExportPlanFunction", plan_event)["unit_indexes"]  # the plan is in S3
        for unit in units:
            with measured(moto) as span:
                event = step_event(shape, job.job_id, unit_index=unit)
                unit_bytes.append(stack.invoke("ExportBuildUnitFunction", event)["size"])
            unit_spans.append(span)
        with measured(moto) as assemble:
            stack.invoke("ExportAssembleFunction", step_event(shape, job.job_id))
    spans = [plan, *unit_spans, assemble]
    total.builder_peak_mib = max(span.builder_peak_mib for span in spans)
    total.moto_peak_mib = max(span.moto_peak_mib for span in spans)
    job = checked(stack, shape, job.job_id)
    biggest = max(range(len(units)), key=lambda i: unit_bytes[i])
    detail = {
        "plan_seconds": round(plan.seconds, 3),
        "plan_builder_cpu_seconds": round(plan.builder_cpu, 2),
        "plan_peak_rss_mib": round(plan.builder_peak_mib, 1),
        "unit_seconds_total": round(sum(span.seconds for span in unit_spans), 3),
        "unit_builder_cpu_seconds_total": round(sum(span.builder_cpu for span in unit_spans), 2),
        "unit_mb_per_s": round(sum(unit_bytes) / MB / sum(span.seconds for span in unit_spans), 1),
        "unit_peak_rss_mib_max": round(max(span.builder_peak_mib for span in unit_spans), 1),
        "biggest_unit_bytes": unit_bytes[biggest],
        "biggest_unit_seconds": round(unit_spans[biggest].seconds, 3),
        "assemble_seconds": round(assemble.seconds, 3),
        "assemble_builder_cpu_seconds": round(assemble.builder_cpu, 2),
        "assemble_peak_rss_mib": round(assemble.builder_peak_mib, 1),
    }
    return Run(
        shape.label, "steps", archive_format, shape.data_bytes, shape.records, shape.files,
        job.file_size_bytes, total, len(units), detail,
    )  # fmt: skip


def run_sfn(
    stack: ScaleStack,
    shape: OrgShape,
    archive_format: str,
    moto: ProcessStats,
    chunk: int,
    chunk_records: int,
) -> Run:
    """The worker's dispatch, then the real state machine on moto until the execution ends."""
    from data_export import wiring
    from data_export.export.dispatch import Dispatch

    real = wiring.dispatcher()
    settings = dataclasses.replace(
        real.settings, fast_path_max_bytes=0, chunk_target_bytes=chunk, chunk_max_records=chunk_records
    )
    dispatcher = dataclasses.replace(real, settings=settings)
    job = new_job(shape, archive_format)
    sfn = stack.client("stepfunctions")
    arn = f"{stack.physical['ExportStateMachine'].replace(':stateMachine:', ':execution:')}:{job.job_id}"
    with measured(moto) as span:
        started = time.perf_counter()
        if dispatcher.dispatch(shape.organization_id, job.job_id) is not Dispatch.STARTED:
            raise RuntimeError("the dispatcher did not start an execution")
        while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            time.sleep(0.1)
    if execution["status"] != "SUCCEEDED":
        raise RuntimeError(f"execution ended {execution['status']}: {execution.get('cause')}")
    job = checked(stack, shape, job.job_id)

    def window(logical_id: str) -> tuple[float, int]:
        calls = [(a, b) for name, a, b in stack.invocations if name == logical_id]
        return (max(b for _, b in calls) - min(a for a, _ in calls), len(calls)) if calls else (0.0, 0)

    (plan_s, _), (units_s, units), (assemble_s, _) = (
        window(name) for name in ("ExportPlanFunction", "ExportBuildUnitFunction", "ExportAssembleFunction")
    )
    detail = {
        "dispatch_to_plan_seconds": round(min(a for _, a, _ in stack.invocations) - started, 3),
        "plan_seconds": round(plan_s, 3),
        "units_window_seconds": round(units_s, 3),
        "assemble_seconds": round(assemble_s, 3),
    }
    return Run(
        shape.label, "sfn", archive_format, shape.data_bytes, shape.records, shape.files,
        job.file_size_bytes, span, units, detail,
    )  # fmt: skip


def build_in_this_process(request: dict[str, Any]) -> dict[str, Any]:
    """One build, in a process of its own (started by ``run_build``); returns the Run as JSON data."""
    from data_export import wiring

    stack = ScaleStack.attach(request["stack"])
    try:
        shape, moto = OrgShape.of_size(request["size"]), ProcessStats(stack.moto_pid)
        wiring.export_builder(), wiring.dispatcher(), wiring.chunked_export()  # a warm Lambda's clients
        path, archive_format = request["path"], request["archive_format"]
        if path == "fast":
            run = run_fast(stack, shape, archive_format, moto)
        elif path == "steps":
            run = run_steps(stack, shape, archive_format, moto, request["chunk"], request["chunk_records"])
        else:
            run = run_sfn(stack, shape, archive_format, moto, request["chunk"], request["chunk_records"])
    finally:
        stack.stop()
    return {**dataclasses.asdict(run), "span": dataclasses.asdict(run.span)}


def run_build(request: dict[str, Any]) -> Run:
    """Start a fresh Python for one build, so that its peak memory is that build's and nothing else's."""
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--build", json.dumps(request)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"build {request['size']}/{request['path']} failed:\n{completed.stderr[-4000:]}")
    data = json.loads(completed.stdout.strip().splitlines()[-1])
    return Run(**{**data, "span": Span(**data["span"])})


# --- the assembler's memory: the one part that grows with the archive ------------------------------------


def assemble_probe(entries: int, units: int = 57) -> dict[str, float]:
    """Peak memory and CPU of the assembler's in-memory work for an archive of ``entries`` entries: parse
    every unit index (fetched one at a time, as ``assemble`` does) and write the zip central directory with
    the assembler's own ``_tail``.
    No S3 here: this is what the 100 GB organization's ~350,000 entries cost the Assemble Lambda."""
    from data_export.export.chunked import UnitIndex, _tail
    from data_export.jobs import Job
    from data_export.models import ArchiveFormat

    job = Job.new(
        organization_id=short_id("probe"),
        job_id=short_id("probe-job"),
        archive_format=ArchiveFormat.ZIP,
        output_filename=f"scale-export-{short_id('probe-job')}.zip",
        created_at=datetime.now(UTC),
        retention_days=1,
    )
    top, per_unit = job.output_filename.removesuffix(".zip"), -(-entries // units)

    def unit_index_json(unit: int) -> bytes:  # what build_unit stores beside a unit of images
        zip_entries, offset = [], 0
        for i in range(unit * per_unit, min(entries, (unit + 1) * per_unit)):
            name = f"{top}/products/{short_id('p', i // 5)}/images/lot {i // 5} view {i % 5}.jpg"
            size = IMAGE_SIZES[i % 5]
            zip_entries.append(
                {"name": name, "header_offset": offset, "crc32": i, "compressed_size": size,
                 "uncompressed_size": size, "method": 0, "mtime": 1_700_000_000, "flags": 0x800,
                 "zip64_header": False}
            )  # fmt: skip
            offset += size + 30 + len(name.encode())
        index = {"unit_id": f"04-products-{unit:05d}", "section": "products", "size": offset, "records": 0,
                 "binaries": len(zip_entries), "missing": [], "zip_entries": zip_entries}  # fmt: skip
        return json.dumps(index).encode()

    me = ProcessStats()
    me.reset_peak()
    before, work = me.rss_mib(), 0.0
    indexes = []
    for unit in range(units):
        data = unit_index_json(unit)
        start = time.process_time()
        indexes.append(UnitIndex(**json.loads(data)))
        work += time.process_time() - start
        del data
    start = time.process_time()
    tail = _tail(job, indexes, b"manifest\n", sum(index.size for index in indexes))
    cpu = work + time.process_time() - start
    return {
        "entries": entries,
        "unit_indexes": units,
        "cpu_seconds": round(cpu, 2),
        "rss_before_mib": round(before, 1),
        "peak_rss_mib": round(me.peak_mib(), 1),
        "central_directory_mib": round(len(tail) / MIB, 1),
    }


# --- report ------------------------------------------------------------------------------------------


def git_commit() -> str:
    """The commit measured, with ``+dirty`` when the working tree differs from it."""

    def git(*command: str) -> str:
        done = subprocess.run(["git", *command], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    dirty = git(
        "status", "--porcelain", "--untracked-files=no", "--", "layers", "functions", "cli", "template.yaml"
    )
    return git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")


def linear_fit(runs: list[Run]) -> dict[str, float | None] | None:
    """seconds = fixed + data_MB / marginal_MB_per_s, least squares over the sizes of one path."""
    if len(runs) < 2:
        return None
    xs, ys = [r.data_bytes / MB for r in runs], [r.span.seconds for r in runs]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    fixed = mean_y - slope * mean_x
    ss_res = sum((y - (fixed + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - mean_y) ** 2 for y in ys) or 1.0
    return {
        "fixed_seconds": round(fixed, 2),
        "marginal_mb_per_s": round(1 / slope, 1) if slope > 0 else None,
        "r_squared": round(1 - ss_res / ss_tot, 4),
    }


def table(runs: list[Run]) -> str:
    header = (
        f"{'size':>6} {'path':>5} {'fmt':>6} {'records':>8} {'files':>8} {'units':>5} {'seconds':>8} "
        f"{'MB/s':>6} {'cpu s':>6} {'moto s':>6} {'peak MiB':>8} {'growth':>6} {'moto MiB':>8} {'t/size':>6}"
    )
    lines = [header, "-" * len(header)]
    smallest: dict[tuple[str, str], float] = {}
    for run in runs:
        per_byte = run.span.seconds / run.data_bytes
        base = smallest.setdefault((run.path, run.archive_format), per_byte)
        lines.append(
            f"{run.size:>6} {run.path:>5} {run.archive_format:>6} {run.records:>8,} {run.files:>8,} "
            f"{run.units:>5} {run.span.seconds:>8.2f} {run.mb_per_s:>6.1f} {run.span.builder_cpu:>6.1f} "
            f"{run.span.moto_cpu:>6.1f} {run.span.builder_peak_mib:>8.0f} "
            f"{run.span.builder_peak_mib - run.span.builder_start_mib:>6.0f} {run.span.moto_peak_mib:>8.0f} "
            f"{per_byte / base:>6.2f}"
        )
    return "\n".join(lines)


def measure(shape: OrgShape, args: argparse.Namespace) -> tuple[list[Run], float, bool]:
    """Seed one organization into a fresh stack and export it by every path and format asked."""
    stack = ScaleStack().start()
    runs: list[Run] = []
    try:
        started = time.perf_counter()
        if (seeded := seed(shape)) != shape.data_bytes:
            raise RuntimeError(f"seeded {seeded} bytes of assets, expected {shape.data_bytes}")
        seconds = time.perf_counter() - started
        pinned = not args.no_pin and stack.pin()
        print(
            f"{shape.label}: {shape.products:,} products, {shape.binaries:,} images, "
            f"{shape.data_bytes / MB:,.0f} MB, seeded in {seconds:.1f} s",
            flush=True,
        )
        for archive_format in args.formats:
            for path in args.paths:
                request = {
                    "stack": stack.attached(),
                    "size": shape.label,
                    "path": path,
                    "archive_format": archive_format,
                    "chunk": args.chunk,
                    "chunk_records": args.chunk_records,
                }
                runs.append(run := run_build(request))
                print(
                    f"  {path:>5} {archive_format:>6}: {run.span.seconds:7.2f} s {run.mb_per_s:6.1f} MB/s, "
                    f"peak {run.span.builder_peak_mib:4.0f} MiB, {run.units} unit(s)",
                    flush=True,
                )
    finally:
        stack.stop()
    return runs, seconds, pinned


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", help=f"comma-separated data sizes (default {DEFAULT_SIZES}; 4GB: ~15 min)")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: sizes {QUICK_SIZES}")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"any of {', '.join(PATHS)} (default all)")
    parser.add_argument("--formats", default="zip", help="zip, tar.gz or both (default zip)")
    parser.add_argument(
        "--chunk", default="64MiB", help="unit size for steps and sfn (default 64MiB; AWS 2GiB)"
    )
    parser.add_argument("--chunk-records", type=int, default=10_000, help="records per unit at most (10,000)")
    parser.add_argument("--no-pin", action="store_true", help="let moto and the builder share every CPU")
    parser.add_argument(
        "--output", type=Path, default=RESULTS_PATH, help="results JSON (default %(default)s)"
    )
    parser.add_argument(
        "--assemble-probe",
        type=int,
        metavar="ENTRIES",
        help="only measure the assembler's memory for ENTRIES",
    )
    parser.add_argument("--build", help=argparse.SUPPRESS)  # internal: one build, in a child process
    args = parser.parse_args(argv)
    args.sizes = [
        OrgShape.of_size(label.strip())
        for label in (args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)).split(",")
    ]
    args.paths = [path.strip() for path in args.paths.split(",")]
    args.formats = [fmt.strip() for fmt in args.formats.split(",")]
    if unknown := [p for p in args.paths if p not in PATHS] + [f for f in args.formats if f not in FORMATS]:
        parser.error(f"unknown path or format: {', '.join(unknown)}")
    args.chunk = parse_size(args.chunk)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.build:
        print(json.dumps(build_in_this_process(json.loads(args.build))))
        return 0
    if args.assemble_probe:
        print(json.dumps(assemble_probe(args.assemble_probe)))
        return 0
    commit = git_commit()  # builds import the tree as it is when they start: note it before and after
    runs: list[Run] = []
    seeding: dict[str, float] = {}
    pinned = False
    for shape in args.sizes:
        size_runs, seeding[shape.label], pinned = measure(shape, args)
        runs.extend(size_runs)

    order = [(path, fmt) for fmt in args.formats for path in args.paths]
    runs.sort(key=lambda run: (order.index((run.path, run.archive_format)), run.data_bytes))
    fits = {
        f"{path}/{fmt}": linear_fit([run for run in runs if (run.path, run.archive_format) == (path, fmt)])
        for path, fmt in order
    }
    print("\n" + table(runs))
    for name, fit in fits.items():
        if fit:
            print(
                f"{name}: seconds = {fit['fixed_seconds']} + MB / {fit['marginal_mb_per_s']} "
                f"(R² {fit['r_squared']})"
            )
    results = {
        "command": " ".join(["python -m benchmarks.scale", *(sys.argv[1:] if argv is None else argv)]),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit if commit == (at_end := git_commit()) else f"{commit} .. {at_end}",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "moto_and_builder_on_separate_cpus": pinned,
        },
        "shape": {"image_sizes": IMAGE_SIZES, "bytes_per_product": PRODUCT_BYTES, "offers_per_product": 1},
        "chunk_target_bytes": args.chunk,
        "chunk_max_records": args.chunk_records,
        "seeding_seconds": seeding,
        "runs": [run.to_json() for run in runs],
        "linear_fits": fits,
    }
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
