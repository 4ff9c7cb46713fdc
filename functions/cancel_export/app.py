"""DELETE /dashboard/api/v1/data-export/{organization_id}/{job_id}: cancel a running export, or delete a
finished export's archive."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from data_export import snapstart, wiring
from data_export.http import (
    BASE_PATH,
    ID_DESCRIPTION,
    audit,
    create_resolver,
    job_response,
    job_responses,
    require_export_access,
)
from data_export.models import ExportJobResponse

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
app = create_resolver()
# SnapStart (template parameter): the stores and services a request needs, built before the snapshot.
snapstart.register(wiring.api_keys, wiring.org_data, wiring.rate_limiter, wiring.export_service)


@app.delete(
    f"{BASE_PATH}/<organization_id>/<job_id>",
    summary="Cancel a pending or processing export, or delete a completed export's archive",
    description=(
        "A pending or processing export ends failed with error_code 'canceled': its build stops and "
        "nothing half-written is kept. A completed export's archive is deleted (the job stays completed, "
        "with error_code 'archive_deleted'). A failed export is answered unchanged."
    ),
    responses=job_responses("The export job after the cancel or delete"),
    tags=["exports"],
)
def cancel_export(
    organization_id: Annotated[str, Path(description=ID_DESCRIPTION)],
    job_id: Annotated[str, Path(description=ID_DESCRIPTION)],
) -> Response[ExportJobResponse]:
    require_export_access(app, organization_id, job_id)
    service = wiring.export_service()
    job = service.cancel_or_delete(organization_id, job_id)
    audit(app, "Export canceled or deleted", 200, job_id=job_id)
    return job_response(app, service.describe(job))


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
