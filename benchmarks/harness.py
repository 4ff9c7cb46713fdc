"""Timing side by side: contenders run round-robin, rates and ratios are medians over the rounds; every timed
output is verified and sized.

The machine is shared (2 cores, other work running), so a single timing means little. Each round runs
every contender once, in turn, on the same input; a ratio is computed within each round (both sides saw
the same load) and the median over rounds is reported, together with each contender's median rate.

A contender's workload returns an ``Output``: the units it processed (records, bytes...) and what it produced
(an archive, documents...). After each timed run, outside the timer, the contender's ``verify`` checks that
output (records through a YAML parser, binaries by SHA-256...) and returns its size in bytes; a wrong output
raises, so no figure is ever reported for work that was not right. Comparisons timed elsewhere (in other
processes) fill in the same figures themselves.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class VerificationError(AssertionError):
    """A contender's output is not what it should be: its figures would mean nothing."""


@dataclass
class Output:
    """What one run of a workload did: ``units`` processed (what the rate counts) and what it produced."""

    units: int
    value: Any = None


# A contender processes the whole workload once.
Workload = Callable[[], Output]
# Checks one output (raises VerificationError if it is wrong) and returns its size in bytes.
Verifier = Callable[[Any], int]


def pin_to_one_core() -> int | None:
    """Pin this process (and the children it starts later) to one CPU; return it, or None if unsupported.

    The last CPU is taken: the first one tends to receive more interrupts."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def other_core(cpu: int | None) -> int | None:
    """A CPU other than ``cpu`` that this process may use, if any (for a server beside the client)."""
    if cpu is None or not hasattr(os, "sched_getaffinity"):
        return None
    others = sorted(set(range(os.cpu_count() or 1)) - {cpu})
    return others[0] if others else None


@dataclass
class Contender:
    name: str
    role: str  # "ours", "peer", "ceiling", or "variant" (another way of ours)
    run: Workload | None = None  # None: measured elsewhere (in another process), figures filled in
    verify: Verifier | None = None
    setup: Callable[[], None] | None = None  # before every run, outside the timer (e.g. empty caches)
    rates: list[float] = field(default_factory=list)
    output_bytes: list[int] = field(default_factory=list)  # one per timed run
    verified_runs: int = 0  # timed runs whose output was checked and found right

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def verified(self) -> bool:
        return bool(self.rates) and self.verified_runs == len(self.rates) == len(self.output_bytes)

    def record(self, rate: float, output_bytes: int) -> None:
        """One timed run whose output was verified (by the caller, for contenders timed elsewhere)."""
        self.rates.append(rate)
        self.output_bytes.append(output_bytes)
        self.verified_runs += 1


@dataclass
class Comparison:
    """Rates of several contenders on one workload, in ``unit``/s, and their paired ratios to ours."""

    name: str
    unit: str
    contenders: list[Contender]
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # other figures (memory, disk...), as JSON
    show_time: bool = False  # print time per unit (cold starts) rather than units per second

    @property
    def ours(self) -> Contender:
        return next(c for c in self.contenders if c.role == "ours")

    @property
    def verified(self) -> bool:
        return all(contender.verified for contender in self.contenders)

    def contender(self, name: str) -> Contender:
        return next(c for c in self.contenders if c.name == name)

    def ratio(self, other: str) -> float:
        """Median over rounds of ours/other (above 1: we are faster)."""
        theirs = self.contender(other)
        return statistics.median(a / b for a, b in zip(self.ours.rates, theirs.rates, strict=True))

    def size_ratio(self, other: str) -> float:
        """Our output's size over the other's (median sizes; below 1: ours is smaller)."""
        return statistics.median(self.ours.output_bytes) / statistics.median(
            self.contender(other).output_bytes
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": f"{self.unit}/s",
            "notes": self.notes,
            "verified": self.verified,
            "contenders": {
                c.name: {
                    "role": c.role,
                    "median": c.median,
                    "min": min(c.rates),
                    "max": max(c.rates),
                    "rounds": c.rates,
                    "output_bytes": int(statistics.median(c.output_bytes)),
                    "output_bytes_rounds": c.output_bytes,
                    "verified": c.verified,
                    "verified_runs": c.verified_runs,
                }
                for c in self.contenders
            },
            "ratios_to_ours": {c.name: self.ratio(c.name) for c in self.contenders if c.role != "ours"},
            "size_ratios_to_ours": {
                c.name: self.size_ratio(c.name) for c in self.contenders if c.role != "ours"
            },
            "show_time": self.show_time,
            **({"extra": self.extra} if self.extra else {}),
        }


def run_once(contender: Contender) -> tuple[float, Output]:
    """Units per second of one run, with the garbage collector out of the way while timing."""
    if contender.run is None:
        raise ValueError("this contender is timed elsewhere")
    if contender.setup is not None:
        contender.setup()
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        output = contender.run()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return output.units / elapsed, output


def timed_and_verified(contender: Contender) -> None:
    """One timed run, then (untimed) its output checked and sized; a wrong output raises."""
    rate, output = run_once(contender)
    if contender.verify is None:
        raise VerificationError(f"{contender.name}: no way to verify its output")
    size = contender.verify(output.value)
    contender.record(rate, size)


def compare(
    name: str, unit: str, contenders: Sequence[Contender], *, rounds: int, warmup: int = 1, notes: str = ""
) -> Comparison:
    for _ in range(warmup):
        for contender in contenders:
            run_once(contender)
    for round_index in range(rounds):
        # Alternate the order so that no contender always runs right after the same neighbour.
        order = contenders if round_index % 2 == 0 else list(reversed(contenders))
        for contender in order:
            timed_and_verified(contender)
    return Comparison(name, unit, list(contenders), notes)


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation): a value that was actually observed."""
    ordered = sorted(samples)
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def check(condition: bool, message: str) -> None:
    """For verifiers: raise VerificationError with ``message`` unless ``condition`` holds."""
    if not condition:
        raise VerificationError(message)
