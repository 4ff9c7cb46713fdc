"""The Step Functions tasks of a chunked export: plan, build_unit, assemble, fail (one Lambda each, one
code folder). Transient failures are raised as TransientExportError, the name the state machine retries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from data_export import snapstart, wiring
from data_export.models import AssembleInput, BuildUnitInput, FailInput, PlanInput
from data_export.steps import state_machine_task

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
# SnapStart (template parameter): the chunked export and its clients, built before the snapshot.
snapstart.register(wiring.chunked_export)
step = state_machine_task(logger, "job_id")


@step
def plan(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
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
def build_unit(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = BuildUnitInput.model_validate(event)
    chunked = wiring.chunked_export()
    unit = chunked.planned_unit(request.organization_id, request.job_id, request.run_id, request.unit_index)
    index = chunked.build_unit(request.organization_id, request.job_id, request.run_id, unit)
    return {"unit_id": index.unit_id, "size": index.size}


@step
def assemble(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = AssembleInput.model_validate(event)
    chunked = wiring.chunked_export()
    unit_ids = chunked.planned_unit_ids(request.organization_id, request.job_id, request.run_id)
    job = chunked.assemble(request.organization_id, request.job_id, request.run_id, unit_ids)
    return {"status": job.status.value, "file_size_bytes": job.file_size_bytes}


@step
def fail(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = FailInput.model_validate(event)
    code = request.error_code()
    wiring.chunked_export().fail(
        request.organization_id, request.job_id, request.run_id, request.message(), code
    )
    return {"status": "failed", "error_code": code.value}
