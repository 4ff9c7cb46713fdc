"""POST /dashboard/api/v1/data-export/{organization_id}: start an export job."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from data_export import snapstart, wiring
from data_export.http import (
    BASE_PATH,
    ID_DESCRIPTION,
    audit,
    create_resolver,
    idempotency_key,
    job_response,
    job_responses,
    require_export_access,
)
from data_export.models import ArchiveFormat, ExportJobResponse

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
app = create_resolver()
# SnapStart (template parameter): the stores and services a request needs, built before the snapshot.
snapstart.register(wiring.api_keys, wiring.org_data, wiring.rate_limiter, wiring.export_service)


@app.post(
    f"{BASE_PATH}/<organization_id>",
    summary="Start an export of all of the organization's data",
    description=(
        "While an export of the same format is pending or processing, answers that job instead of starting "
        "another. An Idempotency-Key header (1-128 of letters, digits and . _ : -) makes retries safe: the "
        "same key answers the same job for as long as the job is kept."
    ),
    responses=job_responses("The export job: a new one, or the one already running"),
    tags=["exports"],
)
def start_export(
    organization_id: Annotated[str, Path(description=ID_DESCRIPTION)],
    archive_format: Annotated[ArchiveFormat, Query(description="Archive format")] = ArchiveFormat.ZIP,
) -> Response[ExportJobResponse]:
    require_export_access(app, organization_id)
    service = wiring.export_service()
    job, created = service.start(organization_id, archive_format, idempotency_key(app))
    audit(app, "Export requested" if created else "Existing export answered", 200, job_id=job.job_id)
    request_path = app.current_event.request_context.path or app.current_event.path
    return job_response(app, service.describe(job), Location=f"{request_path.rstrip('/')}/{job.job_id}")


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
