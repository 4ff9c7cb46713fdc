"""End to end over HTTP against the local stack: request, poll, download and check every record and
binary of the example organization, in both formats, with the real archive tools."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from data_export.models import ExportJobResponse

from tests.archive_checks import (
    ACME,
    EXAMPLE_SECTION_COUNTS,
    SECTIONS,
    archive_files,
    check_binaries,
    check_manifest,
    check_no_secret_nor_other_organization,
    check_records,
    check_with_real_tools,
    section_counts,
)
from tests.e2e.client import BASE, call, wait_for_job

ACME_KEY = "csb_uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo_b5b88299"


@pytest.fixture(scope="module", params=["zip", "tar.gz"])
def exported(request: pytest.FixtureRequest, api_url: str) -> dict[str, Any]:
    archive_format = request.param
    reply = call("POST", f"{api_url}{BASE}/{ACME}?archive_format={archive_format}", ACME_KEY)
    assert reply.status == 200, reply.body
    started = ExportJobResponse.model_validate_json(reply.body)
    job = wait_for_job(api_url, ACME, started.job_id, ACME_KEY)
    download = call("GET", job["download_url"])
    assert download.status == 200
    top = job["output_filename"].removesuffix("." + archive_format)
    return {
        "format": archive_format,
        "start": reply,
        "job": job,
        "download": download,
        "top": top,
        "files": archive_files(download.body, archive_format),
    }


def test_start_answers_pending_job_with_location(exported: dict[str, Any]) -> None:
    start = exported["start"]
    body = start.json()
    assert body["status"] == "pending"
    assert body["archive_format"] == exported["format"]
    assert body["download_url"] is None and body["expires_at"] is None and body["file_size_bytes"] == 0
    assert [s["key"] for s in body["sections"]] == SECTIONS
    assert start.headers["Location"].endswith(f"{BASE}/{ACME}/{body['job_id']}")
    assert len(body["job_id"]) == 22


def test_completed_job_describes_a_downloadable_archive(exported: dict[str, Any]) -> None:
    job, download = exported["job"], exported["download"]
    ExportJobResponse.model_validate(job)
    assert job["status"] == "completed" and job["error"] is None
    assert job["file_size_bytes"] == len(download.body) > 5 * 1024 * 1024
    assert job["output_filename"] == f"acme-coffee-export-{job['job_id']}.{exported['format']}"
    assert f'filename="{job["output_filename"]}"' in download.headers.get("Content-Disposition", "")
    expires_at = datetime.fromisoformat(job["expires_at"])
    assert expires_at.utcoffset() is not None
    assert timedelta(minutes=50) < expires_at - datetime.now(UTC) <= timedelta(hours=1)
    assert section_counts(job["sections"]) == EXAMPLE_SECTION_COUNTS
    products = next(s for s in job["sections"] if s["key"] == "products")
    assert "kettle-side.png" in products["error"]


def test_every_record_matches_the_source(exported: dict[str, Any], example: Any) -> None:
    check_records(exported["files"], exported["top"], example)


def test_every_binary_matches_byte_for_byte(exported: dict[str, Any], example: Any) -> None:
    assert check_binaries(exported["files"], exported["top"], example) == 7


def test_manifest_carries_version_and_inventory(exported: dict[str, Any]) -> None:
    check_manifest(exported["files"], exported["top"], exported["job"])


def test_no_secret_and_no_other_organization_in_the_archive(exported: dict[str, Any], example: Any) -> None:
    check_no_secret_nor_other_organization(exported["files"], example)


def test_real_tools_open_the_archive(exported: dict[str, Any], tmp_path: Path) -> None:
    archive = tmp_path / exported["job"]["output_filename"]
    archive.write_bytes(exported["download"].body)
    assert check_with_real_tools(archive, exported["format"], set(exported["files"]), tmp_path) >= 2
