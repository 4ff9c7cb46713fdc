"""GET routes of /dashboard/api/v1/data-export: poll a job, download its archive, list an organization's
exports."""

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
    job_response,
    job_responses,
    list_responses,
    redirect_response,
    redirect_responses,
    require_export_access,
)
from data_export.models import ExportJobList, ExportJobResponse

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
app = create_resolver()
# SnapStart (template parameter): the stores and services a request needs, built before the snapshot.
snapstart.register(wiring.api_keys, wiring.org_data, wiring.rate_limiter, wiring.export_service)


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


@app.get(
    f"{BASE_PATH}/<organization_id>/<job_id>/download",
    summary="Download the archive: a redirect to a freshly signed URL, every time",
    responses=redirect_responses(),
    tags=["exports"],
)
def download_export(
    organization_id: Annotated[str, Path(description=ID_DESCRIPTION)],
    job_id: Annotated[str, Path(description=ID_DESCRIPTION)],
) -> Response[Any]:
    from email.utils import format_datetime  # botocore imports it anyway; the other routes do not need it

    require_export_access(app, organization_id, job_id)
    service = wiring.export_service()
    url, expires_at = service.download_url(service.get(organization_id, job_id))
    audit(app, "Download URL issued", 302, job_id=job_id)
    return redirect_response(app, url, format_datetime(expires_at, usegmt=True))


@app.get(
    f"{BASE_PATH}/<organization_id>",
    summary="List the organization's recent exports, newest first",
    responses=list_responses(),
    tags=["exports"],
)
def list_exports(
    organization_id: Annotated[str, Path(description=ID_DESCRIPTION)],
    limit: Annotated[int, Query(ge=1, le=100, description="Exports per page")] = 20,
    next_token: Annotated[
        str | None, Query(max_length=512, description="The next_token of the previous page")
    ] = None,
) -> Response[ExportJobList]:
    require_export_access(app, organization_id)
    page = wiring.export_service().list(organization_id, limit, next_token)
    return job_response(app, page)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
