"""Domain errors; each knows the HTTP status and error code it is answered with. And what a client is told
of a failed export: a fixed sentence per error code, never the internal error's text (which names AWS
accounts, roles, buckets, tables, exception classes): that goes to the logs, with the job id."""

from __future__ import annotations

from typing import Final

from data_export.models import SECTION_KEYS, ErrorCode

# The sentence of a failed job (and of its failed sections) for each code a build failure is stored with.
# ``canceled`` says when ("Canceled by request at ..."), archive_deleted / archive_expired are answered by
# the job's view: those are not build failures.
FAILURE_SENTENCES: Final[dict[ErrorCode, str]] = {
    ErrorCode.EXPORT_FAILED: "The export failed because of an internal error; please request it again",
    ErrorCode.TIMED_OUT: "The export took too long to build and was stopped; please request it again",
    ErrorCode.TOO_LARGE: "The export is too large to build as one archive; please contact support",
    ErrorCode.NEVER_STARTED: "The export was never started; please request it again",
    ErrorCode.INTERRUPTED: (
        "The export stopped making progress (its build was interrupted); please request it again"
    ),
    ErrorCode.REQUEST_FAILED: (
        "The export could not be started: its request failed repeatedly; please request it again"
    ),
}


def failure_message(code: ErrorCode, section: str | None = None) -> str:
    """What a client is told of a failed export: the code's fixed sentence; an internal failure names the
    section it happened in (one of SECTION_KEYS, nothing else)."""
    if code is ErrorCode.EXPORT_FAILED and section in SECTION_KEYS:
        return (
            f"The export failed in section '{section}' because of an internal error; please request it again"
        )
    return FAILURE_SENTENCES[code]


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


class ConflictError(DataExportError):
    """The request cannot apply to the resource in its current state (e.g. downloading an unfinished job)."""

    status_code = 409
    code = "conflict"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


class GoneError(DataExportError):
    """The archive existed and is no longer kept (expired or deleted)."""

    status_code = 410
    code = "gone"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


class ServiceUnavailableError(DataExportError):
    status_code = 503
    code = "service_unavailable"


class JobOwnershipLostError(Exception):
    """This build run no longer owns the job (another run took it, or it is gone): stop, change nothing."""


class IncompleteBuildError(Exception):
    """Assembling was asked for before every planned unit of the build was built."""


class TransientExportError(Exception):
    """A failure worth retrying (throttling, timeouts, S3 5xx); Step Functions retries on this name."""


_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalServerError",
        "ServiceUnavailable",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TransactionInProgressException",
        "LimitExceededException",
    }
)


def is_transient(error: BaseException) -> bool:
    """Whether retrying the same work may succeed: network trouble, throttling, AWS 5xx, an asset that
    changed while it was read."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    from data_export.archive import ContentMismatchError

    if isinstance(
        error, (BotoConnectionError, HTTPClientError, ConnectionError, TimeoutError, ContentMismatchError)
    ):
        return True
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return code in _TRANSIENT_CODES or status >= 500
    return False


def is_stream_reset(error: BaseException) -> bool:
    """Whether reading a response's body broke off (the connection reset or closed, a read timed out, fewer
    bytes than announced): the object itself is fine, and reading it again from where the read stopped
    may succeed."""
    from http.client import IncompleteRead

    from botocore.exceptions import HTTPClientError, IncompleteReadError
    from urllib3.exceptions import ProtocolError, ReadTimeoutError

    return isinstance(
        error,
        (
            HTTPClientError,  # botocore's ResponseStreamingError, ReadTimeoutError, ConnectionClosedError
            IncompleteReadError,
            ProtocolError,
            ReadTimeoutError,
            IncompleteRead,
            ConnectionError,  # ConnectionResetError, BrokenPipeError, ...
            TimeoutError,
        ),
    )
