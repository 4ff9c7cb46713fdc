"""What every Step Functions task handler does around its work (exports' and imports' alike): log with the
job's ids, and turn transient failures into TransientExportError, the error the state machines retry."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

from data_export.errors import TransientExportError, is_transient

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.utilities.typing import LambdaContext

Result = TypeVar("Result")
Task = Callable[[dict[str, Any], "LambdaContext"], Result]


def state_machine_task(logger: Logger, id_key: str) -> Callable[[Task[Result]], Task[Result]]:
    """Decorates a task handler: its log lines carry organization_id and ``id_key`` (job_id, import_id)."""

    def decorate(function: Task[Result]) -> Task[Result]:
        @wraps(function)
        @logger.inject_lambda_context(clear_state=True)
        def handler(event: dict[str, Any], context: LambdaContext) -> Result:
            logger.append_keys(organization_id=event.get("organization_id"), **{id_key: event.get(id_key)})
            try:
                return function(event, context)
            except Exception as exc:
                if is_transient(exc):
                    logger.warning(
                        "Transient failure; the state machine retries", extra={"error": type(exc).__name__}
                    )
                    raise TransientExportError(f"{type(exc).__name__}: {exc}") from exc
                raise

        return handler

    return decorate
