"""Per-key rate limits in fixed windows (a minute and a UTC day), and the headers that describe them.

Headers follow the IETF draft "RateLimit header fields for HTTP": ``RateLimit-Policy`` names every window
with its quota and width (``"minute";q=300;w=60, "day";q=10000;w=86400``), and ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds) describe the window closest to running out.

Each window of a key is one counter, taken atomically and only while under its quota, so refused requests
do not push a window further; the minute is taken before the day, so a request refused by the day still
used a unit of its minute (the cheaper mistake)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from data_export.errors import DataExportError

DEFAULT_PER_MINUTE = 300
DEFAULT_PER_DAY = 10_000


@dataclass(frozen=True)
class Window:
    name: str
    seconds: int
    quota: int

    def bucket(self, key_id: str, now: float) -> str:
        """The counter of this window that ``now`` falls in: ``<key_id>#m#<epoch minute>`` and so on."""
        return f"{key_id}#{self.name[0]}#{int(now // self.seconds)}"

    def ends_at(self, now: float) -> int:
        return (int(now // self.seconds) + 1) * self.seconds

    def reset_seconds(self, now: float) -> int:
        """Whole seconds until this window starts over (at least 1, so a client never retries at once)."""
        return max(1, math.ceil(self.ends_at(now) - now))


def windows(per_minute: int | None = None, per_day: int | None = None) -> tuple[Window, ...]:
    """A key's windows: the defaults, or the overrides from its key record."""
    return (
        Window("minute", 60, DEFAULT_PER_MINUTE if per_minute is None else per_minute),
        Window("day", 86_400, DEFAULT_PER_DAY if per_day is None else per_day),
    )


class CounterStore(Protocol):
    def take(self, bucket: str, quota: int, expires_at_epoch: int) -> int | None:
        """Count one request in ``bucket`` if it has fewer than ``quota``: the new count, or None if full."""
        ...


@dataclass(frozen=True)
class WindowState:
    window: Window
    used: int
    reset_seconds: int

    @property
    def remaining(self) -> int:
        return max(self.window.quota - self.used, 0)


@dataclass(frozen=True)
class RateLimitDecision:
    policy: tuple[Window, ...]
    # The windows counted, in order; when refused, the last one is the window that is full.
    states: tuple[WindowState, ...]
    allowed: bool

    @property
    def binding(self) -> WindowState:
        """The window the headers describe: the full one, or the one with the fewest requests left."""
        if not self.allowed:
            return self.states[-1]
        return min(self.states, key=lambda state: state.remaining)

    @property
    def retry_after(self) -> int:
        return self.binding.reset_seconds

    def headers(self) -> dict[str, str]:
        binding = self.binding
        headers = {
            "RateLimit-Policy": ", ".join(f'"{w.name}";q={w.quota};w={w.seconds}' for w in self.policy),
            "RateLimit-Limit": str(binding.window.quota),
            "RateLimit-Remaining": str(binding.remaining),
            "RateLimit-Reset": str(binding.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(binding.reset_seconds)
        return headers


class RateLimitedError(DataExportError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, decision: RateLimitDecision) -> None:
        window = decision.binding.window
        super().__init__(
            f"Rate limit of {window.quota} requests per {window.name} exceeded for this API key; "
            f"retry after {decision.retry_after} s"
        )
        self.decision = decision


@dataclass
class RateLimiter:
    counters: CounterStore

    def check(self, key_id: str, policy: tuple[Window, ...], now: float) -> RateLimitDecision:
        """Count the request in each window of ``policy``, stopping at the first that is full."""
        states: list[WindowState] = []
        for window in policy:
            # Kept one window beyond its end: the TTL sweep is lazy and a late read must not see it gone.
            expires_at = window.ends_at(now) + window.seconds
            used = (
                self.counters.take(window.bucket(key_id, now), window.quota, expires_at)
                if window.quota > 0
                else None
            )
            if used is None:
                states.append(WindowState(window, window.quota, window.reset_seconds(now)))
                return RateLimitDecision(policy, tuple(states), allowed=False)
            states.append(WindowState(window, used, window.reset_seconds(now)))
        return RateLimitDecision(policy, tuple(states), allowed=True)
