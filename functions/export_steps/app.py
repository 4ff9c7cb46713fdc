"""The Step Functions tasks of a chunked export: plan, build_unit, assemble, fail (one Lambda each, one
code folder). Transient failures are raised as TransientExportError, the name the state machine retries."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger
from data_export import snapstart, wiring
from data_export.errors import TransientExportError, is_transient
from data_export.models import AssembleInput, BuildUnitInput, FailInput, PlanInput

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
# SnapStart (template parameter): the chunked export and its clients, built before the snapshot.
snapstart.register(wiring.chunked_export)
Result = TypeVar("Result")


def step(function: Callable[[dict[str, Any]], Result]) -> Callable[[dict[str, Any], LambdaContext], Result]:
    """Logs the step with its job, and turns transient failures into the error the state machine retries."""

    @wraps(function)
    @logger.inject_lambda_context(clear_state=True)
    def handler(event: dict[str, Any], context: LambdaContext) -> Result:
        logger.append_keys(organization_id=event.get("organization_id"), job_id=event.get("job_id"))
        try:
            return function(event)
        except Exception as exc:
            if is_transient(exc):
                logger.warning(
                    "Transient failure; the state machine retries", extra={"error": type(exc).__name__}
                )
                raise TransientExportError(f"{type(exc).__name__}: {exc}") from exc
            raise

    return handler


@step
def plan(event: dict[str, Any]) -> dict[str, Any]:
    request = PlanInput.model_validate(event)
    units = wiring.chunked_export().plan(
        request.organization_id,
        request.job_id,
        request.run_id,
        target_bytes=request.chunk_target_bytes,
        max_records=request.chunk_max_records,
    )
    # The plan is in S3: the state machine carries only the unit indexes its Map iterates over (at most
    # plan.MAX_UNITS small numbers), so no payload grows with the organization.
    return {"units_total": len(units), "unit_indexes": list(range(len(units)))}


@step
def build_unit(event: dict[str, Any]) -> dict[str, Any]:
    request = BuildUnitInput.model_validate(event)
    chunked = wiring.chunked_export()
    unit = chunked.planned_unit(request.organization_id, request.job_id, request.run_id, request.unit_index)
    index = chunked.build_unit(request.organization_id, request.job_id, request.run_id, unit)
    return {"unit_id": index.unit_id, "size": index.size}


@step
def assemble(event: dict[str, Any]) -> dict[str, Any]:
    request = AssembleInput.model_validate(event)
    chunked = wiring.chunked_export()
    unit_ids = chunked.planned_unit_ids(request.organization_id, request.job_id, request.run_id)
    job = chunked.assemble(request.organization_id, request.job_id, request.run_id, unit_ids)
    return {"status": job.status.value, "file_size_bytes": job.file_size_bytes}


@step
def fail(event: dict[str, Any]) -> dict[str, Any]:
    request = FailInput.model_validate(event)
    code = request.error_code()
    wiring.chunked_export().fail(
        request.organization_id, request.job_id, request.run_id, request.message(), code
    )
    return {"status": "failed", "error_code": code.value}
