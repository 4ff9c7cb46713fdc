"""The service under AWS's limits (data_export_cli.limits), lowered so that contention shows at small scale:
the worker runs 2 exports at once, the unit builder 8 units (a big export's Map wants 16), a unit times out
after 8 seconds, an export request is visible again 5 seconds after a failed delivery, and the sweeper runs
every second with a pending job's grace period at 4 seconds.

Run with ``make test-limits`` (``pytest -q tests/limits``; ``make test`` runs it after the rest). This
folder's session has a local stack of its own, configured with these limits, under the name ``stack`` (so
tests written for tests/conftest.py's stack run here unchanged). moto's backends and ``os.environ`` belong
to the process, so two stacks never share one: the folder is collected only when every path pytest was
given lies inside it, and a run of the whole suite (``pytest``, ``pytest tests``) leaves it out.

At the end the figures each test recorded (time, the most events each function ran at once, throttles,
timeouts, retries) and the runtime's totals are printed; docs/scaling.md records a run of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.limits.figures import TOTALS, write_figures

HERE = Path(__file__).resolve().parent
MIB = 1024 * 1024

# What the tests lower, and why (each value is the smallest that still lets the scenario run as on AWS).
RESERVED = {"ExportWorkerFunction": 2, "ExportBuildUnitFunction": 8}
UNIT_TIMEOUT_SECONDS = 8.0  # a small unit builds in well under a second; a stuck one is cut off at 8
VISIBILITY_TIMEOUT_SECONDS = 5  # a small export builds in about a second; a failed request is back in 5
SWEEP_EVERY_SECONDS = 1.0
ENVIRONMENT = {
    "PENDING_GRACE_SECONDS": "4",  # the sweeper's clock, accelerated: a request waiting 4 s may be lost
    "ADMISSION_RETRY_SECONDS": "1",  # a big export without an execution slot is back in the queue in 1 s
    "FAST_PATH_MAX_RECORDS": "30",  # organizations of more records go to Step Functions ...
    "CHUNK_MAX_RECORDS": "5",  # ... in units of at most 5 records
    "EXPORT_PART_SIZE_BYTES": str(5 * MIB),
}


def _given_only_this_folder(config: pytest.Config) -> bool:
    root = Path(str(config.invocation_params.dir))
    paths = [(root / str(arg).split("::", 1)[0]).resolve() for arg in config.args]
    return bool(paths) and all(path == HERE or HERE in path.parents for path in paths)


@pytest.hookimpl(tryfirst=True)  # before pytest's own, which answers False (collect) for any path
def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.parent == HERE and not _given_only_this_folder(config):
        return True  # a run of other tests too: their session has tests/conftest.py's stack
    return None


@pytest.fixture(scope="session")
def stack() -> Iterator[Any]:
    from data_export_cli.limits import Limits
    from data_export_cli.stack import LocalStack

    limits = Limits(
        reserved_concurrency=RESERVED,
        timeouts={"ExportBuildUnitFunction": UNIT_TIMEOUT_SECONDS},
        visibility_timeouts={"ExportQueue": VISIBILITY_TIMEOUT_SECONDS},
    )
    local = LocalStack(limits=limits, extra_environment=ENVIRONMENT).start()
    yield local
    TOTALS.update(local.limits_report())
    local.stop()


@pytest.fixture(scope="session")
def api_url(stack: Any) -> Iterator[str]:
    """The API, the queues' pollers, and the schedules (the sweeper every second)."""
    from data_export_cli.gateway import ApiGateway
    from data_export_cli.worker import QueuePoller, Scheduler

    gateway = ApiGateway(stack, "127.0.0.1", 0).start()
    poller = QueuePoller(stack).start()
    scheduler = Scheduler(stack, every={"ExportSweeperFunction": SWEEP_EVERY_SECONDS}).start()
    yield gateway.url
    scheduler.stop()
    poller.stop()
    gateway.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    write_figures(terminalreporter.write_line, terminalreporter.write_sep)
