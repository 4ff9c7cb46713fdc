"""A small bounded load test on the session's local stack (the full one is ``benchmarks.load``): concurrent
polls while exports of several organizations run at once; nothing lost, nothing broken, every archive
verified. Speed is not asserted here; the benchmark reports it."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from benchmarks.load import run_load, seed_tenants, verify_archive
from tests.e2e.client import BASE, call, wait_for_job

EXPORTS = 8  # 4 organizations x (zip, tar.gz), under the limit of 3 open exports each
REQUESTS = 300
CONCURRENCY = 16


@pytest.fixture(scope="module")
def results(stack: Any, api_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tenants = seed_tenants(stack, tmp_path_factory.mktemp("load"), EXPORTS // 2)
    return run_load(
        stack, api_url, tenants, exports=EXPORTS, requests=REQUESTS, concurrency=CONCURRENCY, timeout=120
    )


@pytest.mark.slow
def test_no_server_error_and_every_request_answered(results: dict[str, Any]) -> None:
    operations = results["operations"]
    assert operations["poll"]["count"] >= REQUESTS * 9 // 10  # background polls, plus the exporters' own
    assert operations["poll unknown job"]["count"] == REQUESTS // 10
    assert operations["start"]["count"] == EXPORTS and operations["download"]["count"] == EXPORTS
    for name, stats in operations.items():
        assert stats["server_errors"] == 0, (name, stats["statuses"])
        assert stats["unanswered"] == 0, (name, stats["statuses"])
        assert stats["unexpected_status"] == 0, (name, stats["statuses"])


@pytest.mark.slow
def test_every_export_completed_downloaded_and_verified(results: dict[str, Any]) -> None:
    assert results["problems"] == []
    exports = results["exports"]
    assert exports["requested"] == exports["completed"] == exports["verified"] == EXPORTS
    assert {o["archive_format"] for o in results["outcomes"]} == {"zip", "tar.gz"}
    for outcome in results["outcomes"]:
        assert outcome["status"] == "completed" and outcome["statuses_seen"][-1] == "completed"
        assert outcome["size_bytes"] > 0


@pytest.mark.slow
def test_no_job_left_pending_or_processing(results: dict[str, Any]) -> None:
    assert results["jobs_left_open"] == []
    assert len({o["job_id"] for o in results["outcomes"]}) == EXPORTS


def test_verification_catches_a_changed_binary_and_a_wrong_count(
    stack: Any, api_url: str, tmp_path: Path
) -> None:
    """The check the load relies on can fail: a real archive passes, then one flipped byte in one binary
    and one wrong manifest count are each reported."""
    (tenant,) = seed_tenants(stack, tmp_path, 1)
    reply = call("POST", f"{api_url}{BASE}/{tenant.organization_id}?archive_format=zip", tenant.key)
    assert reply.status == 200, reply.body
    job = wait_for_job(api_url, tenant.organization_id, reply.json()["job_id"], tenant.key)
    body = call("GET", job["download_url"]).body
    assert verify_archive(body, "zip", job["job_id"], tenant) == []

    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    binary = next(name for name in files if name.endswith(".pdf"))
    files[binary] = bytes([files[binary][0] ^ 1]) + files[binary][1:]
    manifest_name = next(name for name in files if name.endswith("/manifest.yaml"))
    files[manifest_name] = files[manifest_name].replace(b"record_count: 3", b"record_count: 4", 1)
    changed = io.BytesIO()
    with zipfile.ZipFile(changed, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    problems = verify_archive(changed.getvalue(), "zip", job["job_id"], tenant)
    assert len(problems) == 2, problems
    assert any("products" in p and "differs from the seeded bytes" in p for p in problems)
    assert any(p.startswith("products: manifest") for p in problems)
