"""The Step Functions tasks of an import: validate, apply (called again until it reports done), fail. One
Lambda each, one code folder. Transient failures are raised as TransientExportError, which the state machine
retries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from data_export import snapstart, wiring
from data_export.models import ImportFailInput, ImportStepInput
from data_export.steps import state_machine_task

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
snapstart.register(wiring.import_runner)
step = state_machine_task(logger, "import_id")


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
