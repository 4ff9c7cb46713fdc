"""The HTTP face shared by the API functions: the resolver, error bodies and the auth step.

This is the adapter between API Gateway events (through Powertools' event handler) and the domain."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from data_export import wiring
from data_export.auth import Principal, authenticate, authorize_export
from data_export.errors import DataExportError, InvalidRequestError
from data_export.ids import ALPHABET, is_valid_id
from data_export.models import ErrorResponse, ExportJobResponse

logger = Logger(child=True)

API_KEY_HEADER = "X-API-Key"
BASE_PATH = "/dashboard/api/v1/data-export"
ID_DESCRIPTION = f"22-character shortuuid (alphabet {ALPHABET})"

ERROR_RESPONSES: dict[int, OpenAPIResponse] = {
    status: {"description": description, "content": {"application/json": {"model": ErrorResponse}}}
    for status, description in (
        (400, "Malformed id or parameter"),
        (401, "Missing, malformed, unknown, revoked or expired API key"),
        (403, "The key may not export this organization"),
        (404, "No such export job for this organization"),
        (422, "Request failed validation"),
        (503, "Temporarily unavailable; retry"),
    )
}


def job_responses(description: str) -> dict[int, OpenAPIResponse]:
    """OpenAPI responses of a route answering the export job: the job on 200, an error body otherwise."""
    job: OpenAPIResponse = {
        "description": description,
        "content": {"application/json": {"model": ExportJobResponse}},
    }
    return {200: job, **ERROR_RESPONSES}


def error_response(
    status_code: int, error: str, message: str, details: list[dict[str, Any]] | None = None
) -> Response[Any]:
    body = ErrorResponse(error=error, message=message, details=details)
    return Response(
        status_code=status_code,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump_json(exclude_none=True),
    )


def create_resolver() -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(enable_validation=True)

    @app.exception_handler(DataExportError)  # type: ignore[untyped-decorator]
    def handle_domain_error(exc: DataExportError) -> Response[Any]:
        if exc.status_code >= 500:
            logger.error("Request failed", extra={"error": exc.code})
        return error_response(exc.status_code, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
    def handle_validation_error(exc: RequestValidationError) -> Response[Any]:
        details = [
            {"location": [str(part) for part in error.get("loc", ())], "message": str(error.get("msg", ""))}
            for error in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(d['location'])}: {d['message']}" for d in details)
        return error_response(422, "validation_error", f"Invalid request: {summary}", details)

    @app.not_found
    def handle_not_found(_: Exception) -> Response[Any]:
        return error_response(404, "not_found", "No such resource")

    return app


def require_export_access(app: APIGatewayRestResolver, organization_id: str, *ids: str) -> Principal:
    """Authenticate the caller, check the ids' shape, and check the caller may export this organization."""
    from data_export.export.builder import utcnow

    raw_key = app.current_event.headers.get(API_KEY_HEADER) or _header(app, API_KEY_HEADER)
    principal = authenticate(raw_key, wiring.api_keys(), wiring.org_data(), utcnow())
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
