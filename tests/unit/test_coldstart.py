"""The cold-start benchmark's first events still mean what it says, and garbage is refused cheaply."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmarks import coldstart


@pytest.mark.parametrize("naive", [False, True], ids=["ours", "naive"])
@pytest.mark.parametrize("function", list(coldstart.FUNCTIONS))
def test_first_event_comes_to_its_outcome(function: str, naive: bool) -> None:
    first = coldstart.FUNCTIONS[function]
    timings = coldstart.sample(coldstart.probe(first, naive=naive), first.outcome)  # raises otherwise
    assert len(timings.cpu) == len(timings.wall) == len(coldstart.STAGES)


@pytest.mark.parametrize("function", list(coldstart.FUNCTIONS))
def test_after_a_restore_the_first_event_comes_to_its_outcome(function: str) -> None:
    """The SnapStart probe: import and before-snapshot hooks, after-restore hooks, then the same event."""
    first = coldstart.FUNCTIONS[function]
    timings = coldstart.sample(coldstart.probe(first, snapstart=True), first.outcome)  # raises otherwise
    assert len(timings.cpu) == 4  # import + priming, restore, first event, first client
    assert timings.output_bytes > 0


@pytest.mark.parametrize("function", ["StartExportFunction", "GetExportFunction", "CancelExportFunction"])
def test_a_malformed_api_key_is_refused_without_boto3(function: str) -> None:
    first = coldstart.FUNCTIONS[function]
    code = (
        f"import sys, types, {first.module} as function\n"
        "context = types.SimpleNamespace(function_name='f', memory_limit_in_mb=512, invoked_function_arn='a',"
        " aws_request_id='r')\n"
        f"response = function.{first.handler}({first.event!r}, context)\n"
        "print(response['statusCode'], 'boto3' in sys.modules)\n"
    )
    env = {**os.environ, **coldstart.ENVIRONMENT}
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=coldstart.REPO, env=env, capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip().splitlines()[-1] == "401 False"
