"""Poll latency: the GET handler, warm, in-process, against the local stack's moto server.

Each call goes through the whole handler as API Gateway would invoke it (API-key check, rate limit, job
read, and for a completed job a freshly signed download URL), so it includes the round trips to moto over
HTTP. Both states are measured, each with its own calls; every response is checked (200, the job's state)
and sized. A p99 is reported only from at least ``P99_MIN_SAMPLES`` calls (below that it is the maximum
or next to it); a quick run reports p50 and p90.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.harness import check, percentile
from benchmarks.synthetic import SyntheticOrg, write_fixture

BASE_PATH = "/dashboard/api/v1/data-export"
P99_MIN_SAMPLES = 1000
ROUTE = BASE_PATH + "/{organization_id}/{job_id}"


def get_event(org: SyntheticOrg, job_id: str) -> dict[str, Any]:
    from data_export_cli.gateway import api_event

    path = f"{BASE_PATH}/{org.organization_id}/{job_id}"
    return api_event(
        "GET",
        path,
        {"X-API-Key": org.api_key, "Accept": "application/json"},
        b"",
        ROUTE,
        {"organization_id": org.organization_id, "job_id": job_id},
        "",
    )


def jobs_to_poll(stack: Any, org: SyntheticOrg) -> dict[str, str]:
    """A completed job (built here) and a pending one (created, never queued to a worker)."""
    from data_export import wiring
    from data_export.export.builder import output_filename
    from data_export.ids import new_id
    from data_export.jobs import Job
    from data_export.models import ArchiveFormat, JobStatus

    jobs = {}
    for state in ("completed", "pending"):
        job_id = new_id()
        job = Job.new(
            organization_id=org.organization_id,
            job_id=job_id,
            archive_format=ArchiveFormat.ZIP,
            output_filename=output_filename("synthetic", job_id, "zip"),
            created_at=datetime.now(UTC),
            retention_days=7,
        )
        wiring.export_builder().jobs.create(job)
        if state == "completed":
            built = wiring.export_builder().build(org.organization_id, job_id)
            if built is None or built.status is not JobStatus.COMPLETED:
                raise RuntimeError(f"could not build the job to poll: {built}")
        jobs[state] = job_id
    return jobs


def run(stack: Any, *, calls: int) -> dict[str, Any]:
    from data_export import wiring
    from data_export.settings import get_settings
    from data_export_cli.seed import seed_file

    with tempfile.TemporaryDirectory() as folder:
        org = write_fixture(Path(folder), products=3, seed=2)
        seed_file(
            org.path,
            dynamodb_client=wiring.client("dynamodb"),
            s3_client=wiring.client("s3"),
            settings=get_settings(),
        )
    results: dict[str, Any] = {"calls": calls}
    for state, job_id in jobs_to_poll(stack, org).items():
        event = get_event(org, job_id)
        for _ in range(20):  # warm: clients, connections, caches
            stack.invoke("GetExportFunction", event)
        samples, sizes = [], []
        for _ in range(calls):
            start = time.perf_counter()
            response = stack.invoke("GetExportFunction", event)
            samples.append(time.perf_counter() - start)
            body = response["body"]
            check(response["statusCode"] == 200, f"poll answered {response['statusCode']}: {body[:500]}")
            answer = json.loads(body)
            check(answer.get("status") == state, f"poll of a {state} job answered {body[:500]}")
            check(state != "completed" or bool(answer.get("download_url")), "completed, without a URL")
            sizes.append(len(body.encode()))
        results[state] = {
            "samples": len(samples),
            "verified": True,  # every response: 200, the job's state (and a URL once completed)
            "output_bytes": int(statistics.median(sizes)),
            "p50_ms": percentile(samples, 0.50) * 1000,
            "p90_ms": percentile(samples, 0.90) * 1000,
            "p99_ms": percentile(samples, 0.99) * 1000 if len(samples) >= P99_MIN_SAMPLES else None,
            "mean_ms": statistics.fmean(samples) * 1000,
            "max_ms": max(samples) * 1000,
        }
    return results
