"""The figures the limits tests record (FIGURES, per test) and the runtime's totals of the session (TOTALS),
printed at the end of ``make test-limits``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

FIGURES: dict[str, dict[str, Any]] = {}
TOTALS: dict[str, Any] = {}


@contextmanager
def measured(stack: Any, name: str) -> Iterator[dict[str, Any]]:
    """Record the figures of what runs inside: seconds, and per function what it did meanwhile (the most
    events at once, invocations, throttles, timeouts, errors), per queue what the pollers did."""
    before = stack.limits_report()
    stack.concurrency.reset_peaks()
    started = time.monotonic()
    extra: dict[str, Any] = {}
    try:
        yield extra
    finally:
        after = stack.limits_report()
        functions = {}
        for function, stats in after["functions"].items():
            was = before["functions"][function]
            delta = {
                key: stats[key] - was[key]
                for key in ("invocations", "throttles", "timeouts", "errors", "environments")
            }
            if any(delta.values()):
                functions[function] = {"limit": stats["limit"], "peak": stats["recent_peak"], **delta}
        queues = {}
        for queue, stats in after["queues"].items():
            was = before["queues"].get(queue, {})
            delta = {
                key: value - was.get(key, 0) for key, value in stats.items() if key != "highest_receive_count"
            }
            if any(delta.values()):
                queues[queue] = {**delta, "highest_receive_count": stats["highest_receive_count"]}
        FIGURES[name] = {
            "seconds": round(time.monotonic() - started, 1),
            **extra,
            "functions": functions,
            "queues": queues,
        }


def write_figures(write_line: Callable[[str], Any], write_sep: Callable[[str, str], Any]) -> None:
    if not FIGURES and not TOTALS:
        return
    write_sep("=", "figures under the emulated limits")
    for name, figures in FIGURES.items():
        write_line(f"{name}: {figures['seconds']} s")
        for key, value in figures.items():
            if key not in ("seconds", "functions", "queues"):
                write_line(f"    {key}: {value}")
        for function, stats in figures["functions"].items():
            write_line(f"    {function}: {json.dumps(stats)}")
        for queue, stats in figures["queues"].items():
            write_line(f"    queue {queue}: {json.dumps(stats)}")
    if TOTALS:
        write_line("runtime totals (the whole session):")
        for function, stats in TOTALS["functions"].items():
            if stats["invocations"] or stats["throttles"]:
                shown = {
                    key: round(value, 1) if isinstance(value, float) else value
                    for key, value in stats.items()
                }
                write_line(f"    {function}: {json.dumps(shown)}")
        for queue, stats in TOTALS["queues"].items():
            write_line(f"    queue {queue}: {json.dumps(stats)}")
        write_line(f"    executions failed at the history limit: {len(TOTALS['history_limit_failures'])}")
