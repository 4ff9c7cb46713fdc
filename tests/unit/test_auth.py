"""API-key authentication and export authorization, without AWS: the stores are plain dictionaries."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from data_export.auth import (
    Principal,
    StoredApiKey,
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
