"""Fuzz the published API (docs/openapi.json) with schemathesis over HTTP against the local stack.

Every answer must be a documented status with a body matching its schema, never a 5xx. Requests go only to
the session's local gateway on loopback. Some runs carry the example's valid key on the example's
organization (so generated requests reach the job routes' real code), others a wrong key or none."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.client import BASE, call

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
ACME = "eHcFM2wk4RdyYG8yMrTGbQ"
ACME_KEY = "csb_uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo_b5b88299"
# Well formed (valid checksum) but unknown, and the other organization's real key.
OTHER_ORG_KEY = "csb_8x6pjtsSB151CEvNQDVzoe4MtlgbXxMZ_fbb12fee"
CREDENTIALS = [ACME_KEY, ACME_KEY, None, OTHER_ORG_KEY, "csb_not-a-key"]
START = f"{BASE}/{{organization_id}}"
POLL = f"{BASE}/{{organization_id}}/{{job_id}}"
MAX_EXAMPLES = 50
# No 5xx; status, content type, headers and body as documented; a request without the key it needs is
# refused (ignored_auth replays a keyed request without it); schema-invalid input is refused.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
    negative_data_rejection,
]

SCHEMA = schemathesis.openapi.from_path(OPENAPI)


@pytest.fixture(scope="module")
def session(api_url: str) -> Iterator[requests.Session]:
    host = urlsplit(api_url).hostname
    assert host is not None and (host.startswith("127.") or host in ("localhost", "::1")), api_url
    with requests.Session() as http:
        http.trust_env = False  # no proxy from the environment: loopback only
        yield http


@pytest.fixture(scope="module")
def acme_job(api_url: str) -> str:
    reply = call("POST", f"{api_url}{BASE}/{ACME}", ACME_KEY)
    assert reply.status == 200, reply.body
    return str(reply.json()["job_id"])


@pytest.fixture(scope="module")
def started_jobs(api_url: str) -> Iterator[list[str]]:
    """Jobs the fuzzer started; at the end each must have finished (nothing lost, queue left drained)."""
    jobs: list[str] = []
    yield jobs
    deadline = time.monotonic() + 300
    for job_id in jobs:
        while True:
            status = call("GET", f"{api_url}{BASE}/{ACME}/{job_id}", ACME_KEY).json()["status"]
            if status in ("completed", "failed"):
                assert status == "completed", job_id
                break
            assert time.monotonic() < deadline, f"fuzzed job {job_id} still {status}"
            time.sleep(0.2)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("method", "path"), [("POST", START), ("GET", POLL)])
def test_generated_requests_get_documented_answers(
    api_url: str,
    session: requests.Session,
    acme_job: str,
    started_jobs: list[str],
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = SCHEMA[path][method]
    seen: set[int] = set()

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(generation_mode=mode),
        credential=st.sampled_from(CREDENTIALS),
        on_acme=st.booleans(),
        known_job=st.booleans(),
    )
    def check(case: Any, credential: str | None, on_acme: bool, known_job: bool) -> None:
        if on_acme:
            case.path_parameters = {**(case.path_parameters or {}), "organization_id": ACME}
            if method == "GET" and known_job:
                case.path_parameters["job_id"] = acme_job
        headers = {} if credential is None else {"X-API-Key": credential}
        response = case.call_and_validate(base_url=api_url, session=session, headers=headers, checks=CHECKS)
        seen.add(response.status_code)
        if method == "POST" and response.status_code == 200:
            started_jobs.append(response.json()["job_id"])

    check()
    if mode is GenerationMode.POSITIVE:
        # The generator reached the real code behind authentication, not only the early refusals.
        assert 200 in seen, seen
    else:
        # negative_data_rejection judged each answer; this only proves invalid input was generated at all.
        assert any(400 <= status < 500 for status in seen), seen


@pytest.mark.xfail(
    strict=True,
    reason="docs/openapi.json declares organization_id and job_id as any string, but the API answers 400 "
    "to anything but a 22-character shortuuid: the document should declare the pattern",
)
def test_schema_valid_ids_are_accepted(api_url: str, session: requests.Session) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=SCHEMA[START]["POST"].as_strategy(generation_mode=GenerationMode.POSITIVE))
    def check(case: Any) -> None:
        # Another organization's valid key: a well-formed request is answered 403, never started.
        case.call_and_validate(
            base_url=api_url,
            session=session,
            headers={"X-API-Key": OTHER_ORG_KEY},
            checks=[positive_data_acceptance],
        )

    check()
