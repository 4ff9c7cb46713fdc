"""The published contract over HTTP: every authentication and authorization case, bad input, isolation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from data_export.ids import new_id
from data_export.models import ErrorResponse

from tests.e2e.client import BASE, call
from tests.round_trip import IMPORT_BASE

ACME = "eHcFM2wk4RdyYG8yMrTGbQ"
OTHER = "TpR7vWk3Qx9mHc2NbY5sLe"
AUTH_ORG = "NBTj56vc8Rf5aF47VU6H7d"
KEYS = {
    "acme_server": "csb_uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo_b5b88299",
    "acme_revoked": "csb_2ym7FgoRF9Hvrby6WjKt989NUzo4l7Hx_035ce1bd",
    "acme_manager_user": "csu_3rMBavmzbbadyYbqjs182nmOWm9KnPIr_4dfd0780",
    "acme_publishable": "cpk_pfEwTjhlN8oFsHWVeOJDnKYSxw9YD6zk_c2b4a42f",
    "other_server": "csb_8x6pjtsSB151CEvNQDVzoe4MtlgbXxMZ_fbb12fee",
    "auth_expired": "csb_TAwR4y9ojfljoQoaF1LlqsajAIxNKu8i_6006b1ee",
    "auth_owner_user": "csu_S2G8NPRVdD53X83RZJzzzzgEOzdmenCk_26dc7c6f",
    "auth_editor_user": "csu_hvMdgaKjIg8xNbe3nNyjOq9wMxEhh2FD_f94c873f",
    "auth_billing_user": "csu_EEtfjgVvVqE1SkHbn88HxjSI6bWHtP3f_437cc7f9",
}
UNKNOWN_KEY = "csb_AAAAbbbbCCCCddddEEEEffffGGGGhhhh_" + format(
    __import__("zlib").crc32(b"AAAAbbbbCCCCddddEEEEffffGGGGhhhh"), "08x"
)


def error_of(reply: Any, status: int) -> ErrorResponse:
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers.get("Content-Type", "").startswith("application/json")
    return ErrorResponse.model_validate_json(reply.body)


@pytest.fixture(scope="module")
def acme_job(api_url: str) -> str:
    reply = call("POST", f"{api_url}{BASE}/{ACME}", KEYS["acme_server"])
    assert reply.status == 200, reply.body
    return str(reply.json()["job_id"])


@pytest.mark.parametrize(
    ("api_key", "reason"),
    [
        (None, "Missing"),
        ("", "Missing"),
        ("not-a-key", "Malformed"),
        ("csb_uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo_00000000", "checksum"),
        ("csx_uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo_b5b88299", "Malformed"),
        (UNKNOWN_KEY, "Unknown"),
        (KEYS["acme_revoked"], "revoked"),
        (KEYS["auth_expired"], "expired"),
    ],
)
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_unauthenticated_requests_get_401(
    api_url: str, acme_job: str, api_key: str | None, reason: str, method: str
) -> None:
    url = f"{api_url}{BASE}/{ACME}" if method == "POST" else f"{api_url}{BASE}/{ACME}/{acme_job}"
    error = error_of(call(method, url, api_key), 401)
    assert error.error == "unauthorized" and reason in error.message


@pytest.mark.parametrize(
    ("key", "organization", "reason"),
    [
        ("acme_publishable", ACME, "Publishable"),
        ("other_server", ACME, "may not export this organization"),
        ("acme_server", OTHER, "may not export this organization"),
        ("auth_editor_user", AUTH_ORG, "role 'editor'"),
        ("auth_billing_user", AUTH_ORG, "role 'billing'"),
        ("auth_owner_user", ACME, "may not export this organization"),
    ],
)
def test_forbidden_exports_get_403(api_url: str, key: str, organization: str, reason: str) -> None:
    error = error_of(call("POST", f"{api_url}{BASE}/{organization}", KEYS[key]), 403)
    assert error.error == "forbidden" and reason in error.message


@pytest.mark.parametrize(
    ("key", "organization"), [("acme_manager_user", ACME), ("auth_owner_user", AUTH_ORG)]
)
def test_owner_and_manager_user_keys_may_export(api_url: str, key: str, organization: str) -> None:
    reply = call("POST", f"{api_url}{BASE}/{organization}?archive_format=tar.gz", KEYS[key])
    assert reply.status == 200, reply.body
    assert reply.json()["archive_format"] == "tar.gz"


def test_job_of_another_organization_is_not_found(api_url: str, acme_job: str) -> None:
    # The other organization's own key, on its own path, asking for Acme's job: 404, nothing revealed.
    error = error_of(call("GET", f"{api_url}{BASE}/{OTHER}/{acme_job}", KEYS["other_server"]), 404)
    assert acme_job not in error.message and ACME not in error.message
    error_of(call("GET", f"{api_url}{BASE}/{ACME}/{acme_job}", KEYS["other_server"]), 403)


def test_unknown_job_is_not_found(api_url: str) -> None:
    # A fresh id: the sample events' fixed job id may exist by now in this session's stack.
    error_of(call("GET", f"{api_url}{BASE}/{ACME}/{new_id()}", KEYS["acme_server"]), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"{BASE}/not-an-id"),
        ("POST", f"{BASE}/eHcFM2wk4RdyYG8yMrTGb0"),  # 0 is not in the shortuuid alphabet
        ("GET", f"{BASE}/{ACME}/short"),
        ("GET", f"{BASE}/{ACME}/%2E%2E%2Fetc%2Fpasswd"),
        ("GET", f"{BASE}/{ACME}/{'x' * 300}"),
    ],
)
def test_malformed_ids_get_400(api_url: str, method: str, path: str) -> None:
    error = error_of(call(method, f"{api_url}{path}", KEYS["acme_server"]), 400)
    assert error.error == "invalid_request" and "Malformed id" in error.message


@pytest.mark.parametrize("archive_format", ["rar", "ZIP", "tar", ""])
def test_bad_archive_format_gets_422(api_url: str, archive_format: str) -> None:
    error = error_of(
        call("POST", f"{api_url}{BASE}/{ACME}?archive_format={archive_format}", KEYS["acme_server"]), 422
    )
    assert error.error == "validation_error" and "archive_format" in error.message


def test_unknown_routes_answer_json(api_url: str) -> None:
    error_of(call("GET", f"{api_url}/nope", KEYS["acme_server"]), 404)
    assert call("DELETE", f"{api_url}{BASE}/{ACME}", KEYS["acme_server"]).status in (403, 404, 405)


def test_committed_openapi_document_is_the_generated_one() -> None:
    from data_export_cli.openapi import openapi_document

    committed = json.loads((Path(__file__).parents[2] / "docs" / "openapi.json").read_text())
    generated = openapi_document()
    assert committed == json.loads(json.dumps(generated)), "run `make openapi` and commit docs/openapi.json"
    assert committed["openapi"].startswith("3.1")
    assert {path: set(operations) for path, operations in committed["paths"].items()} == {
        f"{BASE}/{{organization_id}}": {"post", "get"},
        f"{BASE}/{{organization_id}}/{{job_id}}": {"get", "delete"},
        f"{BASE}/{{organization_id}}/{{job_id}}/download": {"get"},
        f"{IMPORT_BASE}/{{organization_id}}": {"post", "get"},
        f"{IMPORT_BASE}/{{organization_id}}/{{import_id}}": {"get", "delete"},
        f"{IMPORT_BASE}/{{organization_id}}/{{import_id}}/upload": {"post"},
        f"{IMPORT_BASE}/{{organization_id}}/{{import_id}}/start": {"post"},
    }


def test_answers_match_the_openapi_document(api_url: str, acme_job: str) -> None:
    import jsonschema
    from data_export_cli.openapi import openapi_document

    document = openapi_document()
    schemas = document["components"]["schemas"]

    def check(reply: Any, path: str, method: str) -> None:
        responses = document["paths"][path][method]["responses"]
        schema = responses[str(reply.status)]["content"]["application/json"]["schema"]
        jsonschema.validate(reply.json(), {**schema, "components": {"schemas": schemas}})

    check(call("POST", f"{api_url}{BASE}/{ACME}", KEYS["acme_server"]), f"{BASE}/{{organization_id}}", "post")
    check(
        call("GET", f"{api_url}{BASE}/{ACME}/{acme_job}", KEYS["acme_server"]),
        f"{BASE}/{{organization_id}}/{{job_id}}",
        "get",
    )
    check(
        call("GET", f"{api_url}{BASE}/{ACME}/{acme_job}", None),
        f"{BASE}/{{organization_id}}/{{job_id}}",
        "get",
    )
    check(
        call("POST", f"{api_url}{BASE}/{ACME}", KEYS["acme_publishable"]),
        f"{BASE}/{{organization_id}}",
        "post",
    )
