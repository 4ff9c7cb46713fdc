"""Session-wide local stack: a real moto server over HTTP, the template's resources, the example seeded."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_FIXTURE = REPO.parent / "shared" / "spec" / "example-org.yaml"
AUTH_FIXTURE = REPO / "tests" / "e2e" / "auth-cases.yaml"


def _start_stack() -> Any:
    from data_export.settings import get_settings
    from data_export_cli.seed import seed_file
    from data_export_cli.stack import GrantRef, LocalStack

    # The least-privilege test (tests/infra/test_least_privilege.py) runs a test in a pytest of its own
    # with one granted action taken out, and reads the denials the stack logs.
    without = os.environ.get("DATA_EXPORT_IAM_WITHOUT")
    denial_log = os.environ.get("DATA_EXPORT_IAM_DENIAL_LOG")
    # 5 MiB parts (S3's minimum) so that the example's ~7.8 MB archive spans two parts, both when exported
    # and when uploaded to be imported (archives over 1 MiB are uploaded in parts).
    local = LocalStack(
        extra_environment={
            "EXPORT_PART_SIZE_BYTES": str(5 * 1024 * 1024),
            "IMPORT_PART_SIZE_BYTES": str(5 * 1024 * 1024),
            "IMPORT_SINGLE_PUT_MAX_BYTES": str(1024 * 1024),
        },
        without_grant=GrantRef.parse(without) if without else None,
        denial_log=Path(denial_log) if denial_log else None,
    ).start()
    _iam_trace.stack = local
    for fixture in (EXAMPLE_FIXTURE, AUTH_FIXTURE):
        seed_file(
            fixture,
            dynamodb_client=local.client("dynamodb"),
            s3_client=local.client("s3"),
            settings=get_settings(),
        )
    return local


@pytest.fixture(scope="session")
def stack() -> Iterator[Any]:
    if _iam_batch.grants:  # one stack for every run of the batch (pytest_runtestloop below)
        _iam_batch.stack = _iam_batch.stack or _start_stack()
        yield _iam_batch.stack
        return
    local = _start_stack()
    yield local
    local.stop()


@pytest.fixture(scope="session")
def api_url(stack: Any) -> Iterator[str]:
    from data_export_cli.gateway import ApiGateway
    from data_export_cli.worker import QueuePoller

    gateway = ApiGateway(stack, "127.0.0.1", 0).start()
    poller = QueuePoller(stack).start()
    yield gateway.url
    poller.stop()
    gateway.stop()


@pytest.fixture(scope="session")
def example() -> Any:
    from data_export_cli.seed import load_fixture

    return load_fixture(EXAMPLE_FIXTURE)


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "data-export")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "DataExport")


class _IamTrace:
    """With DATA_EXPORT_IAM_TRACE=DIR, records which (role, action, resource) each test's calls were allowed,
    one JSON file per pytest process: `python -m tests.infra.iam_proofs` turns them into the proofs file."""

    def __init__(self) -> None:
        self.stack: Any = None
        self.directory = os.environ.get("DATA_EXPORT_IAM_TRACE")
        self.tests: dict[str, dict[str, Any]] = {}


_iam_trace = _IamTrace()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, None]:
    import time

    if _iam_trace.directory and _iam_trace.stack is not None:
        _iam_trace.stack.grants_used.clear()
    started = time.monotonic()
    outcome = yield
    # Only a test that passes with every grant can prove one: it must fail once that grant is gone.
    if _iam_trace.directory and _iam_trace.stack is not None and outcome.excinfo is None:
        _iam_trace.tests[item.nodeid] = {
            "seconds": time.monotonic() - started,
            "grants": sorted(
                str(ref) for ref in _iam_trace.stack.grant_refs(_iam_trace.stack.grants_used.copy())
            ),
        }


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _iam_trace.directory and _iam_trace.tests:
        import json

        path = Path(_iam_trace.directory) / f"trace-{os.getpid()}.json"
        path.write_text(json.dumps(_iam_trace.tests), encoding="utf-8")


class _IamBatch:
    """DATA_EXPORT_IAM_BATCH=GRANT;GRANT;... : the selected test runs once per grant, that grant taken out of
    the running stack's policies each time, and DATA_EXPORT_IAM_RESULTS gets, per grant, whether the test
    failed and what the stack denied (the least-privilege test's fast path: one pytest and one stack for
    all the grants a test proves, instead of one each)."""

    def __init__(self) -> None:
        self.grants = [g for g in os.environ.get("DATA_EXPORT_IAM_BATCH", "").split(";") if g]
        self.results = os.environ.get("DATA_EXPORT_IAM_RESULTS")
        self.stack: Any = None


_iam_batch = _IamBatch()


def pytest_runtestloop(session: pytest.Session) -> bool | None:
    if not _iam_batch.grants:
        return None
    import json

    from _pytest.runner import runtestprotocol
    from data_export_cli.stack import GrantRef

    results: dict[str, dict[str, Any]] = {}
    for item in session.items:
        for text in _iam_batch.grants:
            grant = GrantRef.parse(text)
            _iam_batch.stack = _iam_batch.stack or _start_stack()
            _iam_batch.stack.denials.clear()
            _iam_batch.stack.revoke(grant)
            try:
                reports = runtestprotocol(item, nextitem=None, log=False)
            finally:
                _iam_batch.stack.restore(grant)
            denials = []
            for denial in list(_iam_batch.stack.denials):
                role = str(denial.principal).split(":assumed-role/")[-1].split("/")[0]
                role_id = _iam_batch.stack.role_id(role)
                denials.append({"role": role, "role_id": role_id, "action": denial.action})
            results.setdefault(item.nodeid, {})[text] = {
                "failed": any(report.failed for report in reports),
                "denials": denials,
            }
    if _iam_batch.results:
        Path(_iam_batch.results).write_text(json.dumps(results), encoding="utf-8")
    if _iam_batch.stack is not None:
        _iam_batch.stack.stop()
    return True
