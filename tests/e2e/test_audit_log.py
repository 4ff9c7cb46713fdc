"""Audit log lines: one per export requested, per download URL handed out, per refused request, with the
ids that say who did what to which organization, and no secret (key, key hash, presigned URL)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from data_export.ids import new_id

from tests.e2e.client import BASE, call, wait_for_job
from tests.security.helpers import new_key, organization, seed
from tests.security.test_no_secrets_in_logs import captured_logs

OTHER_ORG_KEY = "csb_8x6pjtsSB151CEvNQDVzoe4MtlgbXxMZ_fbb12fee"  # the example's second organization


def audit_lines(text: str) -> list[dict[str, Any]]:
    """The audit objects of the Powertools JSON lines in ``text``."""
    found = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(entry, dict)
            and entry.get("message") == "audit"
            and isinstance(entry.get("audit"), dict)
        ):
            found.append(entry["audit"])
    return found


@pytest.fixture(scope="module")
def audited(api_url: str, stack: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An export requested and downloaded, then refusals of each kind, all with logs captured."""
    key, once_a_day_key = new_key(), new_key()
    fixture = organization("Audited", key)
    fixture["api_keys"].append(
        {"id": new_id(), "name": "once", "key": once_a_day_key, "created_at": "2025-01-01T00:00:00+00:00"}
    )
    fixture["api_keys"][1]["rate_limit_per_day"] = 1
    seed(stack, Path(tmp_path_factory.mktemp("audited")), fixture)
    organization_id = fixture["organization"]["id"]
    for function in stack.functions:  # import the handlers (and create their loggers) before capturing
        stack.handler(function)
    with captured_logs() as sink:
        started = call("POST", f"{api_url}{BASE}/{organization_id}", key)
        assert started.status == 200, started.body
        job = wait_for_job(api_url, organization_id, started.json()["job_id"], key)
        assert job["status"] == "completed" and job["download_url"]
        statuses = [
            call("POST", f"{api_url}{BASE}/{organization_id}").status,
            call("POST", f"{api_url}{BASE}/{organization_id}", OTHER_ORG_KEY).status,
            call("GET", f"{api_url}{BASE}/{organization_id}/{new_id()}", key).status,
            call("GET", f"{api_url}{BASE}/{organization_id}/{job['job_id']}", once_a_day_key).status,
            call("GET", f"{api_url}{BASE}/{organization_id}/{job['job_id']}", once_a_day_key).status,
        ]
    # The second request of the once-a-day key is refused (unless the UTC day turned in between).
    assert statuses == [401, 403, 404, 200, 429]
    return {
        "organization_id": organization_id,
        "job": job,
        "key_ids": [record["id"] for record in fixture["api_keys"]],
        "secrets": [
            secret
            for raw in (key, once_a_day_key, OTHER_ORG_KEY)
            for secret in (raw, raw.split("_")[1], hashlib.sha256(raw.encode()).hexdigest())
        ],
        "text": sink.getvalue(),
    }


def mine(audited: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        line for line in audit_lines(audited["text"]) if line["organization_id"] == audited["organization_id"]
    ]


def test_an_export_request_is_audited(audited: dict[str, Any]) -> None:
    (requested,) = [line for line in mine(audited) if line["event"] == "Export requested"]
    assert requested == {
        "event": "Export requested",
        "outcome": "allowed",
        "status": 200,
        "organization_id": audited["organization_id"],
        "job_id": audited["job"]["job_id"],
        "key_id": audited["key_ids"][0],
    }


def test_handing_out_a_download_url_is_audited(audited: dict[str, Any]) -> None:
    issued = [line for line in mine(audited) if line["event"] == "Download URL issued"]
    # The poll that saw the job completed, and the once-a-day key's poll.
    assert [line["key_id"] for line in issued] == audited["key_ids"]
    for line in issued:
        assert (line["outcome"], line["status"], line["job_id"]) == ("allowed", 200, audited["job"]["job_id"])


def test_every_refusal_is_audited_with_what_is_known_of_the_caller(audited: dict[str, Any]) -> None:
    refused = [line for line in mine(audited) if line["outcome"] == "refused"]
    assert [(line["status"], line["error"]) for line in refused] == [
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "not_found"),
        (429, "rate_limited"),
    ]
    unauthenticated, forbidden, unknown_job, limited = refused
    assert unauthenticated["key_id"] is None  # no key was given, and none is guessed
    assert forbidden["key_id"] not in audited["key_ids"] and forbidden["key_id"]
    assert unknown_job["key_id"] == audited["key_ids"][0] and unknown_job["job_id"]
    assert limited["key_id"] == audited["key_ids"][1]
    assert limited["job_id"] == audited["job"]["job_id"]
    for line in refused:
        assert line["event"] == "request refused"


def test_audit_lines_carry_no_secret(audited: dict[str, Any]) -> None:
    lines = [json.dumps(line) for line in mine(audited)]
    assert len(lines) == 7  # requested, two URLs issued, four refusals
    url = audited["job"]["download_url"]
    for line in lines:
        for secret in [*audited["secrets"], url, url.split("?", 1)[1]]:
            assert secret not in line
