"""A tiny HTTP client for the end-to-end tests (urllib; what any API client does)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

BASE = "/dashboard/api/v1/data-export"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(method: str, url: str, api_key: str | None = None, headers: dict[str, str] | None = None) -> Reply:
    all_headers = dict(headers or {})
    if api_key is not None:
        all_headers["X-API-Key"] = api_key
    request = urllib.request.Request(url, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Reply(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers.items()), error.read())


def wait_for_job(
    api_url: str, organization_id: str, job_id: str, api_key: str, timeout: float = 300, base: str = BASE
) -> dict[str, Any]:
    """Poll until the job (an export, or an import under the import ``base``) finishes; returns the last
    body and every distinct status seen along the way."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        reply = call("GET", f"{api_url}{base}/{organization_id}/{job_id}", api_key)
        assert reply.status == 200, reply.body
        job = reply.json()
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] in ("completed", "failed"):
            job["_statuses_seen"] = seen
            return dict(job)
        assert time.monotonic() < deadline, f"job still {job['status']} after {timeout}s"
        time.sleep(0.2)
