"""The "Export your data" page (web/index.html) as the local gateway serves it, driven in headless Chromium
over the Chrome DevTools Protocol: a person's export from start to a downloaded archive, an API error shown
as the API worded it, and the static file serving beside the API routes."""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from data_export.ids import new_id

from tests.archive_checks import ACME, SECTIONS
from tests.e2e.client import BASE, call
from tests.security.helpers import new_key, organization, seed

WEB_PAGE = Path(__file__).resolve().parents[2] / "web" / "index.html"
ACME_KEY = "csb_uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo_b5b88299"
BAD_KEY = "csb_thisKeyDoesNotExistAnywhere00000_00000000"
EXPORT_DEADLINE_S = 300  # generous: the whole suite may share a loaded machine


# --- a minimal RFC 6455 client: text frames out (masked), text frames in, enough for CDP --------------


class WebSocket:
    def __init__(self, url: str, timeout: float = 60) -> None:
        parts = urllib.parse.urlsplit(url)
        assert parts.scheme == "ws" and parts.hostname and parts.port
        self._socket = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self._socket.sendall(
            (
                f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self._recv_some()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _recv_some(self) -> bytes:
        chunk = self._socket.recv(65536)
        if not chunk:
            raise ConnectionError("DevTools closed the connection")
        return chunk

    def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._buffer += self._recv_some()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self._socket.sendall(header + mask + masked)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._read(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._read(8))
            mask = self._read(4) if second & 0x80 else b""
            payload = self._read(length)
            if mask:
                payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode in (0x0, 0x1):
                message += payload
                if first & 0x80:
                    return message.decode()

    def close(self) -> None:
        self._socket.close()


class Page:
    """One browser tab over CDP: commands answered by id, events kept until asked for."""

    def __init__(self, websocket_url: str) -> None:
        self._websocket = WebSocket(websocket_url)
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def command(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        self._websocket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._websocket.receive())
            if "id" not in message:
                self._events.append(message)
            elif message["id"] == self._next_id:
                assert "error" not in message, message
                return dict(message["result"])

    def event(self, method: str) -> dict[str, Any]:
        """The params of the next `method` event (the websocket's timeout bounds the wait)."""
        while True:
            for index, message in enumerate(self._events):
                if message["method"] == method:
                    return dict(self._events.pop(index)["params"])
            self._events.append(json.loads(self._websocket.receive()))

    def evaluate(self, expression: str) -> Any:
        result = self.command(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.command("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'", 30)

    def fulfill(self, request_id: str, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Answer a request that ``Fetch`` paused, from the browser itself: ``body`` as JSON (bytes: as XML,
        as storage would), with ``headers`` after its Content-Type."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        content_type = "application/xml" if isinstance(body, bytes) else "application/json"
        self.command(
            "Fetch.fulfillRequest",
            requestId=request_id,
            responseCode=status,
            responseHeaders=[
                {"name": "Content-Type", "value": content_type},
                *({"name": name, "value": value} for name, value in (headers or {}).items()),
            ],
            body=base64.b64encode(data).decode(),
        )

    def wait_for(self, expression: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            assert time.monotonic() < deadline, f"still false after {timeout} s: {expression}"
            time.sleep(0.2)
        return value

    def close(self) -> None:
        self._websocket.close()


class Chromium:
    """Headless Chromium in its own process group and throw-away profile, killed whole on close."""

    def __init__(self, executable: str) -> None:
        self._profile = tempfile.mkdtemp(prefix="web-page-chromium-")
        self._log = Path(self._profile) / "stderr.log"
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    executable,
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--remote-debugging-address=127.0.0.1",
                    "--remote-debugging-port=0",
                    f"--user-data-dir={self._profile}",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        try:
            self.devtools = self._devtools_address()
        except BaseException:
            self.close()
            raise

    def _devtools_address(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self._log.read_text(errors="replace").splitlines():
                if line.startswith("DevTools listening on ws://"):
                    return urllib.parse.urlsplit(line.split(" on ", 1)[1]).netloc
            if self._process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"Chromium gave no DevTools address:\n{self._log.read_text(errors='replace')}")

    def new_page(self) -> tuple[Page, str]:
        request = urllib.request.Request(f"http://{self.devtools}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(request, timeout=30) as response:
            target = json.load(response)
        page = Page(target["webSocketDebuggerUrl"])
        page.command("Page.enable")
        # Injected by DevTools, so it runs whatever the page's policy: records any blocked script or style.
        page.command(
            "Page.addScriptToEvaluateOnNewDocument",
            source="window.__cspViolations = []; document.addEventListener('securitypolicyviolation',"
            " (e) => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));",
        )
        return page, str(target["id"])

    def close_page(self, page: Page, target_id: str) -> None:
        page.close()
        with urllib.request.urlopen(f"http://{self.devtools}/json/close/{target_id}", timeout=30):
            pass

    def close(self) -> None:
        """SIGTERM to the whole group, SIGKILL to whatever is left. The leader is reaped only at the end: a
        zombie leader keeps the group's id from being reused by an unrelated process meanwhile."""
        try:
            self._signal_group(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not self._leader_exited():
                time.sleep(0.05)
            self._signal_group(signal.SIGKILL)
            self._process.wait(timeout=30)
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signum)

    def _leader_exited(self) -> bool:
        if self._process.returncode is not None:  # already reaped (it died while starting)
            return True
        return os.waitid(os.P_PID, self._process.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None


# Named so that other modules can import them (test_web_restore.py) without shadowing their parameters.
@pytest.fixture(scope="module", name="chromium")
def chromium_fixture() -> Iterator[Chromium]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    browser = Chromium(executable)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(name="page")
def page_fixture(chromium: Chromium) -> Iterator[Page]:
    """A fresh tab per test: its own sessionStorage, so no key or watched job carries over."""
    tab, target_id = chromium.new_page()
    try:
        yield tab
    finally:
        chromium.close_page(tab, target_id)


def fill_in(page: Page, api_key: str, then: str) -> None:
    """What a person does on the page, in one go: types the API key (the field's input event fires), then
    whatever the JavaScript ``then`` does (the choices, the button)."""
    page.evaluate(
        f"""(() => {{
            const input = document.getElementById("key");
            input.value = {json.dumps(api_key)};
            input.dispatchEvent(new Event("input", {{bubbles: true}}));
            {then}
        }})()"""
    )


def fill_and_start(page: Page, api_key: str, archive_format: str) -> None:
    fill_in(
        page,
        api_key,
        f"""document.querySelector('input[name="format"][value={json.dumps(archive_format)}]').click();
            document.getElementById("start").click();""",
    )


SHOWN_ERROR = "document.getElementById('error').hidden ? '' : document.getElementById('error').textContent"
PAGE_STATE = """(() => ({
    status: document.getElementById("job").dataset.status || null,
    error: document.getElementById("error").hidden ? null : document.getElementById("error").textContent,
    summary: document.getElementById("job-summary").textContent,
    progress: document.getElementById("progress").value,
    href: document.getElementById("download").getAttribute("href"),
    sections: [...document.querySelectorAll("#sections tbody tr")].map((row) => ({
        key: row.dataset.section,
        status: row.dataset.status,
        records: row.querySelector(".records").textContent,
        binaries: row.querySelector(".binaries").textContent,
    })),
    history: [...document.querySelectorAll("#history-rows tr")].map((row) => row.dataset.jobId),
    violations: window.__cspViolations,
}))()"""


def example_counts(example: Any) -> dict[str, tuple[str, int, int]]:
    """Per section: completed, records, and binaries present in the source (missing assets excluded)."""
    acme = next(org for org in example.organizations if org.id == ACME)
    counts = {}
    for section in SECTIONS:
        records = [acme.organization] if section == "organization" else getattr(acme, section)
        binaries = 0
        for record in records:
            for field in ("logo", "images", "documents"):
                value = getattr(record, field, None)
                for binary in value if isinstance(value, list) else [value] if value else []:
                    binaries += not binary.missing
        counts[section] = ("completed", len(records), binaries)
    return counts


def as_int(text: str) -> int:
    return int(text.replace(",", "").replace("\u202f", "").replace("\xa0", ""))


def test_a_person_exports_and_downloads_from_the_page(page: Page, api_url: str, example: Any) -> None:
    page.open(f"{api_url}/?org={ACME}")
    assert page.evaluate("document.getElementById('org').value") == ACME
    assert page.evaluate("document.getElementById('api').value") == api_url

    fill_and_start(page, ACME_KEY, "zip")
    deadline = time.monotonic() + EXPORT_DEADLINE_S
    seen: list[str] = []
    while True:
        state = page.evaluate(PAGE_STATE)
        assert state["error"] is None, state["error"]
        if state["status"] and (not seen or seen[-1] != state["status"]):
            seen.append(state["status"])
        if state["status"] in ("completed", "failed") and state["href"]:
            break
        assert state["status"] != "failed", state["summary"]
        assert time.monotonic() < deadline, f"page still shows {state}"
        time.sleep(0.25)

    assert state["status"] == "completed", state["summary"]
    assert seen[0] in ("pending", "processing")
    assert state["progress"] == 100
    shown = {
        row["key"]: (row["status"], as_int(row["records"]), as_int(row["binaries"]))
        for row in state["sections"]
    }
    assert shown == example_counts(example)
    assert state["violations"] == []
    job_id = page.evaluate("document.getElementById('job-id').textContent")
    listed = f"document.querySelector('#history-rows tr[data-job-id={json.dumps(job_id)}]') !== null"
    page.wait_for(listed, 30)  # the recent exports list shows it too

    # The link is the job's signed URL: a browser can follow it without the API key.
    with urllib.request.urlopen(state["href"], timeout=60) as response:
        archive = response.read()
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        assert opened.testzip() is None
        names = opened.namelist()
    assert any(name.endswith("/manifest.yaml") for name in names)
    assert any("/products/" in name for name in names)

    # The key stays out of the address bar and out of storage that outlives the tab.
    assert ACME_KEY not in page.evaluate("location.href")
    assert page.evaluate("localStorage.length") == 0


def answer_rate_limited(page: Page, request_id: str, retry_after: int) -> None:
    """The paused request answered as the API's own per-key limit answers: 429, wait ``retry_after`` s."""
    body = {"error": "rate_limited", "message": "Too many requests for this key."}
    page.fulfill(request_id, 429, body, {"Retry-After": str(retry_after)})


def test_a_rate_limited_poll_waits_as_told_then_goes_on(page: Page, api_url: str) -> None:
    page.open(f"{api_url}/?org={ACME}")
    # The browser itself answers the first poll with a 429 (the start request has no "/" after the org);
    # Retry-After 5 s, not the page's own first back-off of 3 s.
    page.command("Fetch.enable", patterns=[{"urlPattern": f"{api_url}{BASE}/{ACME}/*"}])
    fill_and_start(page, ACME_KEY, "zip")
    paused = page.event("Fetch.requestPaused")
    assert paused["request"]["method"] == "GET"
    answer_rate_limited(page, paused["requestId"], retry_after=5)
    page.command("Fetch.disable")
    shown = page.wait_for(
        "document.getElementById('error').hidden ? '' : document.getElementById('error').textContent", 30
    )
    assert "Too many requests for this key. Checking again in 5 s." in shown and "rate_limited" in shown

    page.wait_for("document.getElementById('job').dataset.status === 'completed'", EXPORT_DEADLINE_S)
    assert page.evaluate("document.getElementById('error').hidden") is True
    assert page.evaluate("document.getElementById('download').getAttribute('href')").startswith("http")


class ScriptedApi:
    """Answers every API request of the page from the browser itself (DevTools ``Fetch``): the start and
    the recent-exports list with a running job, each poll as the test says; times the page's waits."""

    def __init__(self, page: Page, api_url: str) -> None:
        self.page = page
        self.job = {"job_id": new_id(), "status": "processing", "archive_format": "zip", "sections": []}
        self.answered_at = time.monotonic()
        page.command("Fetch.enable", patterns=[{"urlPattern": f"{api_url}{BASE}/*"}])

    def next_poll(self, status: int, body: dict[str, Any] | None = None, **headers: str) -> float:
        """Wait for the page's next poll (answering a start or list request meanwhile) and answer it with
        ``status``, ``body`` and ``headers``. Returns the seconds since the previous poll was answered."""
        while True:
            paused = self.page.event("Fetch.requestPaused")
            waited = time.monotonic() - self.answered_at
            request = paused["request"]
            if request["method"] == "POST":
                self.page.fulfill(paused["requestId"], 200, self.job)
                self.answered_at = time.monotonic()
            elif "?" in request["url"]:  # the recent-exports list
                self.page.fulfill(paused["requestId"], 200, {"exports": [self.job]})
            else:
                assert request["url"].endswith(self.job["job_id"]), request["url"]
                self.page.fulfill(paused["requestId"], status, body or self.job, headers)
                self.answered_at = time.monotonic()
                return waited

    def no_poll_within(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.page.command("Runtime.evaluate", expression="0")  # collects the events sent meanwhile
            paused = [event for event in self.page._events if event["method"] == "Fetch.requestPaused"]
            assert not paused, f"the page asked again within {seconds} s: {paused}"
            time.sleep(0.2)


def test_polling_honours_retry_after_on_429_and_503_however_long(page: Page, api_url: str) -> None:
    """The page's polls under throttling, timed: Retry-After as sent on a 429 and on a 503 (not the page's
    own back-off, and not cut to 2 minutes), a jittered back-off when a 429 has none (API Gateway's own)."""
    page.open(f"{api_url}/?org={ACME}")
    api = ScriptedApi(page, api_url)

    def shows(message: str) -> None:
        page.wait_for(f"({SHOWN_ERROR}).includes({json.dumps(message)})", 10)

    fill_and_start(page, ACME_KEY, "zip")
    assert 1.2 <= api.next_poll(200) <= 3.5  # polling every 1.5 s

    # API Gateway's stage throttle answers 429 with no Retry-After: the page's back-off, 3 s jittered.
    api.next_poll(429, {"message": "Too Many Requests"})
    waited = api.next_poll(429, {"error": "rate_limited", "message": "Slow down."}, **{"Retry-After": "4"})
    assert 1.4 <= waited <= 3.6, waited
    shows("Slow down. Checking again in 4 s.")

    # The API's 429 said 4 s: not sooner.
    waited = api.next_poll(503, {"error": "service_unavailable", "message": "Busy."}, **{"Retry-After": "2"})
    assert waited >= 3.9, waited
    shows("Busy. Checking again in 2 s.")

    # A 503's Retry-After is honoured too (the page's own back-off would by now be 6 to 12 s).
    quota = {"error": "rate_limited", "message": "Daily quota used."}
    waited = api.next_poll(429, quota, **{"Retry-After": "600"})
    assert 1.9 <= waited <= 4.5, waited

    # A long Retry-After (a used-up quota) is waited out as sent, not cut to 2 minutes.
    shows("Daily quota used. Checking again in 10 min. (rate_limited, HTTP 429)")
    api.no_poll_within(3)
    assert page.evaluate("document.getElementById('job').dataset.status") == "processing"


def test_a_bad_key_shows_the_apis_message(page: Page, api_url: str) -> None:
    expected = call("POST", f"{api_url}{BASE}/{ACME}?archive_format=zip", BAD_KEY)
    assert expected.status == 401
    message = expected.json()["message"]

    page.open(f"{api_url}/?org={ACME}")
    fill_and_start(page, BAD_KEY, "zip")
    shown = page.wait_for(
        "document.getElementById('error').hidden ? '' : document.getElementById('error').textContent", 30
    )
    assert message in shown and "unauthorized" in shown
    assert page.evaluate("document.getElementById('job').hidden") is True
    assert page.evaluate("window.__cspViolations") == []


# --- the gateway's static files, over HTTP ------------------------------------------------------------


def raw_get(api_url: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET with the path sent exactly as written (urllib would not send some of these)."""
    parts = urllib.parse.urlsplit(api_url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("path", ["/", "/index.html", "/?org=abc&api=http://x"])
def test_the_page_is_served_uncached(api_url: str, path: str) -> None:
    status, headers, body = raw_get(api_url, path)
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert body == WEB_PAGE.read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/../template.yaml",
        "/..%2ftemplate.yaml",
        "/%2e%2e/template.yaml",
        "/web/index.html",
        "/./index.html",
        "/.git/config",
        "/..",
        "/index.html/",
    ],
)
def test_nothing_outside_the_page_is_served(api_url: str, path: str) -> None:
    status, headers, body = raw_get(api_url, path)
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"] == "not_found"


def test_the_api_routes_answer_as_before(api_url: str) -> None:
    reply = call("GET", f"{api_url}{BASE}/{ACME}/{'x' * 22}")
    assert reply.status == 401 and reply.json()["error"] == "unauthorized"
    posted = call("POST", f"{api_url}/")
    assert posted.status == 404 and posted.json()["error"] == "not_found"


def test_a_person_deletes_a_finished_archive_from_the_page(
    page: Page, api_url: str, stack: Any, tmp_path: Path
) -> None:
    key = new_key()
    fixture = organization("Page delete", key)
    seed(stack, tmp_path, fixture)
    organization_id = fixture["organization"]["id"]
    page.open(f"{api_url}/?org={organization_id}")
    fill_and_start(page, key, "tar.gz")
    page.wait_for(
        "document.getElementById('job').dataset.status === 'completed'"
        " && !!document.getElementById('download').getAttribute('href')",
        EXPORT_DEADLINE_S,
    )
    job_id = page.evaluate("document.getElementById('job-id').textContent")
    assert page.evaluate("document.getElementById('cancel').textContent") == "Delete the archive"

    page.evaluate("document.getElementById('cancel').click()")
    page.wait_for("document.getElementById('job-summary').textContent.includes('deleted')", 60)
    assert page.evaluate("document.getElementById('cancel').hidden") is True
    assert page.evaluate("document.getElementById('download-area').hidden") is True
    job = call("GET", f"{api_url}{BASE}/{organization_id}/{job_id}", key).json()
    assert (job["status"], job["error_code"], job["download_url"]) == ("completed", "archive_deleted", None)
