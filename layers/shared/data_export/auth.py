"""API-key authentication and export authorization.

Order matters: the key's shape and checksum are checked first (no store lookup for garbage), then the key is
looked up by its SHA-256 hash (the raw key is never stored), then its state and scope.

A stored record that cannot be read as the layout says (an ``expires_at`` without a UTC offset or that is
only a date, a rate override that is not a whole number, a missing or mistyped attribute, a member record
that is not JSON) makes the key unusable: it is refused with 401 and a warning naming the key id and the
field, never with a 5xx, and never by guessing what the record meant.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from data_export.errors import AuthenticationError, ForbiddenError

logger = Logger(child=True)

_KEY_RE = re.compile(r"(csb|csu|cpk)_([A-Za-z0-9]{32})_([0-9a-f]{8})")
EXPORT_ROLES = frozenset({"owner", "manager"})


class StoredRecordError(ValueError):
    """A stored record that authentication depends on does not have the layout's shape. ``field`` and
    ``reason`` are safe to log: they name what is wrong, never the value found."""

    def __init__(self, field: str, reason: str, key_id: str | None = None) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.key_id = key_id


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
        """From an api-keys table item: auth attributes at the top level, the overrides in its record.

        Raises StoredRecordError when the item does not have the layout's shape (see the module's docstring);
        ``expires_at`` is checked here too, so that a key is never half-read."""
        key_id = _attribute(item, "key_id", "S", None)
        if key_id is None:
            raise StoredRecordError("key_id", "missing or not a string")
        try:
            record = json.loads(item["record"]["S"]) if "record" in item else {}
            if not isinstance(record, dict):
                raise StoredRecordError("record", "not a JSON object")
            stored = cls(
                key_id=key_id,
                organization_id=_required(item, "organization_id"),
                prefix=_required(item, "prefix"),
                is_active=_attribute(item, "is_active", "BOOL", True),
                member_id=_attribute(item, "member_id", "S", None),
                expires_at=_attribute(item, "expires_at", "S", None),
                rate_limit_per_minute=_quota(record, "rate_limit_per_minute"),
                rate_limit_per_day=_quota(record, "rate_limit_per_day"),
            )
            if stored.expires_at is not None:
                expiry(stored.expires_at)
        except StoredRecordError as error:
            raise StoredRecordError(error.field, error.reason, key_id) from None
        except (KeyError, TypeError, ValueError):  # "record" not a string of JSON
            raise StoredRecordError("record", "not a string of JSON", key_id) from None
        return stored


def _attribute(item: dict[str, Any], name: str, kind: str, default: Any) -> Any:
    """A top-level attribute of DynamoDB type ``kind`` (S, BOOL), ``default`` when absent."""
    if name not in item:
        return default
    value = item[name]
    expected = bool if kind == "BOOL" else str
    if not isinstance(value, dict) or not isinstance(value.get(kind), expected):
        raise StoredRecordError(name, f"not of DynamoDB type {kind}")
    return value[kind]


def _required(item: dict[str, Any], name: str) -> str:
    value: str | None = _attribute(item, name, "S", None)
    if value is None:
        raise StoredRecordError(name, "missing")
    return value


def _quota(record: dict[str, Any], name: str) -> int | None:
    """A rate-limit override: absent (None), or a whole number of requests, zero or more."""
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StoredRecordError(name, "not a number")
    if isinstance(value, float) and not value.is_integer():
        raise StoredRecordError(name, "not a whole number")
    if value < 0:
        raise StoredRecordError(name, "negative")
    return int(value)


def expiry(value: str) -> datetime:
    """A key's ``expires_at``: an ISO 8601 date-time with a UTC offset. A date alone or a time without an
    offset is refused rather than guessed (midnight where? local time of which machine?)."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise StoredRecordError("expires_at", "not an ISO 8601 date-time") from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise StoredRecordError("expires_at", "has no UTC offset (or is only a date)")
    return when


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


UNKNOWN_KEY_TTL_SECONDS = 60.0
UNKNOWN_KEY_CAPACITY = 10_000


class UnknownKeyCache:
    """Hashes of well-formed keys the store did not know, remembered for ``ttl_seconds`` in this container.

    A key that passes the format check but is unknown (a stale key in a script that retries, or a flood of
    one made-up key) then costs one store read per container and TTL instead of one per request. Only
    misses are kept: a known key, and with it any revocation or demotion, is read from the store every
    time. The price: a key created less than ``ttl_seconds`` after the very same key was tried is refused
    until its entry expires. Bounded: past ``capacity`` the oldest entries go first (entries are inserted
    in the order they expire, so expired ones are dropped from the front as they are met)."""

    def __init__(
        self,
        ttl_seconds: float = UNKNOWN_KEY_TTL_SECONDS,
        capacity: int = UNKNOWN_KEY_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.capacity = capacity
        self._clock = clock
        self._until: OrderedDict[str, float] = OrderedDict()  # key hash -> when it may be asked again
        self._lock = threading.Lock()  # the local gateway serves requests on several threads

    def __len__(self) -> int:
        return len(self._until)

    def is_unknown(self, key_hash: str) -> bool:
        with self._lock:
            until = self._until.get(key_hash)
            if until is None:
                return False
            if until > self._clock():
                return True
            del self._until[key_hash]
            return False

    def remember(self, key_hash: str) -> None:
        if self.capacity <= 0 or self.ttl_seconds <= 0:
            return
        with self._lock:
            now = self._clock()
            self._until.pop(key_hash, None)
            self._until[key_hash] = now + self.ttl_seconds
            while self._until:
                oldest_hash, oldest_until = next(iter(self._until.items()))
                if oldest_until > now and len(self._until) <= self.capacity:
                    break
                del self._until[oldest_hash]


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
    stored: StoredApiKey | None = None
    try:
        stored = keys.get_by_hash(hash_key(raw_key))
        if stored is None or stored.prefix != prefix:
            raise AuthenticationError("Unknown API key")
        if not stored.is_active:
            raise AuthenticationError("API key has been revoked")
        if stored.expires_at is not None and expiry(stored.expires_at) <= now:
            raise AuthenticationError("API key has expired")
        role = None
        if prefix == "csu":
            if stored.member_id is None:
                raise AuthenticationError("User API key is not bound to a member")
            role = members.member_role(stored.organization_id, stored.member_id)
            if role is None:
                raise AuthenticationError("User API key belongs to a member who left the organization")
    except StoredRecordError as error:
        # Ids and the field's name only: never the raw key, its hash or the value found.
        logger.warning(
            "API key refused: its stored record is unusable",
            extra={
                "key_id": error.key_id or (stored.key_id if stored else None),
                "field": error.field,
                "reason": error.reason,
            },
        )
        raise AuthenticationError(
            "API key cannot be used: its record in the key store is invalid; ask an administrator to "
            "reissue it"
        ) from None
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
