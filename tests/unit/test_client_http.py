"""The client's HTTP behaviour against a tiny local server standing in for the API and S3: retries that
honour Retry-After, the API's error sentence, the /download redirect followed without the key, and a
download cut mid-way that resumes with a Range request on a fresh URL."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from data_export_cli.client import (
    BASE_PATH,
    ClientError,
    Display,
    ExportApi,
    download_archive,
    part_path,
)
from data_export_cli.main import main

KEY = "csb_test_key"
ARCHIVE = hashlib.sha256(b"seed").digest() * 40_000  # 1.28 MB


@dataclass
class Fake:
    """What the fake server answers, and what it was asked."""

    url: str = ""
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # header names lower-case
    replies: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)  # API answers, in turn
    cut_after: list[int] = field(default_factory=list)  # per storage request: bytes sent before hanging up
    signed: int = 0


class Handler(BaseHTTPRequestHandler):
    fake: Fake

    def log_message(self, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        fake = self.fake
        fake.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.path.startswith("/storage/"):
            self._storage()
        elif self.path.endswith("/download"):
            fake.signed += 1
            self.send_response(302)
            self.send_header("Location", f"{fake.url}/storage/archive?signature={fake.signed}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            # The last reply repeats: a job that stays where it is.
            status, headers, body = fake.replies.pop(0) if len(fake.replies) > 1 else fake.replies[0]
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def _storage(self) -> None:
        start = 0
        if (wanted := self.headers.get("Range")) is not None:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(ARCHIVE) - 1}/{len(ARCHIVE)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(ARCHIVE) - start))
        self.end_headers()
        body = ARCHIVE[start:]
        if self.fake.cut_after:
            body = body[: self.fake.cut_after.pop(0)]
            self.close_connection = True  # hang up before Content-Length is reached
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _handle


@pytest.fixture
def fake() -> Iterator[Fake]:
    state = Fake()
    handler = type("BoundHandler", (Handler,), {"fake": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def api(fake: Fake, waits: list[float], jitter: float = 1.0) -> ExportApi:
    """A client that records its waits instead of sleeping; ``jitter`` 1.0 waits the whole backoff."""
    return ExportApi(fake.url, KEY, sleep=waits.append, jitter=lambda: jitter)


def json_reply(status: int, body: dict[str, Any], **headers: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(body).encode()


def test_429_and_503_are_retried_after_the_time_the_server_asks(fake: Fake) -> None:
    fake.replies = [
        json_reply(429, {"error": "rate_limited", "message": "slow down"}, **{"Retry-After": "7"}),
        json_reply(503, {"error": "unavailable", "message": "busy"}),
        json_reply(200, {"job_id": "j1", "status": "pending"}),
    ]
    waits: list[float] = []
    job = api(fake, waits).start_export("org1", "tar.gz", idempotency_key="k-1")
    assert job == {"job_id": "j1", "status": "pending"}
    assert waits == [7.0, 1.0]  # Retry-After, then the client's own backoff
    method, path, headers = fake.requests[0]
    assert (method, path) == ("POST", f"{BASE_PATH}/org1?archive_format=tar.gz")
    assert headers["x-api-key"] == KEY and headers["idempotency-key"] == "k-1"


def test_a_throttle_without_retry_after_is_retried_after_a_jittered_backoff(fake: Fake) -> None:
    """API Gateway's own 429 carries no Retry-After: clients throttled together must not retry together."""
    throttled = (429, {"Content-Type": "application/json"}, b'{"message":"Too Many Requests"}')
    ok = json_reply(200, {"job_id": "j1", "status": "pending"})
    waits_by_jitter = {}
    for jitter in (0.0, 0.5, 1.0):
        fake.replies = [throttled, throttled, throttled, ok]
        waits: list[float] = []
        assert api(fake, waits, jitter).get_export("org1", "j1")["job_id"] == "j1"
        waits_by_jitter[jitter] = waits
    assert waits_by_jitter[1.0] == [0.5, 1.0, 2.0]  # the whole backoff
    assert waits_by_jitter[0.0] == [0.25, 0.5, 1.0]  # half of it
    assert waits_by_jitter[0.5] == [0.375, 0.75, 1.5]


def test_a_wait_longer_than_reasonable_is_reported_not_waited(fake: Fake) -> None:
    fake.replies = [
        json_reply(429, {"error": "rate_limited", "message": "daily quota used"}, **{"Retry-After": "40000"})
    ]
    waits: list[float] = []
    with pytest.raises(ClientError, match=r"^daily quota used \(HTTP 429 rate_limited\)$"):
        api(fake, waits).get_export("org1", "j1")
    assert waits == []


def test_an_error_carries_the_api_message(fake: Fake) -> None:
    fake.replies = [json_reply(401, {"error": "unauthorized", "message": "The API key is not valid"})]
    with pytest.raises(ClientError, match=r"^The API key is not valid \(HTTP 401 unauthorized\)$"):
        api(fake, []).get_export("org1", "j1")


def test_a_body_that_is_not_json_is_quoted(fake: Fake) -> None:
    fake.replies = [(502, {"Content-Type": "text/html"}, b"<html>\n Bad   gateway </html>")]
    with pytest.raises(ClientError, match=r"answered: <html> Bad gateway </html> \(HTTP 502 error\)"):
        api(fake, []).get_export("org1", "j1")


def test_nobody_listening_fails_at_once(fake: Fake) -> None:
    waits: list[float] = []
    closed = ExportApi("http://127.0.0.1:9", KEY, sleep=waits.append)
    with pytest.raises(ClientError, match=r"cannot reach http://127\.0\.0\.1:9"):
        closed.get_export("org1", "j1")
    assert waits == []


def test_download_location_is_not_followed(fake: Fake) -> None:
    location = api(fake, []).download_location("org1", "j1")
    assert location == f"{fake.url}/storage/archive?signature=1"
    assert [path for _, path, _ in fake.requests] == [f"{BASE_PATH}/org1/j1/download"]


def completed_job() -> dict[str, Any]:
    return {"job_id": "j1", "file_size_bytes": len(ARCHIVE)}


def test_a_cut_download_resumes_with_range_on_a_fresh_url(fake: Fake, tmp_path: Path) -> None:
    fake.cut_after = [300_000, 500_000]  # two hang-ups, then the rest
    waits: list[float] = []
    out = io.StringIO()
    target = tmp_path / "archive.zip"
    sha256 = download_archive(
        api(fake, waits), "org1", completed_job(), target, Display(out, interactive=False), sleep=waits.append
    )
    assert sha256 == hashlib.sha256(ARCHIVE).hexdigest()
    assert part_path(target).read_bytes() == ARCHIVE
    storage = [(path, headers) for _, path, headers in fake.requests if path.startswith("/storage/")]
    assert [(path, headers.get("range")) for path, headers in storage] == [
        ("/storage/archive?signature=1", None),
        ("/storage/archive?signature=2", "bytes=300000-"),
        ("/storage/archive?signature=3", "bytes=800000-"),
    ]
    assert all("x-api-key" not in headers for _, headers in storage)  # the key never goes to storage
    assert "resuming from byte 300000 with a fresh URL" in out.getvalue()


def test_a_part_file_from_an_earlier_run_is_continued(fake: Fake, tmp_path: Path) -> None:
    target = tmp_path / "archive.zip"
    part_path(target).write_bytes(ARCHIVE[:123_456])
    out = io.StringIO()
    sha256 = download_archive(api(fake, []), "org1", completed_job(), target, Display(out, interactive=False))
    assert sha256 == hashlib.sha256(ARCHIVE).hexdigest()
    assert [h.get("range") for _, p, h in fake.requests if p.startswith("/storage/")] == ["bytes=123456-"]
    assert "resuming the download" in out.getvalue()


def test_a_download_that_keeps_failing_keeps_the_part_file(fake: Fake, tmp_path: Path) -> None:
    fake.cut_after = [1000] * 10
    target = tmp_path / "archive.zip"
    with pytest.raises(ClientError, match=r"after 6 attempts; .*archive\.zip\.part is kept"):
        download_archive(
            api(fake, []),
            "org1",
            completed_job(),
            target,
            Display(io.StringIO(), False),
            sleep=lambda _: None,
        )
    assert part_path(target).read_bytes() == ARCHIVE[:6000]


def job_body(status: str, **extra: Any) -> dict[str, Any]:
    sections = [{"key": "members", "status": status, "record_count": 0, "binary_count": 0, "error": None}]
    return {"job_id": "j1", "status": status, "archive_format": "zip", "sections": sections, **extra}


def test_a_failed_export_exits_with_its_error(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    fake.replies = [
        json_reply(200, job_body("pending")),
        json_reply(200, job_body("failed", error="members: the store timed out", error_code="export_failed")),
    ]
    assert main(["export", "org1", "--endpoint", fake.url, "--api-key", KEY]) == 1
    assert capsys.readouterr().err == "data-export: error: export j1 failed: members: the store timed out\n"


def test_ctrl_c_says_how_to_resume(fake: Fake, tmp_path: Path) -> None:
    fake.replies = [json_reply(200, job_body("pending"))]  # pending for ever
    cli = Path(__file__).resolve().parents[2] / "cli"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "data_export_cli.main",
            "export",
            "org1",
            "-o",
            str(tmp_path),
            "--endpoint",
            fake.url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(cli), "DATA_EXPORT_API_KEY": KEY},
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "export j1 requested (zip): pending\n"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert err.strip() == (
        "interrupted. The export continues on the server. Resume with: "
        f"data-export export org1 --job j1 -o {tmp_path} --endpoint {fake.url}."
    )
    assert KEY not in err
