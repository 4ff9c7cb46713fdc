"""Logs never carry API keys, key hashes, presigned URLs or record data.

Everything the functions log while they serve exports and refuse requests over HTTP against the local stack
is captured at its source: the stream of every log handler (Powertools writes its JSON lines to stdout
through one) plus a catch-all handler on the root logger that renders each record with all its extra
fields, plus whatever is printed to stdout or stderr. Then every line is searched for each secret."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from data_export.ids import new_id
from data_export.settings import get_settings
from data_export.storage.layout import partition_key

from tests.conftest import AUTH_FIXTURE, EXAMPLE_FIXTURE
from tests.e2e.client import BASE, call, wait_for_job
from tests.security.helpers import export, new_key, organization, seed

ROOT = Path(__file__).resolve().parents[2]
ACME = "eHcFM2wk4RdyYG8yMrTGbQ"
ACME_KEY = "csb_uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo_b5b88299"
_ID = re.compile(r"[23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz]{22}")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT")
# Fields whose values are identifiers, times, enumerations or media types: not record data worth hiding
# (organization_id, job_id and key_id are what a log line must carry to be useful).
_NOT_DATA = {"id", "created_at", "joined_at", "updated_at", "expires_at", "last_used", "content_type", "role"}
_MIN_DATA_LENGTH = 6  # shorter values ("CA", "owner") occur in ordinary words


class _EveryField(logging.Formatter):
    """A log record as JSON with every attribute, extras and the formatted exception included."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {key: str(value) for key, value in vars(record).items()}
        fields["message"] = record.getMessage()
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json.dumps(fields, ensure_ascii=False)


class _Sink(io.StringIO):
    """A thread-safe text stream: log handlers of several threads write here."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            return super().write(text)


@contextmanager
def captured_logs() -> Iterator[_Sink]:
    sink = _Sink()
    loggers = [
        logging.getLogger(),
        *(
            logger
            for logger in logging.root.manager.loggerDict.values()
            if isinstance(logger, logging.Logger)
        ),
    ]
    swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
    for logger in loggers:
        for handler in logger.handlers:
            # pytest's own capture handlers are left alone; every other stream handler writes to the sink.
            if isinstance(handler, logging.StreamHandler) and not type(handler).__module__.startswith(
                "_pytest"
            ):
                swapped.append((handler, handler.setStream(sink)))
    catch_all = logging.StreamHandler(sink)
    catch_all.setFormatter(_EveryField())
    logging.getLogger().addHandler(catch_all)
    try:
        # print() and tracebacks that bypass logging: in Lambda stdout and stderr go to the log too.
        with redirect_stdout(sink), redirect_stderr(sink):
            yield sink
    finally:
        logging.getLogger().removeHandler(catch_all)
        for handler, stream in swapped:
            handler.setStream(stream)


def _record_strings(value: Any, field: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _record_strings(item, str(key))
    elif isinstance(value, list):
        for item in value:
            yield from _record_strings(item, field)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value)
        if (
            field not in _NOT_DATA
            and not field.endswith("_id")
            and len(text) >= _MIN_DATA_LENGTH
            and not _ID.fullmatch(text)
            and not _TIMESTAMP.match(text)
        ):
            yield text


def _fixture_secrets(path: Path) -> tuple[set[str], set[str]]:
    """(every raw key, its body and its hash; every record value) of a seed fixture."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    keys: set[str] = set()
    data: set[str] = set()
    for organization_data in document["organizations"]:
        for section, records in organization_data.items():
            for record in records if isinstance(records, list) else [records]:
                if section == "api_keys":
                    raw = record["key"]
                    keys |= {raw, raw.split("_")[1], hashlib.sha256(raw.encode()).hexdigest()}
                data |= set(_record_strings({name: value for name, value in record.items() if name != "key"}))
    return keys, data


@pytest.fixture(scope="module")
def failing_organization(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    """An organization whose export fails in the products section, with canary data in its records.

    The product's stored image reference is corrupted after seeding (no asset key), so the worker raises
    mid-build and logs the failure with its traceback: the path most likely to dump data into a log."""
    key = new_key()
    canary = f"canary-{new_id()}"
    product = {
        "id": new_id(),
        "name": f"{canary} product name",
        "gtin": "00012345678905",
        "created_at": "2025-01-01T00:00:00+00:00",
        "description": f"{canary} secret recipe",
        "images": [
            {
                "filename": f"{canary}.png",
                "content_type": "image/png",
                "generate": {"size_bytes": 10, "seed": 1},
            }
        ],
    }
    hostile = organization("Canary", key, products=[product])
    hostile["members"][0]["email"] = f"{canary}@hostile.example"
    folder = tmp_path_factory.mktemp("failing-org")
    fixture = seed(stack, folder, hostile)
    organization_id = hostile["organization"]["id"]
    dynamodb = stack.client("dynamodb")
    table = get_settings().org_data_table
    item_key = {
        "partition": {"S": partition_key(organization_id, "products")},
        "record_id": {"S": product["id"]},
    }
    stored = json.loads(dynamodb.get_item(TableName=table, Key=item_key)["Item"]["record"]["S"])
    del stored["images"][0]["asset_key"]
    dynamodb.put_item(TableName=table, Item={**item_key, "record": {"S": json.dumps(stored)}})
    return organization_id, key, fixture


@pytest.fixture(scope="module")
def logged(api_url: str, stack: Any, failing_organization: tuple[str, str, Path]) -> dict[str, Any]:
    """Serve exports and refusals while capturing every log line; returns the lines and what was served."""
    failing_org, failing_key, _ = failing_organization
    for function in stack.functions:  # import the handlers (and create their loggers) before capturing
        stack.handler(function)
    download_urls: list[str] = []
    with captured_logs() as sink:
        for archive_format in ("zip", "tar.gz"):
            job, archive = export(api_url, ACME, ACME_KEY, archive_format)
            assert archive
            download_urls.append(job["download_url"])
        failed = call("POST", f"{api_url}{BASE}/{failing_org}", failing_key)
        assert failed.status == 200, failed.body
        failed_job = wait_for_job(api_url, failing_org, failed.json()["job_id"], failing_key)
        refusals = [
            call("POST", f"{api_url}{BASE}/{ACME}", key)
            for key in (
                None,
                "not-a-key",
                ACME_KEY[:-8] + "00000000",  # checksum mismatch
                new_key(),  # well formed, unknown
                "csb_2ym7FgoRF9Hvrby6WjKt989NUzo4l7Hx_035ce1bd",  # revoked
                "cpk_pfEwTjhlN8oFsHWVeOJDnKYSxw9YD6zk_c2b4a42f",  # publishable
                "csb_8x6pjtsSB151CEvNQDVzoe4MtlgbXxMZ_fbb12fee",  # another organization's
                "csb_TAwR4y9ojfljoQoaF1LlqsajAIxNKu8i_6006b1ee",  # expired
                "csu_hvMdgaKjIg8xNbe3nNyjOq9wMxEhh2FD_f94c873f",  # an editor's
            )
        ]
        refusals += [
            # The key where it does not belong: another header, the query, the path.
            call("POST", f"{api_url}{BASE}/{ACME}", headers={"Authorization": f"Bearer {ACME_KEY}"}),
            call("POST", f"{api_url}{BASE}/{ACME}?api_key={ACME_KEY}", ACME_KEY),
            call("GET", f"{api_url}{BASE}/{ACME}/{ACME_KEY}", ACME_KEY),
            call("GET", f"{api_url}{BASE}/{ACME_KEY}/{new_id()}", ACME_KEY),
            call("GET", f"{api_url}{BASE}/{ACME}/{new_id()}", ACME_KEY),  # unknown job
            call("POST", f"{api_url}{BASE}/{ACME}?archive_format=rar", ACME_KEY),
        ]
        time.sleep(0.5)  # let the worker's last log lines land
    return {
        "lines": sink.getvalue().splitlines(),
        "download_urls": download_urls,
        "failed_job": failed_job,
        "refusals": refusals,
    }


def test_the_capture_sees_what_the_functions_log(logged: dict[str, Any]) -> None:
    # Without this the other tests would pass on an empty capture.
    text = "\n".join(logged["lines"])
    assert "Export requested" in text
    assert "Export build failed" in text and "Traceback" in text
    assert logged["failed_job"]["status"] == "failed"
    assert sorted({reply.status for reply in logged["refusals"]}) == [200, 400, 401, 403, 404, 422]


@pytest.mark.parametrize("fixture", [EXAMPLE_FIXTURE, AUTH_FIXTURE], ids=["example", "auth-cases"])
def test_no_api_key_nor_its_hash_is_logged(logged: dict[str, Any], fixture: Path) -> None:
    keys, _ = _fixture_secrets(fixture)
    leaks = [(key, line) for line in logged["lines"] for key in keys if key in line]
    assert not leaks, leaks[:3]


def test_no_key_of_the_failing_organization_is_logged(
    logged: dict[str, Any], failing_organization: tuple[str, str, Path]
) -> None:
    keys, _ = _fixture_secrets(failing_organization[2])
    leaks = [(key, line) for line in logged["lines"] for key in keys if key in line]
    assert not leaks, leaks[:3]


def test_no_presigned_url_is_logged(logged: dict[str, Any]) -> None:
    signatures = [re.search(r"X-Amz-Signature=([0-9a-f]+)", url) for url in logged["download_urls"]]
    assert all(signatures), logged["download_urls"]
    needles = {"X-Amz-Signature", "X-Amz-Credential", "Signature="}
    needles |= {match.group(1) for match in signatures if match}
    needles |= {url.split("?")[0] for url in logged["download_urls"]}
    leaks = [(needle, line) for line in logged["lines"] for needle in needles if needle in line]
    assert not leaks, leaks[:3]


@pytest.mark.parametrize("fixture", [EXAMPLE_FIXTURE, AUTH_FIXTURE], ids=["example", "auth-cases"])
def test_no_record_data_is_logged(logged: dict[str, Any], fixture: Path) -> None:
    _, data = _fixture_secrets(fixture)
    assert "owner@acme-coffee.example" in data or fixture != EXAMPLE_FIXTURE  # the walk finds record data
    leaks = [(value, line) for line in logged["lines"] for value in data if value in line]
    assert not leaks, leaks[:3]


def test_no_data_of_the_failing_export_is_logged(
    logged: dict[str, Any], failing_organization: tuple[str, str, Path]
) -> None:
    _, data = _fixture_secrets(failing_organization[2])
    canaries = {value for value in data if "canary-" in value}
    assert len(canaries) == 4, canaries  # name, description, file name, email
    leaks = [(value, line) for line in logged["lines"] for value in canaries if value in line]
    assert not leaks, leaks[:3]
    # The client-facing error names the section and the cause, not the data either.
    error = logged["failed_job"]["error"]
    assert "products" in error and not any(value in error for value in canaries)


def test_template_never_turns_on_event_logging() -> None:
    """Powertools would log each whole API event, X-API-Key header included, with this switched on."""
    template = (ROOT / "template.yaml").read_text(encoding="utf-8")
    assert "POWERTOOLS_LOGGER_LOG_EVENT" not in template
    assert "log_event=True" not in "".join(
        path.read_text(encoding="utf-8") for path in (ROOT / "functions").rglob("*.py")
    )
