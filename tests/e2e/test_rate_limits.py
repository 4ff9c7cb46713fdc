"""Per-key rate limits, over HTTP on the local stack.

Each test seeds organizations of its own, so that the example organization's key (used all over the suite)
is never pushed towards its limits here."""

from __future__ import annotations

import time
from typing import Any

import pytest
from data_export.ids import new_id

from tests.e2e.client import BASE, call
from tests.security.helpers import CREATED_AT, new_key, organization, seed


def within_one_minute_window() -> None:
    """Counting is per fixed minute: start early enough in one that a few requests cannot cross its end."""
    into_minute = time.time() % 60
    if into_minute > 45:
        time.sleep(60 - into_minute + 0.5)


@pytest.fixture(scope="module")
def limited(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An organization with a key limited to 5 requests a minute and a second key on the defaults."""
    limited_key, default_key = new_key(), new_key()
    fixture = organization("Throttled", limited_key)
    fixture["api_keys"][0]["rate_limit_per_minute"] = 5
    fixture["api_keys"].append(
        {"id": new_id(), "name": "other", "key": default_key, "created_at": CREATED_AT}
    )
    seed(stack, tmp_path_factory.mktemp("rate-limited"), fixture)
    return {"organization_id": fixture["organization"]["id"], "limited": limited_key, "default": default_key}


def test_a_key_gets_its_quota_then_429_with_retry_after(api_url: str, limited: dict[str, str]) -> None:
    organization_id = limited["organization_id"]
    within_one_minute_window()
    started = call("POST", f"{api_url}{BASE}/{organization_id}", limited["limited"])
    assert started.status == 200, started.body
    poll = f"{api_url}{BASE}/{organization_id}/{started.json()['job_id']}"
    replies = [started] + [call("GET", poll, limited["limited"]) for _ in range(4)]
    assert [reply.status for reply in replies] == [200] * 5
    assert [reply.headers["RateLimit-Remaining"] for reply in replies] == ["4", "3", "2", "1", "0"]
    for reply in replies:
        assert reply.headers["RateLimit-Limit"] == "5"
        assert reply.headers["RateLimit-Policy"] == '"minute";q=5;w=60, "day";q=10000;w=86400'
        assert 1 <= int(reply.headers["RateLimit-Reset"]) <= 60
        assert "Retry-After" not in reply.headers

    refused = call("GET", poll, limited["limited"])
    assert refused.status == 429
    assert refused.headers["Content-Type"].startswith("application/json")
    body = refused.json()
    assert body["error"] == "rate_limited" and "5 requests per minute" in body["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["Retry-After"] == refused.headers["RateLimit-Reset"]

    # The other key of the same organization, and the example's key, count on their own.
    other = call("GET", poll, limited["default"])
    assert other.status == 200, other.body
    assert other.headers["RateLimit-Limit"] == "300"
    assert other.headers["RateLimit-Policy"] == '"minute";q=300;w=60, "day";q=10000;w=86400'


def test_refusals_after_authentication_carry_the_headers_and_count(
    api_url: str, stack: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    key = new_key()
    fixture = organization("Counted", key)
    fixture["api_keys"][0]["rate_limit_per_minute"] = 2
    seed(stack, tmp_path_factory.mktemp("counted"), fixture)
    organization_id = fixture["organization"]["id"]
    within_one_minute_window()
    unknown_job = call("GET", f"{api_url}{BASE}/{organization_id}/{new_id()}", key)
    assert unknown_job.status == 404
    assert unknown_job.headers["RateLimit-Remaining"] == "1"
    other_organization = call("POST", f"{api_url}{BASE}/{new_id()}", key)
    assert other_organization.status == 403
    assert other_organization.headers["RateLimit-Remaining"] == "0"
    assert call("POST", f"{api_url}{BASE}/{organization_id}", key).status == 429
    # Unauthenticated requests are refused before counting: no headers, and nothing counted.
    anonymous = call("POST", f"{api_url}{BASE}/{organization_id}")
    assert anonymous.status == 401
    assert not any(name.lower().startswith("ratelimit") for name in anonymous.headers)


# --- what refusals cost, and a failing counter store ---------------------------------------------------


def test_a_flood_of_one_unknown_key_costs_one_key_read_and_no_counter(api_url: str, stack: Any) -> None:
    from data_export.settings import get_settings

    from tests.dynamo_hooks import recorded_calls

    settings = get_settings()
    unknown = new_key()
    organization_id = new_id()
    with (
        recorded_calls("GetItem", settings.api_keys_table) as key_reads,
        recorded_calls("UpdateItem", settings.rate_limits_table) as counted,
    ):
        replies = [call("GET", f"{api_url}{BASE}/{organization_id}/{new_id()}", unknown) for _ in range(30)]
        others = [new_key() for _ in range(5)]
        replies += [call("POST", f"{api_url}{BASE}/{organization_id}", key) for key in others]
    assert {reply.status for reply in replies} == {401}
    assert {reply.json()["message"] for reply in replies} == {"Unknown API key"}
    # One read for the repeated key (remembered afterwards), one for each other key; no counter touched.
    assert len(key_reads) == 1 + len(others)
    assert counted == []
    for reply in replies:
        assert not any(name.lower().startswith("ratelimit") for name in reply.headers)


@pytest.mark.parametrize(
    ("code", "status", "retry_after"),
    [("ProvisionedThroughputExceededException", 400, "1"), ("AccessDeniedException", 400, "30")],
)
def test_a_failing_counter_store_is_a_503_with_retry_after(
    api_url: str, limited: dict[str, str], code: str, status: int, retry_after: str
) -> None:
    from data_export.settings import get_settings

    from tests.dynamo_hooks import failing_calls

    organization_id = limited["organization_id"]
    with failing_calls("UpdateItem", get_settings().rate_limits_table, code, status) as broken:
        reply = call("GET", f"{api_url}{BASE}/{organization_id}", limited["default"])
    assert broken, "the counter store was not asked"
    assert reply.status == 503, reply.body
    assert reply.headers["Retry-After"] == retry_after
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert set(body) == {"error", "message"} and body["error"] == "service_unavailable"
    assert f"retry after {retry_after} s" in body["message"]
    # Once the store answers again, so does the API.
    assert call("GET", f"{api_url}{BASE}/{organization_id}", limited["default"]).status == 200
