"""API-key authentication and export authorization.

Order matters: the key's shape and checksum are checked first (no store lookup for garbage), then the key is
looked up by its SHA-256 hash (the raw key is never stored), then its state and scope.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from data_export.errors import AuthenticationError, ForbiddenError

_KEY_RE = re.compile(r"(csb|csu|cpk)_([A-Za-z0-9]{32})_([0-9a-f]{8})")
EXPORT_ROLES = frozenset({"owner", "manager"})


@dataclass(frozen=True)
class StoredApiKey:
    """What the key store knows about a key (never the key itself)."""

    key_id: str
    organization_id: str
    prefix: str
    is_active: bool = True
    member_id: str | None = None
    expires_at: str | None = None
    # Per-key overrides of the default rate limits (None: the default).
    rate_limit_per_minute: int | None = None
    rate_limit_per_day: int | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> StoredApiKey:
        """From an api-keys table item: auth attributes at the top level, the overrides in its record."""
        record = json.loads(item["record"]["S"]) if "record" in item else {}
        return cls(
            key_id=item["key_id"]["S"],
            organization_id=item["organization_id"]["S"],
            prefix=item["prefix"]["S"],
            is_active=item.get("is_active", {"BOOL": True})["BOOL"],
            member_id=item["member_id"]["S"] if "member_id" in item else None,
            expires_at=item["expires_at"]["S"] if "expires_at" in item else None,
            rate_limit_per_minute=_optional_int(record.get("rate_limit_per_minute")),
            rate_limit_per_day=_optional_int(record.get("rate_limit_per_day")),
        )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key and, for user keys, the member it acts as."""

    key_id: str
    organization_id: str
    prefix: str
    member_id: str | None = None
    role: str | None = None
    rate_limit_per_minute: int | None = None
    rate_limit_per_day: int | None = None


class KeyLookup(Protocol):
    def get_by_hash(self, key_hash: str) -> StoredApiKey | None: ...


class MemberLookup(Protocol):
    def member_role(self, organization_id: str, member_id: str) -> str | None: ...


def checksum(body: str) -> str:
    return f"{zlib.crc32(body.encode('ascii')):08x}"


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def check_key_format(raw_key: str | None) -> str:
    """Return the key's prefix if it is well formed with a valid checksum."""
    if not raw_key:
        raise AuthenticationError("Missing X-API-Key header")
    match = _KEY_RE.fullmatch(raw_key)
    if match is None:
        raise AuthenticationError("Malformed API key: expected <csb|csu|cpk>_<32 letters/digits>_<crc32 hex>")
    prefix, body, crc = match.groups()
    if checksum(body) != crc:
        raise AuthenticationError("Malformed API key: checksum does not match")
    return prefix


def authenticate(raw_key: str | None, keys: KeyLookup, members: MemberLookup, now: datetime) -> Principal:
    prefix = check_key_format(raw_key)
    assert raw_key is not None  # check_key_format refused a missing key
    stored = keys.get_by_hash(hash_key(raw_key))
    if stored is None or stored.prefix != prefix:
        raise AuthenticationError("Unknown API key")
    if not stored.is_active:
        raise AuthenticationError("API key has been revoked")
    if stored.expires_at is not None and datetime.fromisoformat(stored.expires_at) <= now:
        raise AuthenticationError("API key has expired")
    role = None
    if prefix == "csu":
        if stored.member_id is None:
            raise AuthenticationError("User API key is not bound to a member")
        role = members.member_role(stored.organization_id, stored.member_id)
        if role is None:
            raise AuthenticationError("User API key belongs to a member who left the organization")
    return Principal(
        stored.key_id,
        stored.organization_id,
        prefix,
        stored.member_id,
        role,
        stored.rate_limit_per_minute,
        stored.rate_limit_per_day,
    )


def authorize_export(principal: Principal, organization_id: str) -> None:
    """May this principal export (or see the exports of) this organization?"""
    if principal.prefix == "cpk":
        raise ForbiddenError("Publishable (cpk) keys cannot export data")
    if principal.organization_id != organization_id:
        raise ForbiddenError("This API key may not export this organization")
    if principal.prefix == "csu" and principal.role not in EXPORT_ROLES:
        raise ForbiddenError(f"Members with role '{principal.role}' may not export; owners and managers may")
