"""API-key authentication and export authorization, without AWS: the stores are plain dictionaries."""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from data_export.auth import (
    Principal,
    StoredApiKey,
    StoredRecordError,
    UnknownKeyCache,
    authenticate,
    authorize_export,
    check_key_format,
    hash_key,
)
from data_export.errors import AuthenticationError, ForbiddenError

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ORG = "eHcFM2wk4RdyYG8yMrTGbQ"


def make_key(prefix: str, body: str = "uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo") -> str:
    return f"{prefix}_{body}_{zlib.crc32(body.encode()):08x}"


@dataclass
class Keys:
    by_hash: dict[str, StoredApiKey] = field(default_factory=dict)
    lookups: int = 0

    def add(self, raw: str, **values: object) -> None:
        self.by_hash[hash_key(raw)] = StoredApiKey(
            **{"key_id": "k", "organization_id": ORG, "prefix": raw[:3], **values}  # type: ignore[arg-type]
        )

    def get_by_hash(self, key_hash: str) -> StoredApiKey | None:
        self.lookups += 1
        return self.by_hash.get(key_hash)


@dataclass
class Members:
    roles: dict[str, str] = field(default_factory=dict)

    def member_role(self, organization_id: str, member_id: str) -> str | None:
        return self.roles.get(member_id)


def test_example_key_is_well_formed() -> None:
    assert check_key_format("csb_uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo_b5b88299") == "csb"


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "csb",
        "csb_short_00000000",
        make_key("csb") + "x",
        make_key("csb").upper(),
        make_key("csb").replace("csb", "csx"),
        make_key("csb")[:-1] + "0",
        " " + make_key("csb"),
        "csb_uUFH9C2jfqBbHIJKFd8BgEs09C8twYB\u00e9_00000000",
    ],
)
def test_malformed_keys_are_refused_before_any_lookup(raw: str | None) -> None:
    keys = Keys()
    with pytest.raises(AuthenticationError):
        authenticate(raw, keys, Members(), NOW)
    assert keys.lookups == 0


def test_the_store_is_asked_by_hash_never_by_raw_key() -> None:
    raw = make_key("csb")
    keys = Keys()
    keys.add(raw)
    principal = authenticate(raw, keys, Members(), NOW)
    assert principal == Principal("k", ORG, "csb")
    assert raw not in keys.by_hash and hash_key(raw) in keys.by_hash and len(hash_key(raw)) == 64


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"is_active": False}, "revoked"),
        ({"expires_at": "2026-11-28T11:59:59+00:00"}, "expired"),
        ({"prefix": "cpk"}, "Unknown"),
    ],
)
def test_unusable_keys_are_refused(values: dict[str, object], message: str) -> None:
    raw = make_key("csb")
    keys = Keys()
    keys.add(raw, **values)
    with pytest.raises(AuthenticationError, match=message):
        authenticate(raw, keys, Members(), NOW)


def test_key_expiring_later_is_accepted() -> None:
    raw = make_key("csb")
    keys = Keys()
    keys.add(raw, expires_at="2026-11-28T12:00:01+00:00")
    assert authenticate(raw, keys, Members(), NOW).organization_id == ORG


@pytest.mark.parametrize(
    ("role", "allowed"), [("owner", True), ("manager", True), ("editor", False), ("billing", False)]
)
def test_user_keys_act_with_their_members_role(role: str, allowed: bool) -> None:
    raw = make_key("csu")
    keys = Keys()
    keys.add(raw, member_id="m1")
    principal = authenticate(raw, keys, Members({"m1": role}), NOW)
    assert principal.role == role
    if allowed:
        authorize_export(principal, ORG)
    else:
        with pytest.raises(ForbiddenError, match=role):
            authorize_export(principal, ORG)


def test_user_key_of_a_member_who_left_is_refused() -> None:
    raw = make_key("csu")
    keys = Keys()
    keys.add(raw, member_id="gone")
    with pytest.raises(AuthenticationError, match="left"):
        authenticate(raw, keys, Members(), NOW)


def test_publishable_keys_never_export_and_keys_stay_in_their_organization() -> None:
    with pytest.raises(ForbiddenError, match="Publishable"):
        authorize_export(Principal("k", ORG, "cpk"), ORG)
    with pytest.raises(ForbiddenError, match="may not export this organization"):
        authorize_export(Principal("k", "TpR7vWk3Qx9mHc2NbY5sLe", "csb"), ORG)
    authorize_export(Principal("k", ORG, "csb"), ORG)


# --- stored records that do not have the layout's shape: refused with 401, never a 5xx ------------------

KEY_ITEM: dict[str, Any] = {
    "key_hash": {"S": "h"},
    "key_id": {"S": "kid"},
    "organization_id": {"S": ORG},
    "prefix": {"S": "csb"},
    "is_active": {"BOOL": True},
    "record": {"S": json.dumps({"id": "kid"})},
}


@dataclass
class ItemKeys:
    """A key store holding one raw item, read with the real item parser (as ApiKeyRepository does)."""

    item: dict[str, Any]

    def get_by_hash(self, key_hash: str) -> StoredApiKey | None:
        return StoredApiKey.from_item(self.item)


def with_record(**fields: object) -> dict[str, Any]:
    return {**KEY_ITEM, "record": {"S": json.dumps({"id": "kid", **fields})}}


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({**KEY_ITEM, "expires_at": {"S": "2027-01-01T00:00:00"}}, "expires_at"),  # no offset
        ({**KEY_ITEM, "expires_at": {"S": "2027-01-01"}}, "expires_at"),  # only a date
        ({**KEY_ITEM, "expires_at": {"S": "next tuesday"}}, "expires_at"),
        ({**KEY_ITEM, "expires_at": {"N": "1798761600"}}, "expires_at"),
        (with_record(rate_limit_per_minute="lots"), "rate_limit_per_minute"),
        (with_record(rate_limit_per_minute="300"), "rate_limit_per_minute"),
        (with_record(rate_limit_per_day=12.5), "rate_limit_per_day"),
        (with_record(rate_limit_per_day=True), "rate_limit_per_day"),
        (with_record(rate_limit_per_day=-1), "rate_limit_per_day"),
        ({**KEY_ITEM, "record": {"S": "{not json"}}, "record"),
        ({**KEY_ITEM, "record": {"S": "[1, 2]"}}, "record"),
        ({**KEY_ITEM, "is_active": {"S": "false"}}, "is_active"),
        ({k: v for k, v in KEY_ITEM.items() if k != "organization_id"}, "organization_id"),
    ],
    ids=lambda value: "" if isinstance(value, dict) else value,
)
def test_a_key_whose_record_is_unusable_is_refused_with_a_warning(
    item: dict[str, Any], field: str, caplog: pytest.LogCaptureFixture
) -> None:
    raw = make_key("csb")
    with caplog.at_level(logging.WARNING), pytest.raises(AuthenticationError, match="record") as refused:
        authenticate(raw, ItemKeys(item), Members(), NOW)
    assert refused.value.status_code == 401
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    logged = vars(warnings[0])
    assert (logged["key_id"], logged["field"]) == ("kid", field)
    text = json.dumps({key: str(value) for key, value in logged.items()})
    assert raw not in text and hash_key(raw) not in text


@pytest.mark.parametrize(
    ("expires_at", "usable"),
    [
        ("2026-11-28T12:00:01+00:00", True),
        ("2026-11-28T12:00:01Z", True),
        ("2026-11-28T13:00:01+01:00", True),
        ("2026-11-28T12:59:59+01:00", False),  # 11:59:59 UTC
    ],
)
def test_expiry_with_an_offset_is_compared_in_utc(expires_at: str, usable: bool) -> None:
    raw = make_key("csb")
    keys = ItemKeys({**KEY_ITEM, "expires_at": {"S": expires_at}})
    if usable:
        assert authenticate(raw, keys, Members(), NOW).key_id == "kid"
    else:
        with pytest.raises(AuthenticationError, match="expired"):
            authenticate(raw, keys, Members(), NOW)


def test_whole_number_overrides_are_read() -> None:
    stored = StoredApiKey.from_item(with_record(rate_limit_per_minute=5, rate_limit_per_day=50.0))
    assert (stored.rate_limit_per_minute, stored.rate_limit_per_day) == (5, 50)
    assert StoredApiKey.from_item(with_record(rate_limit_per_minute=0)).rate_limit_per_minute == 0


def test_a_member_record_that_is_unusable_refuses_the_user_key(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenMembers:
        def member_role(self, organization_id: str, member_id: str) -> str | None:
            raise StoredRecordError("member role", "missing or not a string")

    raw = make_key("csu")
    keys = Keys()
    keys.add(raw, member_id="m1", key_id="kid")
    with caplog.at_level(logging.WARNING), pytest.raises(AuthenticationError, match="record"):
        authenticate(raw, keys, BrokenMembers(), NOW)
    assert [vars(r).get("key_id") for r in caplog.records if r.levelno == logging.WARNING] == ["kid"]


# --- the per-container memory of unknown keys --------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_unknown_keys_are_remembered_for_the_ttl_only() -> None:
    clock = Clock()
    cache = UnknownKeyCache(ttl_seconds=60, capacity=10, clock=clock)
    cache.remember("a")
    assert cache.is_unknown("a") and not cache.is_unknown("b")
    clock.now += 59.9
    assert cache.is_unknown("a")
    clock.now += 0.1
    assert not cache.is_unknown("a")
    assert len(cache) == 0  # forgotten, not only ignored


def test_the_memory_of_unknown_keys_is_bounded_oldest_first() -> None:
    clock = Clock()
    cache = UnknownKeyCache(ttl_seconds=60, capacity=3, clock=clock)
    for name in "abcd":
        cache.remember(name)
        clock.now += 1
    assert len(cache) == 3
    assert [cache.is_unknown(name) for name in "abcd"] == [False, True, True, True]
    clock.now += 57.5  # b (remembered at 1001) has expired, c not: the next insert drops b from the front
    cache.remember("e")
    assert len(cache) == 3 and not cache.is_unknown("b") and cache.is_unknown("c")
    disabled = UnknownKeyCache(capacity=0)
    disabled.remember("x")
    assert len(disabled) == 0 and not disabled.is_unknown("x")
