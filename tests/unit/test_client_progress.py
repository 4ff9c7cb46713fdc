"""The client's progress output: a bar redrawn in place on a terminal, plain lines anywhere else."""

from __future__ import annotations

import io
from typing import Any

import pytest
from data_export_cli.client import (
    ByteProgress,
    Display,
    JobProgress,
    format_bytes,
    format_duration,
    render_bar,
    retry_after_seconds,
)

SECTIONS = ["organization", "members", "products"]


def job(status: str, done: int, percent: float, eta: int | None = None) -> dict[str, Any]:
    return {
        "job_id": "j1",
        "status": status,
        "sections": [
            {
                "key": key,
                "status": "completed" if index < done else ("processing" if index == done else "pending"),
                "record_count": 2 if index < done else 0,
                "binary_count": 0,
                "error": None,
            }
            for index, key in enumerate(SECTIONS)
        ],
        "progress": {
            "sections_done": done,
            "sections_total": len(SECTIONS),
            "records_written": 2 * done,
            "binaries_written": 0,
            "bytes_written": 1024 * done,
            "percent": percent,
            "eta_seconds": eta,
        },
    }


POLLS = [
    job("pending", 0, 0.0),
    job("processing", 0, 2.0),
    job("processing", 0, 4.0),  # nothing worth a line
    job("processing", 1, 35.0, eta=20),
    job("processing", 2, 71.5, eta=8),
    job("completed", 3, 100.0),
]


@pytest.mark.parametrize(
    ("fraction", "width", "bar"),
    [
        (0.0, 12, "[----------]"),
        (0.5, 12, "[#####-----]"),
        (1.0, 12, "[##########]"),
        (1.7, 6, "[####]"),  # clamped
        (-1.0, 6, "[----]"),
        (0.5, 2, "[]"),
    ],
)
def test_render_bar(fraction: float, width: int, bar: str) -> None:
    assert render_bar(fraction, width) == bar
    assert len(bar) == width


def test_units() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(7_812_345) == "7.5 MiB"
    assert format_bytes(3 * 1024**4) == "3072.0 GiB"
    assert format_duration(5) == "0:05"
    assert format_duration(125.4) == "2:05"
    assert format_duration(3 * 3600 + 61) == "3:01:01"


def test_job_progress_without_a_terminal_is_plain_lines_one_per_change() -> None:
    out = io.StringIO()
    progress = JobProgress(Display(out, interactive=False))
    for poll in POLLS:
        progress.update(poll)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert text.splitlines() == [
        "pending 0.0% 0/3 sections, 0 records, 0 binaries, 0 B",
        "processing 2.0% 0/3 sections, 0 records, 0 binaries, 0 B",
        "  organization  completed  2 records, 0 binaries",
        "processing 35.0% 1/3 sections, 2 records, 0 binaries, 1.0 KiB, about 0:20 left",
        "  members       completed  2 records, 0 binaries",
        "processing 71.5% 2/3 sections, 4 records, 0 binaries, 2.0 KiB, about 0:08 left",
        "  products      completed  2 records, 0 binaries",
        "completed 100.0% 3/3 sections, 6 records, 0 binaries, 3.0 KiB",
    ]


def test_job_progress_on_a_terminal_redraws_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    out = io.StringIO()
    progress = JobProgress(Display(out, interactive=True))
    for poll in POLLS:
        progress.update(poll)
    text = out.getvalue()
    redraws = [part for part in text.split("\r") if part.strip() and "\n" not in part]
    assert len(redraws) >= len(POLLS)
    assert all(len(part) == 59 for part in redraws)  # padded to the width, one column spare: no wrap
    assert redraws[-1] == "[#################] 100.0% 3/3 sections, 6 records, 0 binar"  # cut at the width
    # A finished section stays on screen as a line of its own above the bar.
    assert "  members       completed  2 records, 0 binaries\n" in text


def test_byte_progress_without_a_terminal_prints_quarters() -> None:
    out = io.StringIO()
    bar = ByteProgress(Display(out, interactive=False), total=1000)
    for done in range(0, 1001, 50):
        bar.update(done)
    assert out.getvalue().splitlines() == [
        f"downloaded {p}% ({p * 10} of 1000 bytes)" for p in (0, 25, 50, 75, 100)
    ]


def test_byte_progress_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    ticks = iter([0.0, 1.0, 2.0])
    out = io.StringIO()
    bar = ByteProgress(Display(out, interactive=True), total=4 * 1024 * 1024, clock=lambda: next(ticks))
    bar.update(0)
    bar.update(1024 * 1024)
    bar.update(2 * 1024 * 1024)
    last = out.getvalue().split("\r")[-1]
    assert last.rstrip() == "[################---------------]  50.0% 2.0 MiB of 4.0 MiB, 1.0 MiB/s"


def test_retry_after() -> None:
    from datetime import UTC, datetime

    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 01 Jan 2025 12:00:30 GMT", now=now) == 30.0
    assert retry_after_seconds("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None


def test_byte_progress_redraws_at_most_ten_times_a_second_but_always_the_end() -> None:
    ticks = iter([0.0, 0.05, 0.2, 0.21])
    out = io.StringIO()
    bar = ByteProgress(Display(out, interactive=True), total=100, clock=lambda: next(ticks))
    for done in (10, 20, 30, 100):
        bar.update(done)
    drawn = [part.split("%")[0].split()[-1] for part in out.getvalue().split("\r") if part]
    assert drawn == ["10.0", "30.0", "100.0"]
