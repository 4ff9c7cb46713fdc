"""Fixed-window rate limiting: window arithmetic, the 429 decision, overrides and the headers."""

from __future__ import annotations

import json

import pytest
from data_export.auth import StoredApiKey
from data_export.ratelimit import (
    DEFAULT_PER_DAY,
    DEFAULT_PER_MINUTE,
    RateLimitedError,
    RateLimiter,
    Window,
    windows,
)

# 2026-12-03T18:20:30Z: 30 s into a minute, 66,030 s into a UTC day.
NOW = 1_796_322_030.0


class DictCounters:
    """The counter store's contract in a dict: count while under the quota, else refuse (None)."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.expiry: dict[str, int] = {}

    def take(self, bucket: str, quota: int, expires_at_epoch: int) -> int | None:
        if self.hits.get(bucket, 0) >= quota:
            return None
        self.hits[bucket] = self.hits.get(bucket, 0) + 1
        self.expiry[bucket] = expires_at_epoch
        return self.hits[bucket]


def test_buckets_are_per_key_and_per_window_index() -> None:
    minute, day = windows()
    assert minute.bucket("K", NOW) == f"K#m#{int(NOW) // 60}"
    assert day.bucket("K", NOW) == f"K#d#{int(NOW) // 86_400}"
    assert minute.bucket("K", NOW + 29.9) == minute.bucket("K", NOW)  # same minute
    assert minute.bucket("K", NOW + 30) != minute.bucket("K", NOW)  # the next one
    assert minute.bucket("other", NOW) != minute.bucket("K", NOW)


def test_reset_counts_whole_seconds_to_the_window_end_and_never_zero() -> None:
    minute, day = windows()
    assert minute.reset_seconds(NOW) == 30
    assert minute.reset_seconds(NOW + 29.5) == 1  # rounds up: retrying after 0 s would be refused again
    assert minute.reset_seconds(NOW - 30) == 60  # at a window's start
    assert day.reset_seconds(NOW) == 86_400 - 66_030


def test_defaults_and_overrides() -> None:
    assert windows() == (Window("minute", 60, DEFAULT_PER_MINUTE), Window("day", 86_400, DEFAULT_PER_DAY))
    assert (DEFAULT_PER_MINUTE, DEFAULT_PER_DAY) == (300, 10_000)
    assert [w.quota for w in windows(per_minute=5)] == [5, 10_000]
    assert [w.quota for w in windows(per_day=7)] == [300, 7]


def test_key_record_overrides_reach_the_stored_key() -> None:
    item = {
        "key_hash": {"S": "h"},
        "key_id": {"S": "k"},
        "organization_id": {"S": "o"},
        "prefix": {"S": "csb"},
        "record": {"S": json.dumps({"id": "k", "rate_limit_per_minute": 5, "rate_limit_per_day": 50})},
    }
    stored = StoredApiKey.from_item(item)
    assert (stored.rate_limit_per_minute, stored.rate_limit_per_day) == (5, 50)
    item["record"] = {"S": json.dumps({"id": "k"})}
    assert StoredApiKey.from_item(item).rate_limit_per_minute is None


def test_requests_pass_until_the_minute_is_used_up_then_are_refused() -> None:
    counters = DictCounters()
    limiter = RateLimiter(counters)
    policy = windows(per_minute=3)
    remaining = []
    for _ in range(3):
        decision = limiter.check("K", policy, NOW)
        assert decision.allowed
        remaining.append(decision.headers()["RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    refused = limiter.check("K", policy, NOW + 1)
    assert not refused.allowed
    assert refused.retry_after == 29
    # Refused requests do not count further, and the day saw only the requests the minute let through.
    assert counters.hits == {policy[0].bucket("K", NOW): 3, policy[1].bucket("K", NOW): 3}
    # The next minute starts over; another key never shared the count.
    assert limiter.check("K", policy, NOW + 30).allowed
    assert limiter.check("other", policy, NOW).allowed


def test_the_day_refuses_once_used_up_across_minutes() -> None:
    limiter = RateLimiter(DictCounters())
    policy = windows(per_minute=10, per_day=2)
    assert limiter.check("K", policy, NOW).allowed
    assert limiter.check("K", policy, NOW + 60).allowed
    refused = limiter.check("K", policy, NOW + 120)
    assert not refused.allowed
    assert refused.binding.window.name == "day"
    assert refused.retry_after == 86_400 - 66_030 - 120
    assert refused.headers()["RateLimit-Limit"] == "2"


def test_a_zero_quota_refuses_everything_without_counting() -> None:
    counters = DictCounters()
    assert not RateLimiter(counters).check("K", windows(per_minute=0), NOW).allowed
    assert counters.hits == {}


def test_counters_expire_a_window_after_their_window_ends() -> None:
    counters = DictCounters()
    minute, day = windows()
    RateLimiter(counters).check("K", (minute, day), NOW)
    assert counters.expiry[minute.bucket("K", NOW)] == int(NOW) + 30 + 60
    assert counters.expiry[day.bucket("K", NOW)] == int(NOW) + (86_400 - 66_030) + 86_400


def test_headers_describe_the_policy_and_the_window_closest_to_running_out() -> None:
    limiter = RateLimiter(DictCounters())
    decision = limiter.check("K", windows(), NOW)
    assert decision.headers() == {
        "RateLimit-Policy": '"minute";q=300;w=60, "day";q=10000;w=86400',
        "RateLimit-Limit": "300",
        "RateLimit-Remaining": "299",
        "RateLimit-Reset": "30",
    }
    # With a day of 100 the day has fewer left than the minute's 299, so the headers follow the day.
    tight_day = limiter.check("D", windows(per_day=100), NOW)
    assert tight_day.headers()["RateLimit-Limit"] == "100"
    assert tight_day.headers()["RateLimit-Remaining"] == "99"
    assert tight_day.headers()["RateLimit-Reset"] == str(86_400 - 66_030)


def test_a_refusal_is_a_429_rate_limited_with_retry_after() -> None:
    limiter = RateLimiter(DictCounters())
    policy = windows(per_minute=1)
    limiter.check("K", policy, NOW)
    decision = limiter.check("K", policy, NOW)
    error = RateLimitedError(decision)
    assert (error.status_code, error.code) == (429, "rate_limited")
    assert "1 requests per minute" in error.message
    headers = decision.headers()
    assert headers["Retry-After"] == "30"
    assert headers["RateLimit-Remaining"] == "0"
    assert "Retry-After" not in limiter.check("other", policy, NOW).headers()


@pytest.mark.parametrize("quota", [1, 2, 5])
def test_exactly_the_quota_passes_in_one_window(quota: int) -> None:
    limiter = RateLimiter(DictCounters())
    policy = windows(per_minute=quota)
    outcomes = [limiter.check("K", policy, NOW).allowed for _ in range(quota + 2)]
    assert outcomes == [True] * quota + [False, False]
