"""The stage's throttle is a backstop sized so that the per-key limits decide (issue 12): the arithmetic of
docs/operations.md ("Throttling and capacity") checked against the template, the page and ratelimit.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from data_export.ratelimit import DEFAULT_PER_MINUTE

from tests.infra.test_template import load_template

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_RATE, ACCOUNT_BURST = 10_000, 5_000  # API Gateway's default account quota per region
ACCOUNT_CONCURRENCY = 1_000  # Lambda's default concurrent executions per region
WARM_REQUEST_SECONDS = 0.05  # a warm API request, rounded up from the load test's ~40 ms service time


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def stage_limit(template: dict[str, Any]) -> tuple[float, float]:
    (default,) = [
        setting
        for setting in template["Resources"]["ExportApi"]["Properties"]["MethodSettings"]
        if (setting["ResourcePath"], setting["HttpMethod"]) == ("/*", "*")
    ]
    return float(default["ThrottlingRateLimit"]), float(default["ThrottlingBurstLimit"])


def method_limits(template: dict[str, Any]) -> dict[tuple[str, str], tuple[float, float]]:
    """Each API method's (rate, burst): its own MethodSettings entry (paths with "/" written "~1"), else
    the stage's default."""
    settings = template["Resources"]["ExportApi"]["Properties"]["MethodSettings"]
    default = next(s for s in settings if (s["ResourcePath"], s["HttpMethod"]) == ("/*", "*"))
    own = {(s["HttpMethod"], s["ResourcePath"].replace("~1", "/")): s for s in settings if s is not default}
    assert set(own) <= api_methods(template), "a MethodSettings entry names no method of the API"
    return {
        method: (
            float(own.get(method, default)["ThrottlingRateLimit"]),
            float(own.get(method, default)["ThrottlingBurstLimit"]),
        )
        for method in api_methods(template)
    }


def api_methods(template: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in resource["Properties"].get("Events", {}).values()
        if event["Type"] == "Api"
    }


def page_poll_seconds() -> float:
    (poll_ms,) = re.findall(r"const POLL_MS = (\d+);", (ROOT / "web" / "index.html").read_text())
    return int(poll_ms) / 1000


def test_the_stage_lets_a_thousand_pages_poll_at_once(stage_limit: tuple[float, float]) -> None:
    rate, _ = stage_limit
    assert rate * page_poll_seconds() >= 1_000  # was 10 * 1.5 = 15


def test_per_key_limits_bite_long_before_the_stage(stage_limit: tuple[float, float]) -> None:
    rate, burst = stage_limit
    per_key_rate = DEFAULT_PER_MINUTE / 60
    assert rate / per_key_rate >= 100  # keys at their sustained maximum on one method
    assert burst >= DEFAULT_PER_MINUTE  # one key's whole minute at once (fixed windows allow it)


def test_the_api_leaves_half_the_account_quota_and_lambda_concurrency_to_others(
    template: dict[str, Any], stage_limit: tuple[float, float]
) -> None:
    limits = method_limits(template)
    assert len(limits) == 11  # five export methods, six import methods
    total_rate = sum(rate for rate, _ in limits.values())
    assert total_rate <= ACCOUNT_RATE / 2
    assert sum(burst for _, burst in limits.values()) <= ACCOUNT_BURST / 2
    parameters = template["Parameters"]
    reserved = (
        parameters["MaxConcurrentExports"]["Default"] + parameters["MaxConcurrentUnitBuilds"]["Default"]
    )
    # Little's law: executions busy = rate x duration; AWS keeps 100 of the account's unreserved.
    assert total_rate * WARM_REQUEST_SECONDS <= ACCOUNT_CONCURRENCY - reserved - 100


def test_the_operations_guide_states_the_templates_figures(stage_limit: tuple[float, float]) -> None:
    rate, burst = stage_limit
    guide = (ROOT / "docs" / "operations.md").read_text()
    section = guide.split("## Throttling and capacity", 1)[1].split("\n## ", 1)[0]
    assert f"{int(rate):,} requests/s, burst {int(burst):,}" in section
    assert f"**{int(rate * page_poll_seconds()):,} pages**" in section
    assert f"**{int(rate / (DEFAULT_PER_MINUTE / 60)):,} keys**" in section
