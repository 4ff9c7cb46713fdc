"""The results file's schema: one run, on a named commit, every comparison verified and sized. A tiny quick
run (records and binaries only) goes through the same checks; nothing about its timings is asserted."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.run import REPO, check_results

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def good() -> dict[str, Any]:
    sides = {
        name: {"role": role, "rounds": [1.0, 2.0, 3.0], "output_bytes": 10, "verified": True}
        for name, role in (("ours", "ours"), ("peer", "peer"))
    }
    return {
        "meta": {
            "commit": COMMIT,
            "date": "2026-12-01T10:00:00+00:00",
            "mode": "full",
            "quick": False,
            "machine": {"cpus": 2, "python": "3.11.7"},
        },
        "comparisons": [
            {"name": "Records -> zip", "verified": True, "contenders": copy.deepcopy(sides)},
            {
                "name": "Whole export (zip), local stack",
                "verified": True,
                "contenders": copy.deepcopy(sides),
                "extra": {"warmup_seconds": 3.0},
            },
        ],
        "poll_latency": {
            state: {"samples": 1000, "verified": True, "output_bytes": 300, "p99_ms": 50.0}
            for state in ("pending", "completed")
        },
        "snapstart": {"GetExportFunction": {"verified": True, "output_bytes": 205}},
        "export_memory": {"verified": True, "archive_bytes": 4_000_000_000},
        "errors": {},
    }


def test_a_complete_run_passes() -> None:
    assert check_results(good()) == []


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda d: d["meta"].update(commit="HEAD"), "meta.commit"),
        (lambda d: d["meta"].update(merged_with={"date": "earlier"}), "merged"),
        (lambda d: d["meta"].update(mode="fast"), "meta.mode"),
        (lambda d: d["meta"]["machine"].pop("cpus"), "meta.machine"),
        (lambda d: d["comparisons"][0].update(verified=False), "Records -> zip: not verified"),
        (lambda d: d["comparisons"][0]["contenders"]["peer"].pop("output_bytes"), "peer has no output_bytes"),
        (lambda d: d["comparisons"][0]["contenders"]["peer"].update(verified=False), "peer not verified"),
        (lambda d: d["comparisons"][1]["contenders"]["ours"].update(rounds=[1.0]), "fewer than 3 rounds"),
        (lambda d: d["comparisons"][1].update(extra={}), "no warm-up"),
        (lambda d: d["poll_latency"]["pending"].update(samples=50), "p99 from 50 samples"),
        (lambda d: d["poll_latency"]["completed"].update(verified=False), "poll completed"),
        (lambda d: d["snapstart"]["GetExportFunction"].pop("output_bytes"), "snapstart"),
        (lambda d: d["export_memory"].update(verified=False), "export_memory"),
        (lambda d: d.update(errors={"export": "boom"}), "sections failed"),
    ],
)
def test_what_a_results_file_must_not_be(damage: Any, problem: str) -> None:
    document = good()
    damage(document)
    problems = check_results(document)
    assert any(problem in found for found in problems), problems


def test_a_quick_run_may_leave_p99_out_and_run_fewer_rounds() -> None:
    document = good()
    document["meta"].update(mode="quick", quick=True)
    document["comparisons"][1]["contenders"]["ours"]["rounds"] = [1.0]
    for state in ("pending", "completed"):
        document["poll_latency"][state].update(samples=50, p99_ms=None)
    assert check_results(document) == []


def test_a_tiny_quick_run_meets_the_schema(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    environment = {**os.environ, "DATA_EXPORT_BENCH_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "records,binaries"]
    command += ["--records", "40", "--binary-mib", "1", "--rounds", "1", "--output", str(output)]
    completed = subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=900, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    document = json.loads(output.read_text())
    assert check_results(document) == []
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    assert document["meta"]["commit"] == head.stdout.strip()
    assert document["meta"]["mode"] == "quick"
    names = {comparison["name"] for comparison in document["comparisons"]}
    expected = {"Records -> zip", "Binaries -> zip (realistic corpus)", "Binaries -> tar.gz (random bytes)"}
    assert expected <= names
    for comparison in document["comparisons"]:
        assert comparison["verified"] is True
        assert all(side["output_bytes"] > 0 for side in comparison["contenders"].values())
