"""GET /dashboard/api/v1/data-export/{organization_id}/{job_id}: poll an export job."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.utilities.typing import LambdaContext
from data_export import wiring
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

logger = Logger()
app = create_resolver()


@app.get(
    f"{BASE_PATH}/<organization_id>/<job_id>",
    summary="Poll an export job; once completed it carries a signed download URL",
    responses=job_responses("The export job"),
    tags=["exports"],
)
def get_export(
    organization_id: Annotated[str, Path(description=ID_DESCRIPTION)],
    job_id: Annotated[str, Path(description=ID_DESCRIPTION)],
) -> Response[ExportJobResponse]:
    require_export_access(app, organization_id, job_id)
    service = wiring.export_service()
    job = service.get(organization_id, job_id)
    answer = service.describe(job)
    if answer.download_url is not None:
        # Downloads go straight to S3; handing out the URL is the last point the service sees.
        audit(app, "Download URL issued", 200, job_id=job.job_id)
    return job_response(app, answer)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
