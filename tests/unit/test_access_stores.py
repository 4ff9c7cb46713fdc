"""The reads that decide access, against a stubbed DynamoDB client (botocore's Stubber checks every
parameter sent): strongly consistent, misses remembered, and a failing store answered with 503 and
Retry-After instead of a 5xx without a body."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber
from data_export import http, wiring
from data_export.auth import StoredRecordError, UnknownKeyCache, hash_key
from data_export.ratelimit import RateLimiter
from data_export.storage.layout import partition_key
from data_export.storage.org_data import ApiKeyRepository, OrgDataRepository
from data_export.storage.ratelimits import RateLimitCounters

ORG = "eHcFM2wk4RdyYG8yMrTGbQ"
JOB = "Q7vWk3Qx9mHc2NbY5sLeTp"
MEMBER = "V5ve9Giif5efT5G4dxALUB"
BODY = "uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo"
RAW_KEY = f"csb_{BODY}_{zlib.crc32(BODY.encode()):08x}"
EVENT = Path(__file__).resolve().parents[2] / "events" / "get_export.json"


@pytest.fixture
def dynamodb() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def key_item() -> dict[str, Any]:
    return {
        "key_hash": {"S": hash_key(RAW_KEY)},
        "key_id": {"S": "kid"},
        "organization_id": {"S": ORG},
        "prefix": {"S": "csb"},
        "is_active": {"BOOL": True},
        "record": {"S": json.dumps({"id": "kid"})},
    }


def test_the_key_is_read_strongly_consistent(dynamodb: tuple[Any, Stubber]) -> None:
    client, stubber = dynamodb
    stubber.add_response(
        "get_item",
        {"Item": key_item()},
        {"TableName": "keys", "Key": {"key_hash": {"S": hash_key(RAW_KEY)}}, "ConsistentRead": True},
    )
    stored = ApiKeyRepository(client, "keys").get_by_hash(hash_key(RAW_KEY))
    assert stored is not None and stored.key_id == "kid"


def test_the_members_role_is_read_strongly_consistent(dynamodb: tuple[Any, Stubber]) -> None:
    client, stubber = dynamodb
    key = {"partition": {"S": partition_key(ORG, "members")}, "record_id": {"S": MEMBER}}
    stubber.add_response(
        "get_item",
        {"Item": {**key, "record": {"S": json.dumps({"id": MEMBER, "role": "manager"})}}},
        {"TableName": "org", "Key": key, "ConsistentRead": True},
    )
    stubber.add_response("get_item", {}, {"TableName": "org", "Key": key, "ConsistentRead": True})
    members = OrgDataRepository(client, "org")
    assert members.member_role(ORG, MEMBER) == "manager"
    assert members.member_role(ORG, MEMBER) is None  # left the organization


def test_records_read_for_an_export_stay_eventually_consistent(dynamodb: tuple[Any, Stubber]) -> None:
    """Only the reads that decide access pay for strong consistency."""
    client, stubber = dynamodb
    key = {"partition": {"S": partition_key(ORG, "organization")}, "record_id": {"S": ORG}}
    stubber.add_response(
        "get_item",
        {"Item": {**key, "record": {"S": json.dumps({"id": ORG})}}},
        {"TableName": "org", "Key": key, "ConsistentRead": False},
    )
    assert OrgDataRepository(client, "org").get_record(ORG, "organization", ORG) == {"id": ORG}


@pytest.mark.parametrize("record", ["{not json", json.dumps({"id": MEMBER}), json.dumps(["owner"])])
def test_a_member_record_without_a_role_is_a_stored_record_error(
    dynamodb: tuple[Any, Stubber], record: str
) -> None:
    client, stubber = dynamodb
    key = {"partition": {"S": partition_key(ORG, "members")}, "record_id": {"S": MEMBER}}
    stubber.add_response("get_item", {"Item": {**key, "record": {"S": record}}})
    with pytest.raises(StoredRecordError):
        OrgDataRepository(client, "org").member_role(ORG, MEMBER)


def test_an_unknown_key_costs_one_read_per_ttl(dynamodb: tuple[Any, Stubber]) -> None:
    client, stubber = dynamodb
    clock = [0.0]
    keys = ApiKeyRepository(client, "keys", UnknownKeyCache(ttl_seconds=60, clock=lambda: clock[0]))
    unknown = hash_key("csb_" + "x" * 32)
    stubber.add_response("get_item", {})  # the first lookup: a miss
    assert [keys.get_by_hash(unknown) for _ in range(100)] == [None] * 100  # the Stubber had one answer
    clock[0] = 60.0
    stubber.add_response("get_item", {})  # a TTL later: asked again
    assert keys.get_by_hash(unknown) is None
    # A known key is never remembered: a revocation written now is read by the next request.
    stubber.add_response("get_item", {"Item": key_item()})
    stubber.add_response("get_item", {"Item": {**key_item(), "is_active": {"BOOL": False}}})
    first, second = keys.get_by_hash(hash_key(RAW_KEY)), keys.get_by_hash(hash_key(RAW_KEY))
    assert first is not None and first.is_active and second is not None and not second.is_active


# --- a failing store over the HTTP face: 503, Retry-After, a JSON error body -------------------------


def resolve(
    monkeypatch: pytest.MonkeyPatch, client: Any, raw_key: str | None = RAW_KEY
) -> tuple[int, dict[str, str], dict[str, Any]]:
    monkeypatch.setattr(wiring, "api_keys", lambda: ApiKeyRepository(client, "keys"))
    monkeypatch.setattr(wiring, "org_data", lambda: OrgDataRepository(client, "org"))
    monkeypatch.setattr(wiring, "rate_limiter", lambda: RateLimiter(RateLimitCounters(client, "limits")))
    app = http.create_resolver()

    @app.get(f"{http.BASE_PATH}/<organization_id>/<job_id>")
    def poll(organization_id: str, job_id: str) -> dict[str, str]:
        http.require_export_access(app, organization_id, job_id)
        return {"ok": "yes"}

    event = json.loads(EVENT.read_text())
    event["headers"] = {"X-API-Key": raw_key} if raw_key else {}
    event["multiValueHeaders"] = {}
    response = poll_resolver(app, event)
    headers = {name: ", ".join(values) for name, values in response["multiValueHeaders"].items()}
    return response["statusCode"], headers, json.loads(response["body"])


def poll_resolver(app: APIGatewayRestResolver, event: dict[str, Any]) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    return dict(app.resolve(event, LambdaContext()))


def client_error(code: str, status: int) -> dict[str, Any]:
    return {"service_error_code": code, "http_status_code": status, "service_message": "injected"}


@pytest.mark.parametrize(
    ("code", "status", "retry_after"),
    [
        ("ProvisionedThroughputExceededException", 400, "1"),
        ("InternalServerError", 500, "1"),
        ("AccessDeniedException", 400, "30"),
        ("ResourceNotFoundException", 400, "30"),
    ],
)
def test_a_rate_limit_store_error_is_a_503_with_retry_after(
    monkeypatch: pytest.MonkeyPatch, dynamodb: tuple[Any, Stubber], code: str, status: int, retry_after: str
) -> None:
    client, stubber = dynamodb
    stubber.add_response("get_item", {"Item": key_item()})
    stubber.add_client_error("update_item", **client_error(code, status))
    status_code, headers, body = resolve(monkeypatch, client)
    assert status_code == 503
    assert headers["Retry-After"] == retry_after
    assert headers["Content-Type"] == "application/json"
    assert body["error"] == "service_unavailable" and f"retry after {retry_after} s" in body["message"]
    assert set(body) == {"error", "message"}


def test_a_key_store_error_is_a_503_too(
    monkeypatch: pytest.MonkeyPatch, dynamodb: tuple[Any, Stubber]
) -> None:
    client, stubber = dynamodb
    stubber.add_client_error("get_item", **client_error("ThrottlingException", 400))
    status_code, headers, body = resolve(monkeypatch, client)
    assert (status_code, headers["Retry-After"], body["error"]) == (503, "1", "service_unavailable")


def test_an_unreachable_store_is_a_503(monkeypatch: pytest.MonkeyPatch) -> None:
    class Unreachable:
        def get_item(self, **_: Any) -> Any:
            raise EndpointConnectionError(endpoint_url="https://dynamodb.example")

    status_code, headers, body = resolve(monkeypatch, Unreachable())
    assert (status_code, headers["Retry-After"], body["error"]) == (503, "1", "service_unavailable")


def test_an_unknown_key_never_reaches_the_rate_limit_table(
    monkeypatch: pytest.MonkeyPatch, dynamodb: tuple[Any, Stubber]
) -> None:
    client, stubber = dynamodb
    stubber.add_response("get_item", {})  # unknown; an update_item would find no answer queued and fail
    status_code, headers, body = resolve(monkeypatch, client)
    assert (status_code, body["error"]) == (401, "unauthorized")
    assert not any(name.lower().startswith("ratelimit") or name == "Retry-After" for name in headers)


def test_the_error_code_of_a_failing_store_is_logged_not_the_key(
    monkeypatch: pytest.MonkeyPatch, dynamodb: tuple[Any, Stubber], caplog: pytest.LogCaptureFixture
) -> None:
    client, stubber = dynamodb
    stubber.add_response("get_item", {"Item": key_item()})
    stubber.add_client_error("update_item", **client_error("InternalServerError", 500))
    resolve(monkeypatch, client)
    errors = [vars(record) for record in caplog.records if record.levelname == "ERROR"]
    assert [(line["error"], line["cause"]) for line in errors] == [
        ("service_unavailable", "InternalServerError")
    ]
    logged = json.dumps([{key: str(value) for key, value in line.items()} for line in errors])
    assert RAW_KEY not in logged and hash_key(RAW_KEY) not in logged


def test_client_errors_are_classified_like_the_rest_of_the_service() -> None:
    throttled = ClientError({"Error": {"Code": "ThrottlingException"}}, "UpdateItem")
    assert http.store_unavailable(throttled).retry_after == http.TRANSIENT_RETRY_AFTER_SECONDS
    denied = ClientError({"Error": {"Code": "AccessDeniedException"}}, "UpdateItem")
    assert (http.store_unavailable(denied).retry_after, http.store_unavailable(denied).cause) == (
        http.OTHER_RETRY_AFTER_SECONDS,
        "AccessDeniedException",
    )
