"""A local API Gateway: HTTP requests become REST API (payload 1.0) proxy events for the functions whose
`Api` events in template.yaml match the method and path, exactly as API Gateway would build them.
GET / and the other files directly inside web/ serve the "Export your data" page from the same origin."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from data_export_cli.stack import LocalStack
from data_export_cli.template import REPO_ROOT

STAGE = "local"
WEB_ROOT = REPO_ROOT / "web"
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
STATIC_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page's own <meta> policy covers scripts and styles; framing can only be refused by a header.
    "Content-Security-Policy": "frame-ancestors 'none'",
}


def static_file(web_root: Path, url_path: str) -> tuple[int, dict[str, str], bytes] | None:
    """The answer to GET `url_path` when it names a file directly inside `web_root` ("/" is index.html),
    else None. The path is taken as sent (no percent-decoding), and a name holding a slash or starting with
    a dot is never a file here, so no request reaches outside `web_root`."""
    name = "index.html" if url_path == "/" else url_path.removeprefix("/")
    content_type = STATIC_TYPES.get(Path(name).suffix.lower())
    if content_type is None or not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    file = web_root / name
    if not file.is_file():
        return None
    return 200, {"Content-Type": content_type, **STATIC_HEADERS}, file.read_bytes()


def api_event(
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    route_path: str,
    path_parameters: dict[str, str],
    query: str,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    multi_query = parse_qs(query, keep_blank_values=True)
    text_body: str | None
    is_base64 = False
    try:
        text_body = body.decode("utf-8") if body else None
    except UnicodeDecodeError:
        text_body, is_base64 = base64.b64encode(body).decode("ascii"), True
    return {
        "resource": route_path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {key: [value] for key, value in headers.items()},
        "queryStringParameters": {key: values[-1] for key, values in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": route_path,
            "httpMethod": method,
            "path": path,
            "stage": STAGE,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent", "")},
            "accountId": "123456789012",
            "apiId": "local",
        },
        "body": text_body,
        "isBase64Encoded": is_base64,
    }


def _param_names(route_path: str) -> list[str]:
    return [part[1:-1] for part in route_path.split("/") if part.startswith("{") and part.endswith("}")]


class ApiGateway:
    def __init__(self, stack: LocalStack, host: str, port: int, web_root: Path | None = WEB_ROOT) -> None:
        self.stack = stack
        self.web_root = web_root
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def start(self) -> ApiGateway:
        self._thread = threading.Thread(target=self._server.serve_forever, name="api-gateway", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def dispatch(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes, source_ip: str
    ) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(raw_path)
        if method == "GET" and self.web_root is not None:
            page = static_file(self.web_root, split.path)
            if page is not None:
                return page
        path_allowed = False
        for spec in self.stack.functions.values():
            for route in spec.routes:
                match = route.pattern.match(split.path)
                if not match:
                    continue
                path_allowed = True
                if route.method not in (method, "ANY"):
                    continue
                parameters = dict(zip(_param_names(route.path), match.groups(), strict=True))
                event = api_event(
                    method, split.path, headers, body, route.path, parameters, split.query, source_ip
                )
                response = self.stack.invoke(spec.logical_id, event)
                return _http_response(response)
        if path_allowed:
            return _json(
                405, {"error": "method_not_allowed", "message": f"{method} is not allowed on {split.path}"}
            )
        return _json(404, {"error": "not_found", "message": "No such resource"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {key: value for key, value in self.headers.items()}
                try:
                    status, out_headers, payload = gateway.dispatch(
                        self.command, self.path, headers, body, self.client_address[0]
                    )
                except Exception:  # a crashed function is API Gateway's 502, never a hung client
                    status, out_headers, payload = _json(502, {"message": "Internal server error"})
                self.send_response(status)
                for key, value in out_headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the functions log; keep the console for them

        return Handler


def _http_response(response: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    headers = {key: str(value) for key, value in (response.get("headers") or {}).items()}
    for key, values in (response.get("multiValueHeaders") or {}).items():
        headers[key] = ", ".join(str(value) for value in values)
    body = response.get("body") or ""
    payload = base64.b64decode(body) if response.get("isBase64Encoded") else str(body).encode("utf-8")
    return int(response.get("statusCode", 200)), headers, payload


def _json(status: int, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()
