"""Timing side by side: contenders run round-robin, rates and ratios are medians over the rounds.

The machine is shared (2 cores, other work running), so a single timing means little. Each round runs
every contender once, in turn, on the same input; a ratio is computed within each round (both sides saw
the same load) and the median over rounds is reported, together with each contender's median rate.
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

# A contender processes the whole workload once and returns how many units (records, bytes...) it did.
Workload = Callable[[], int]


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
    run: Workload | None = None  # None: rates are measured elsewhere (in another process)
    rates: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


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

    def ratio(self, other: str) -> float:
        """Median over rounds of ours/other (above 1: we are faster)."""
        theirs = next(c for c in self.contenders if c.name == other)
        return statistics.median(a / b for a, b in zip(self.ours.rates, theirs.rates, strict=True))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": f"{self.unit}/s",
            "notes": self.notes,
            "contenders": {
                c.name: {
                    "role": c.role,
                    "median": c.median,
                    "min": min(c.rates),
                    "max": max(c.rates),
                    "rounds": c.rates,
                }
                for c in self.contenders
            },
            "ratios_to_ours": {c.name: self.ratio(c.name) for c in self.contenders if c.role != "ours"},
            "show_time": self.show_time,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Comparison:
        """A comparison as ``to_json`` wrote it (to merge a partial run into earlier results)."""
        contenders = [
            Contender(name, figures["role"], rates=list(figures["rounds"]))
            for name, figures in document["contenders"].items()
        ]
        return cls(
            document["name"],
            document["unit"].removesuffix("/s"),
            contenders,
            document.get("notes", ""),
            document.get("extra", {}),
            document.get("show_time", False),
        )


def time_once(run: Workload | None) -> float:
    """Units per second of one run, with the garbage collector out of the way while timing."""
    if run is None:
        raise ValueError("this contender is timed elsewhere")
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        units = run()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return units / elapsed


def compare(
    name: str, unit: str, contenders: Sequence[Contender], *, rounds: int, warmup: int = 1, notes: str = ""
) -> Comparison:
    for _ in range(warmup):
        for contender in contenders:
            time_once(contender.run)
    for round_index in range(rounds):
        # Alternate the order so that no contender always runs right after the same neighbour.
        order = contenders if round_index % 2 == 0 else list(reversed(contenders))
        for contender in order:
            contender.rates.append(time_once(contender.run))
    return Comparison(name, unit, list(contenders), notes)


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation): a value that was actually observed."""
    ordered = sorted(samples)
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]
