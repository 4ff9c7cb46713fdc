"""The Step Functions tasks of an import: validate, apply (called again until it reports done), fail. One
Lambda each, one code folder. Transient failures are raised as TransientExportError, which the state machine
retries."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger
from data_export import snapstart, wiring
from data_export.errors import TransientExportError, is_transient
from data_export.models import ImportFailInput, ImportStepInput

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
snapstart.register(wiring.import_runner)
Result = TypeVar("Result")


def step(
    function: Callable[[dict[str, Any], LambdaContext], Result],
) -> Callable[[dict[str, Any], LambdaContext], Result]:
    """Logs the step with its import; transient failures become the error the state machine retries."""

    @wraps(function)
    @logger.inject_lambda_context(clear_state=True)
    def handler(event: dict[str, Any], context: LambdaContext) -> Result:
        logger.append_keys(organization_id=event.get("organization_id"), import_id=event.get("import_id"))
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


@step
def validate(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ImportStepInput.model_validate(event)
    apply = wiring.import_runner().validate(request.organization_id, request.import_id, request.run_id)
    return {"apply": apply}


@step
def apply(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ImportStepInput.model_validate(event)
    done = wiring.import_runner().apply(
        request.organization_id,
        request.import_id,
        request.run_id,
        lambda: context.get_remaining_time_in_millis() / 1000,
    )
    return {"done": done}


@step
def fail(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ImportFailInput.model_validate(event)
    wiring.import_runner().fail(request.organization_id, request.import_id, request.run_id, request.error)
    return {"status": "failed"}
