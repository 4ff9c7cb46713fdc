"""The HTTP face shared by the API functions: the resolver, error bodies, the auth and rate-limit step,
and the audit log.

This is the adapter between API Gateway events (through Powertools' event handler) and the domain.

Audit lines are Powertools log lines with the message ``audit`` and an ``audit`` object: ``event``,
``outcome`` (allowed/refused), ``status``, ``organization_id``, ``job_id``, ``key_id`` and, for refusals,
``error``. They carry ids only: never the raw key, its hash, a presigned URL or record data."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse, OpenAPIResponseHeader

from data_export import wiring
from data_export.auth import Principal, authenticate, authorize_export, check_key_format
from data_export.errors import DataExportError, InvalidRequestError, ServiceUnavailableError
from data_export.ids import ALPHABET, is_valid_id
from data_export.models import ErrorResponse, ExportJobList, ExportJobResponse

if TYPE_CHECKING:
    from pydantic import BaseModel

    from data_export.ratelimit import RateLimitDecision

logger = Logger(child=True)

API_KEY_HEADER = "X-API-Key"
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
BASE_PATH = "/dashboard/api/v1/data-export"
IMPORT_BASE_PATH = "/dashboard/api/v1/data-import"
ID_DESCRIPTION = f"22-character shortuuid (alphabet {ALPHABET})"

_SECONDS: dict[str, Any] = {"type": "string", "pattern": "^[0-9]+$"}
# On every answer to an authenticated caller (requests refused before authentication are not counted).
RATE_LIMIT_HEADERS: dict[str, OpenAPIResponseHeader] = {
    "RateLimit-Policy": {
        "description": 'Every window of the key: \'"minute";q=300;w=60, "day";q=10000;w=86400\'',
        "schema": {"type": "string"},
    },
    "RateLimit-Limit": {"description": "Quota of the window closest to running out", "schema": _SECONDS},
    "RateLimit-Remaining": {"description": "Requests left in that window", "schema": _SECONDS},
    "RateLimit-Reset": {"description": "Seconds until that window starts over", "schema": _SECONDS},
}
_RETRY_AFTER: dict[str, OpenAPIResponseHeader] = {
    "Retry-After": {"description": "Seconds to wait before retrying (rate_limited)", "schema": _SECONDS}
}


def _error(description: str, headers: dict[str, OpenAPIResponseHeader] | None) -> OpenAPIResponse:
    response: OpenAPIResponse = {
        "description": description,
        "content": {"application/json": {"model": ErrorResponse}},
    }
    if headers:
        response["headers"] = headers
    return response


ERROR_RESPONSES: dict[int, OpenAPIResponse] = {
    400: _error("Malformed id or parameter", RATE_LIMIT_HEADERS),
    401: _error("Missing, malformed, unknown, revoked or expired API key", None),
    403: _error("The key may not export this organization", RATE_LIMIT_HEADERS),
    404: _error("No such export job for this organization", RATE_LIMIT_HEADERS),
    409: _error(
        "not_ready / export_failed: no archive to download (yet); idempotency_conflict: the "
        "Idempotency-Key was used for the other format",
        RATE_LIMIT_HEADERS,
    ),
    410: _error("archive_expired / archive_deleted: the archive is no longer kept", RATE_LIMIT_HEADERS),
    422: _error("Request failed validation", None),
    429: _error(
        "rate_limited: the key's rate limit is used up (see Retry-After)",
        {**RATE_LIMIT_HEADERS, **_RETRY_AFTER},
    ),
    503: _error("Temporarily unavailable; retry", RATE_LIMIT_HEADERS),
}


def job_responses(description: str) -> dict[int, OpenAPIResponse]:
    """OpenAPI responses of a route answering the export job: the job on 200, an error body otherwise."""
    job: OpenAPIResponse = {
        "description": description,
        "headers": RATE_LIMIT_HEADERS,
        "content": {"application/json": {"model": ExportJobResponse}},
    }
    return {200: job, **ERROR_RESPONSES}


def model_responses(model: type[BaseModel], description: str) -> dict[int, OpenAPIResponse]:
    """OpenAPI responses of a route answering ``model`` on 200, an error body otherwise."""
    answer: OpenAPIResponse = {
        "description": description,
        "headers": RATE_LIMIT_HEADERS,
        "content": {"application/json": {"model": model}},
    }
    return {200: answer, **ERROR_RESPONSES}


def list_responses() -> dict[int, OpenAPIResponse]:
    page: OpenAPIResponse = {
        "description": "A page of the organization's exports, newest first",
        "headers": RATE_LIMIT_HEADERS,
        "content": {"application/json": {"model": ExportJobList}},
    }
    return {200: page, **ERROR_RESPONSES}


def redirect_responses() -> dict[int, OpenAPIResponse]:
    found: OpenAPIResponse = {
        "description": "Found: Location is a freshly signed URL of the archive (send no API key to it)",
        "headers": {
            **RATE_LIMIT_HEADERS,
            "Location": {"description": "Signed S3 URL of the archive", "schema": {"type": "string"}},
            "Expires": {
                "description": "When the signed URL stops working (HTTP date)",
                "schema": {"type": "string"},
            },
        },
    }
    return {302: found, **ERROR_RESPONSES}


class StoreUnavailableError(ServiceUnavailableError):
    """A store that decides access (the key, the member, the rate-limit counters) failed: 503 with
    Retry-After, never a 5xx without a body. ``cause`` (the AWS error code) is for the log only."""

    def __init__(self, retry_after: int, cause: str) -> None:
        super().__init__(f"The service cannot check this request right now; retry after {retry_after} s")
        self.retry_after = retry_after
        self.cause = cause


# Retry-After of a 503 from a failed store: soon for throttling and AWS 5xx (botocore has already retried
# them), later for anything else (access denied, a missing table: a deployment fault, not a blip).
TRANSIENT_RETRY_AFTER_SECONDS = 1
OTHER_RETRY_AFTER_SECONDS = 30


def store_unavailable(error: Exception) -> StoreUnavailableError:
    from botocore.exceptions import ClientError

    from data_export.errors import is_transient

    if isinstance(error, ClientError):
        cause = str(error.response.get("Error", {}).get("Code", "ClientError"))
    else:
        cause = type(error).__name__
    retry_after = TRANSIENT_RETRY_AFTER_SECONDS if is_transient(error) else OTHER_RETRY_AFTER_SECONDS
    return StoreUnavailableError(retry_after, cause)


def error_response(
    status_code: int,
    error: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    body = ErrorResponse(error=error, message=message, details=details)
    return Response(
        status_code=status_code,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump_json(exclude_none=True),
        headers=dict(headers or {}),
    )


def job_response(app: APIGatewayRestResolver, body: BaseModel, **headers: str) -> Response[Any]:
    """A 200 with the job (or a page of jobs), carrying the rate-limit headers."""
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers={**rate_limit_headers(app), **headers},
    )


def redirect_response(app: APIGatewayRestResolver, location: str, expires: str) -> Response[Any]:
    """A 302 to a signed URL; never cached, since the URL is fresh on every call."""
    return Response(
        status_code=302,
        content_type=content_types.APPLICATION_JSON,
        body="",
        headers={
            **rate_limit_headers(app),
            "Location": location,
            "Expires": expires,
            "Cache-Control": "no-store",
        },
    )


def idempotency_key(app: APIGatewayRestResolver) -> str | None:
    """The request's Idempotency-Key header, checked (None when absent)."""
    value = _header(app, IDEMPOTENCY_KEY_HEADER)
    if value is None:
        return None
    if not IDEMPOTENCY_KEY_PATTERN.fullmatch(value):
        raise InvalidRequestError(
            "Malformed Idempotency-Key: 1-128 characters of letters, digits and . _ : -"
        )
    return value


def rate_limit_headers(app: APIGatewayRestResolver) -> dict[str, str]:
    decision: RateLimitDecision | None = app.context.get("rate_limit")
    return decision.headers() if decision else {}


def audit(
    app: APIGatewayRestResolver,
    event: str,
    status: int,
    *,
    job_id: str | None = None,
    error: str | None = None,
) -> None:
    """One audit log line about the current request (ids only: see the module's docstring)."""
    parameters = app.current_event.path_parameters or {}
    principal: Principal | None = app.context.get("principal")
    line: dict[str, Any] = {
        "event": event,
        "outcome": "allowed" if status < 400 else "refused",
        "status": status,
        "organization_id": _logged_id(parameters.get("organization_id")),
        "job_id": job_id or _logged_id(parameters.get("job_id")),
        "key_id": principal.key_id if principal else None,
    }
    if error is not None:
        line["error"] = error
    logger.info("audit", extra={"audit": line})


def _logged_id(value: str | None) -> str | None:
    """An id from the path as given if it has an id's shape; otherwise not repeated (it is the caller's
    text, and a misplaced key or hostile input must not reach the log)."""
    if value is None:
        return None
    return value if is_valid_id(value) else "(malformed)"


def create_resolver() -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(enable_validation=True)

    @app.exception_handler(DataExportError)  # type: ignore[untyped-decorator]
    def handle_domain_error(exc: DataExportError) -> Response[Any]:
        headers = rate_limit_headers(app)
        if isinstance(exc, StoreUnavailableError):
            logger.error("Request failed", extra={"error": exc.code, "cause": exc.cause})
            headers["Retry-After"] = str(exc.retry_after)
        elif exc.status_code >= 500:
            logger.error("Request failed", extra={"error": exc.code})
        else:
            audit(app, "request refused", exc.status_code, error=exc.code)
        return error_response(exc.status_code, exc.code, exc.message, headers=headers)

    @app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
    def handle_validation_error(exc: RequestValidationError) -> Response[Any]:
        details = [
            {"location": [str(part) for part in error.get("loc", ())], "message": str(error.get("msg", ""))}
            for error in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(d['location'])}: {d['message']}" for d in details)
        audit(app, "request refused", 422, error="validation_error")
        return error_response(422, "validation_error", f"Invalid request: {summary}", details)

    @app.not_found
    def handle_not_found(_: Exception) -> Response[Any]:
        audit(app, "request refused", 404, error="not_found")
        return error_response(404, "not_found", "No such resource")

    return app


def require_export_access(app: APIGatewayRestResolver, organization_id: str, *ids: str) -> Principal:
    """Authenticate the caller, count the request against the key's rate limits, check the ids' shape,
    and check the caller may export this organization.

    Refused before any store is touched: a missing or malformed key (shape, CRC-32). Refused after one key
    read at most per container and minute: a well-formed unknown key (the key store remembers misses), which
    never reaches the rate-limit table. A failing store answers 503 with Retry-After."""
    raw_key = app.current_event.headers.get(API_KEY_HEADER) or _header(app, API_KEY_HEADER)
    check_key_format(raw_key)  # refuses garbage before a store (and boto3) is touched
    # Only requests that pass the key's format check need the stores, hence botocore and the rate limiter.
    from botocore.exceptions import BotoCoreError, ClientError

    from data_export.ratelimit import RateLimitedError, windows

    try:
        principal = authenticate(raw_key, wiring.api_keys(), wiring.org_data(), datetime.now(UTC))
        app.context["principal"] = principal
        policy = windows(principal.rate_limit_per_minute, principal.rate_limit_per_day)
        decision = wiring.rate_limiter().check(principal.key_id, policy, time.time())
    except (BotoCoreError, ClientError) as error:
        raise store_unavailable(error) from error
    app.context["rate_limit"] = decision
    if not decision.allowed:
        raise RateLimitedError(decision)
    for value in (organization_id, *ids):
        if not is_valid_id(value):
            raise InvalidRequestError(f"Malformed id '{value[:40]}': expected a {ID_DESCRIPTION}")
    authorize_export(principal, organization_id)
    return principal


def _header(app: APIGatewayRestResolver, name: str) -> str | None:
    """Header lookup that ignores case (API Gateway passes headers as the client sent them)."""
    wanted = name.lower()
    for key, value in (app.current_event.headers or {}).items():
        if key.lower() == wanted:
            return str(value)
    return None
