"""Session-wide local stack: a real moto server over HTTP, the template's resources, the example seeded."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_FIXTURE = REPO.parent / "shared" / "spec" / "example-org.yaml"
AUTH_FIXTURE = REPO / "tests" / "e2e" / "auth-cases.yaml"


@pytest.fixture(scope="session")
def stack() -> Iterator[Any]:
    from data_export.settings import get_settings
    from data_export_cli.seed import seed_file
    from data_export_cli.stack import LocalStack

    # 5 MiB parts (S3's minimum) so that the example's ~7.8 MB archive spans two parts.
    local = LocalStack(extra_environment={"EXPORT_PART_SIZE_BYTES": str(5 * 1024 * 1024)}).start()
    for fixture in (EXAMPLE_FIXTURE, AUTH_FIXTURE):
        seed_file(
            fixture,
            dynamodb_client=local.client("dynamodb"),
            s3_client=local.client("s3"),
            settings=get_settings(),
        )
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
