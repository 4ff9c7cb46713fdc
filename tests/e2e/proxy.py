"""The `data-export` command in a subprocess, behind a small forward proxy (`http_proxy`, which urllib
honours) that records every request, to the API and to storage's presigned URLs alike. It can also break a
transfer as a network would: hang up midway through an archive's download (test_client.py) or hold a
part's upload until told, then drop it (test_client_import.py).

The `proxy` fixture is imported by the test modules that use it, as `proxy_fixture`."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.client import BASE

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Proxy:
    """A forward proxy that records (method, url, lower-case headers) of every request and (method, url,
    status) of every answer it forwarded; it can cut archive downloads and hold a part's PUT."""

    url: str = ""
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    answered: list[tuple[str, str, int]] = field(default_factory=list)  # (method, url, status) forwarded
    cut_downloads_after: list[int] = field(default_factory=list)  # bytes sent, per storage GET, in turn
    hold_part: int | None = None  # this part's PUT is read, then held until `release` is set
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def api_calls(self, api_url: str) -> list[tuple[str, str]]:
        api = urlsplit(api_url).netloc
        return [(method, urlsplit(url).path) for method, url, _ in self.seen if urlsplit(url).netloc == api]

    def storage_gets(self, api_url: str) -> list[tuple[str, dict[str, str]]]:
        api = urlsplit(api_url).netloc
        return [(url, headers) for method, url, headers in self.seen if urlsplit(url).netloc != api]

    def storage_puts(self) -> list[tuple[str, dict[str, str]]]:
        return [(url, headers) for method, url, headers in self.seen if method == "PUT"]

    def parts_put(self) -> list[int | None]:
        """Part numbers of the PUTs to storage (None: a whole-file PUT), in the order they came."""
        numbers: list[int | None] = []
        for url, _ in self.storage_puts():
            part = parse_qs(urlsplit(url).query).get("partNumber")
            numbers.append(int(part[0]) if part else None)
        return numbers


class ProxyHandler(BaseHTTPRequestHandler):
    proxy: Proxy

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        target = urlsplit(self.path)  # a proxy is sent the absolute URL
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")
        }
        self.proxy.seen.append((self.command, self.path, {k.lower(): v for k, v in headers.items()}))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
        part = parse_qs(target.query).get("partNumber")
        if self.command == "PUT" and part and int(part[0]) == self.proxy.hold_part:
            self.proxy.held.set()
            self.proxy.release.wait(60)
            self.close_connection = True  # hang up: this PUT never reaches storage
            return
        upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=60)
        path = target.path + (f"?{target.query}" if target.query else "")
        upstream.request(self.command, path, body=body, headers=headers)
        response = upstream.getresponse()
        content = response.read()
        upstream.close()
        self.proxy.answered.append((self.command, self.path, response.status))
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        is_archive = self.command == "GET" and BASE not in target.path and response.status in (200, 206)
        if is_archive and self.proxy.cut_downloads_after:
            content = content[: self.proxy.cut_downloads_after.pop(0)]
            self.close_connection = True  # hang up before Content-Length is reached
        self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_DELETE = _forward


@pytest.fixture(name="proxy")
def proxy_fixture() -> Iterator[Proxy]:
    state = Proxy()
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Bound", (ProxyHandler,), {"proxy": state}))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


def cli_command() -> list[str]:
    """The installed `data-export` script, else the module."""
    script = Path(sys.executable).with_name("data-export")
    return [str(script)] if script.exists() else [sys.executable, "-m", "data_export_cli.main"]


def cli_environment(proxy: Proxy | None = None, **env: str) -> dict[str, str]:
    """This process's environment with `env` added, requests going through `proxy` (when given) or direct."""
    environment = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy")}
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO / "cli"), str(REPO / "layers" / "shared")])
    if proxy is not None:
        environment["http_proxy"] = proxy.url
    environment.update(env)
    return environment


def run_cli(args: list[str], proxy: Proxy | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed `data-export` (else the module), stdout and stderr captured: not a terminal."""
    return subprocess.run(
        cli_command() + args,
        capture_output=True,
        text=True,
        timeout=300,
        env=cli_environment(proxy, **env),
        check=False,
    )
