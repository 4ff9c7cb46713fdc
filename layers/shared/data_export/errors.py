"""Domain errors; each knows the HTTP status and error code it is answered with."""

from __future__ import annotations


class DataExportError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(DataExportError):
    status_code = 400
    code = "invalid_request"


class AuthenticationError(DataExportError):
    status_code = 401
    code = "unauthorized"


class ForbiddenError(DataExportError):
    status_code = 403
    code = "forbidden"


class NotFoundError(DataExportError):
    status_code = 404
    code = "not_found"


class ServiceUnavailableError(DataExportError):
    status_code = 503
    code = "service_unavailable"
