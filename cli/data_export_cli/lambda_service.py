"""A local Lambda ``Invoke`` endpoint, so that moto's Step Functions engine runs our handlers in-process.

moto's engine calls Lambda through a boto3 client pointed at ``http://localhost:$MOTO_PORT`` (read at call
time), and moto's own Lambda would need Docker. So this server stands at ``MOTO_PORT``: it answers ``Invoke``
by calling a Python callable, with the status codes, headers and error body real Lambda uses (Step Functions
matches Retry/Catch ``ErrorEquals`` against the ``errorType`` of that body), and forwards every other
request unchanged to the real moto server, since anything else the engine calls there must reach moto."""

from __future__ import annotations

import http.client
import json
import logging
import re
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from data_export_cli.limits import LambdaLimitError

InvokeFunction = Callable[[str, Any], Any]  # (function name, decoded JSON payload) -> JSON-able result
# (caller's access key id or None, function name) -> may it invoke? Lambda checks lambda:InvokeFunction.
AuthorizeInvoke = Callable[[str | None, str], bool]
_ACCESS_KEY = re.compile(r"Credential=([^/,\s]+)/")

LOGGER = logging.getLogger(__name__)
_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<function>[^/]+)/invocations$")
# NAME, NAME:QUALIFIER, ACCOUNT:function:NAME[:QUALIFIER], arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUAL]
_FUNCTION_NAME = re.compile(r"^(?:(?:arn:[^:]+:lambda:[^:]*:)?[^:]+:function:)?(?P<name>[^:]+)(?::[^:]+)?$")
# Headers that describe one connection, not the message: never forwarded as they are.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",  # this server already answered "100 Continue" to the client
    }
)
_CHUNK = 64 * 1024
_UPSTREAM_TIMEOUT = 900.0  # Lambda's maximum run time: a proxied call never waits forever


class FunctionNotFoundError(LookupError):
    """Raised by an ``InvokeFunction`` for a name it does not know: answered as Lambda's 404."""


def function_name(function: str) -> str:
    """The bare function name from the ``FunctionName`` forms Lambda accepts (name, ARN, with qualifier)."""
    match = _FUNCTION_NAME.match(function)
    return match.group("name") if match else function


def enable_stepfunctions_execution(moto_endpoint: str) -> None:
    """Turn on moto's ASL interpreter, so that executions really run their states."""
    _post_json(
        f"{moto_endpoint.rstrip('/')}/moto-api/config", {"stepfunctions": {"execute_state_machine": True}}
    )


class LambdaService:
    def __init__(
        self,
        invoke: InvokeFunction,
        moto_endpoint: str,
        host: str = "127.0.0.1",
        port: int = 0,
        authorize: AuthorizeInvoke | None = None,
        max_payload_bytes: int | None = None,
    ) -> None:
        self._invoke = invoke
        self._authorize = authorize
        self._max_payload_bytes = max_payload_bytes  # a bigger request is refused (413), as Lambda does
        upstream = urlsplit(moto_endpoint)
        if upstream.scheme != "http" or not upstream.hostname:
            raise ValueError(f"moto endpoint must be an http:// URL, not {moto_endpoint!r}")
        self._upstream = (upstream.hostname, upstream.port or 80)
        self._server = _Server((host, port), self._handler_class())
        # Map states invoke in parallel, and a handler may run for minutes: one thread per connection.
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{self.port}"

    def start(self) -> LambdaService:
        # A short poll interval: stop() waits for the serving loop to notice, up to that long.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="lambda-service", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> LambdaService:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- Invoke ------------------------------------------------------------------------------------
    def invoke(
        self,
        function: str,
        payload: bytes,
        invocation_type: str = "RequestResponse",
        access_key_id: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """Lambda's answer to an ``Invoke`` call: (status, headers, body). The callable raises
        ``LambdaLimitError`` for what Lambda refuses (throttling: 429 TooManyRequestsException); an exception
        with an ``error_type`` (a timeout: Sandbox.Timedout) is the function error of that type."""
        request_id = str(uuid.uuid4())
        headers = {"Content-Type": "application/json", "x-amzn-RequestId": request_id}
        name = function_name(function)
        if self._authorize is not None and not self._authorize(access_key_id, name):
            return _error(
                403,
                "AccessDeniedException",
                f"User is not authorized to perform: lambda:InvokeFunction on resource: {function}",
            )
        if self._max_payload_bytes is not None and len(payload) > self._max_payload_bytes:
            return _error(
                413,
                "RequestEntityTooLargeException",
                f"Request must be smaller than {self._max_payload_bytes} bytes "
                "for the InvokeFunction operation",
            )
        try:
            event = json.loads(payload) if payload.strip() else {}
        except ValueError as exc:
            return _error(
                400, "InvalidRequestContentException", f"Could not parse request body into json: {exc}"
            )
        if invocation_type == "DryRun":
            return 204, headers, b""
        if invocation_type == "Event":
            threading.Thread(
                target=self._run_event, args=(name, event), name=f"lambda-event-{name}", daemon=True
            ).start()
            return 202, headers, b""
        headers["X-Amz-Executed-Version"] = "$LATEST"
        try:
            result = self._invoke(name, event)
        except FunctionNotFoundError:
            return _error(404, "ResourceNotFoundException", f"Function not found: {function}")
        except LambdaLimitError as exc:
            return _error(exc.status, exc.error_type, str(exc), exc.body)
        except Exception as exc:  # the function's failure is the caller's data, never this server's
            headers["X-Amz-Function-Error"] = "Unhandled"
            return 200, headers, _json_bytes(_error_body(exc, request_id, skip_frames=1))
        try:
            return 200, headers, _json_bytes(result)
        except (TypeError, ValueError) as exc:
            headers["X-Amz-Function-Error"] = "Unhandled"
            body = {
                "errorMessage": f"Unable to marshal response: {exc}",
                "errorType": "Runtime.MarshalError",
                "requestId": request_id,
                "stackTrace": [],
            }
            return 200, headers, _json_bytes(body)

    def _run_event(self, name: str, event: Any) -> None:
        try:
            self._invoke(name, event)
        # An asynchronous invocation has no caller to answer: log it, as Lambda does (a throttled one too:
        # Lambda's retries of asynchronous events are not emulated).
        except Exception:
            LOGGER.exception("Asynchronous invocation of %s failed", name)

    # -- HTTP --------------------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                match = _INVOKE_PATH.match(urlsplit(self.path).path)
                if self.command == "POST" and match:
                    self._serve_invoke(unquote(match.group("function")))
                else:
                    self._forward()

            def _serve_invoke(self, function: str) -> None:
                body = b"".join(_request_body(self))
                invocation_type = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
                signed = _ACCESS_KEY.search(self.headers.get("Authorization") or "")
                status, headers, payload = service.invoke(
                    function, body, invocation_type, signed.group(1) if signed else None
                )
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _forward(self) -> None:
                upstream = http.client.HTTPConnection(*service._upstream, timeout=_UPSTREAM_TIMEOUT)
                try:
                    response = self._send_upstream(upstream)
                except (OSError, http.client.HTTPException) as exc:
                    self.send_error(502, f"moto did not answer: {exc}")
                    return
                try:
                    self._send_back(response)
                finally:
                    upstream.close()

            def _send_upstream(self, upstream: http.client.HTTPConnection) -> http.client.HTTPResponse:
                # Host and Accept-Encoding stay as the client sent them: moto builds URLs from Host.
                upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for key, value in self.headers.items():
                    if key.lower() not in _HOP_BY_HOP:
                        upstream.putheader(key, value)
                length = self.headers.get("Content-Length")
                chunked = length is None and _is_chunked(self.headers.get("Transfer-Encoding"))
                if chunked:
                    upstream.putheader("Transfer-Encoding", "chunked")
                upstream.endheaders()
                for chunk in _request_body(self):
                    upstream.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                if chunked:
                    upstream.send(b"0\r\n\r\n")
                return upstream.getresponse()

            def _send_back(self, response: http.client.HTTPResponse) -> None:
                self.send_response_only(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                has_body = self.command != "HEAD" and response.status not in (204, 304)
                # http.client has undone moto's chunking; without a length, chunk again towards the client.
                rechunk = has_body and response.getheader("Content-Length") is None
                if rechunk:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                while has_body and (chunk := response.read1(_CHUNK)):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if rechunk else chunk)
                if rechunk:
                    self.wfile.write(b"0\r\n\r\n")

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the functions log; keep the console for them

        return Handler


class _Server(ThreadingHTTPServer):
    # Map states open many connections at once (16 per execution, and every throttled retry anew): a
    # deeper accept queue than socketserver's 5, so that a burst is never refused.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request this server failed on (its connection is closed unanswered): logged, not printed."""
        LOGGER.exception("The Lambda service failed on a request from %s", client_address)


def _request_body(handler: BaseHTTPRequestHandler) -> Iterator[bytes]:
    """The request body in pieces, by Content-Length or by HTTP/1.1 chunks."""
    length = handler.headers.get("Content-Length")
    if length is not None:
        remaining = int(length)
        while remaining > 0:
            chunk = handler.rfile.read(min(remaining, _CHUNK))
            if not chunk:
                raise ConnectionError("client closed the connection mid-body")
            remaining -= len(chunk)
            yield chunk
        return
    if not _is_chunked(handler.headers.get("Transfer-Encoding")):
        return
    while size := int(handler.rfile.readline().split(b";", 1)[0].strip() or b"0", 16):
        yield handler.rfile.read(size)
        handler.rfile.readline()  # the CRLF closing the chunk
    while handler.rfile.readline().strip():  # trailers, up to the blank line
        pass


def _is_chunked(transfer_encoding: str | None) -> bool:
    return bool(transfer_encoding) and "chunked" in str(transfer_encoding).lower()


def _error_body(exc: BaseException, request_id: str, skip_frames: int) -> dict[str, Any]:
    """The body the Python Lambda runtime writes for an unhandled exception."""
    frames = traceback.extract_tb(exc.__traceback__)[skip_frames:]  # skip this server's own frame
    return {
        "errorMessage": str(exc),
        "errorType": str(getattr(exc, "error_type", None) or type(exc).__name__),
        "requestId": request_id,
        "stackTrace": traceback.format_list(frames),
    }


def _error(
    status: int, error_type: str, message: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, str], bytes]:
    headers = {
        "Content-Type": "application/json",
        "x-amzn-ErrorType": error_type,
        "x-amzn-RequestId": str(uuid.uuid4()),
    }
    return status, headers, _json_bytes(body or {"Type": "User", "message": message})


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, allow_nan=False).encode("utf-8")


def _post_json(url: str, body: Any) -> Any:
    target = urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname or "localhost", target.port or 80, timeout=30)
    try:
        connection.request("POST", target.path, _json_bytes(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"POST {url} answered {response.status}: {data[:500]!r}")
        return json.loads(data) if data else None
    finally:
        connection.close()
