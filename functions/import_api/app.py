"""/dashboard/api/v1/data-import: create an import (with its upload target), renew the upload, start it,
poll it, list an organization's imports, cancel one. Same keys, roles and conventions as the export API:
owner and manager keys of the *target* organization; publishable (cpk) keys never."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from data_export import snapstart, wiring
from data_export.http import (
    ID_DESCRIPTION,
    IMPORT_BASE_PATH,
    audit,
    create_resolver,
    job_response,
    model_responses,
    require_export_access,
)
from data_export.models import ImportJobList, ImportJobResponse, ImportMode

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
app = create_resolver()
snapstart.register(wiring.api_keys, wiring.org_data, wiring.rate_limiter, wiring.import_service)
TAGS = ["imports"]


@app.post(
    f"{IMPORT_BASE_PATH}/<organization_id>",
    summary="Create an import and get where to upload its archive",
    description=(
        "Answers the import (pending) with `upload`: one presigned PUT for archives up to 64 MiB, else a "
        "multipart upload with a presigned PUT per part (resumable: POST .../upload for fresh URLs of the "
        "parts still missing). Then POST .../start."
    ),
    responses=model_responses(ImportJobResponse, "The import, with its upload target"),
    tags=TAGS,
)
def create_import(
    organization_id: Annotated[str, Path(description=ID_DESCRIPTION)],
    size_bytes: Annotated[int, Query(ge=1, description="Size of the archive to upload, in bytes")],
    mode: Annotated[ImportMode, Query(description="copy: into another organization; restore: back")] = (
        ImportMode.COPY
    ),
    overwrite: Annotated[bool, Query(description="restore: replace records that exist")] = False,
) -> Response[ImportJobResponse]:
    require_export_access(app, organization_id)
    service = wiring.import_service()
    job, upload = service.create(organization_id, mode, size_bytes, overwrite)
    audit(app, "Import created", 200, job_id=job.import_id)
    request_path = app.current_event.request_context.path or app.current_event.path
    location = f"{request_path.rstrip('/')}/{job.import_id}"
    return job_response(app, service.describe(job, upload), Location=location)


@app.post(
    f"{IMPORT_BASE_PATH}/<organization_id>/<import_id>/upload",
    summary="Fresh upload URLs: the whole archive, or the parts S3 does not have yet",
    responses=model_responses(ImportJobResponse, "The import, with its upload target"),
    tags=TAGS,
)
def renew_upload(
    organization_id: Annotated[str, Path(description=ID_DESCRIPTION)],
    import_id: Annotated[str, Path(description=ID_DESCRIPTION)],
) -> Response[ImportJobResponse]:
    require_export_access(app, organization_id, import_id)
    service = wiring.import_service()
    job = service.get(organization_id, import_id)
    return job_response(app, service.describe(job, service.upload_target(job)))


@app.post(
    f"{IMPORT_BASE_PATH}/<organization_id>/<import_id>/start",
    summary="Start the import once its archive is uploaded: verify, plan, then (unless a dry run) apply",
    description=(
        "A dry run writes nothing and answers, once completed, what the import would do. A completed dry "
        "run can be started again without dry_run; a failed import (not one whose archive was refused) "
        "resumes where it stopped."
    ),
    responses=model_responses(ImportJobResponse, "The import, validating"),
    tags=TAGS,
)
def start_import(
    organization_id: Annotated[str, Path(description=ID_DESCRIPTION)],
    import_id: Annotated[str, Path(description=ID_DESCRIPTION)],
    dry_run: Annotated[bool, Query(description="Verify and report only; write nothing")] = False,
) -> Response[ImportJobResponse]:
    require_export_access(app, organization_id, import_id)
    service = wiring.import_service()
    job = service.start(organization_id, import_id, dry_run)
    audit(app, "Import started", 200, job_id=import_id)
    return job_response(app, service.describe(job))


@app.get(
    f"{IMPORT_BASE_PATH}/<organization_id>/<import_id>",
    summary="Poll an import: status, per-section outcome, problems, progress",
    responses=model_responses(ImportJobResponse, "The import"),
    tags=TAGS,
)
def get_import(
    organization_id: Annotated[str, Path(description=ID_DESCRIPTION)],
    import_id: Annotated[str, Path(description=ID_DESCRIPTION)],
) -> Response[ImportJobResponse]:
    require_export_access(app, organization_id, import_id)
    service = wiring.import_service()
    return job_response(app, service.describe(service.get(organization_id, import_id)))


@app.get(
    f"{IMPORT_BASE_PATH}/<organization_id>",
    summary="List the organization's imports, newest first",
    responses=model_responses(ImportJobList, "A page of the organization's imports"),
    tags=TAGS,
)
def list_imports(
    organization_id: Annotated[str, Path(description=ID_DESCRIPTION)],
    limit: Annotated[int, Query(ge=1, le=100, description="Imports per page")] = 20,
    next_token: Annotated[
        str | None, Query(max_length=512, description="The next_token of the previous page")
    ] = None,
) -> Response[ImportJobList]:
    require_export_access(app, organization_id)
    return job_response(app, wiring.import_service().list(organization_id, limit, next_token))


@app.delete(
    f"{IMPORT_BASE_PATH}/<organization_id>/<import_id>",
    summary="Cancel a pending or running import; a finished one's uploaded archive is deleted",
    responses=model_responses(ImportJobResponse, "The import after the cancel"),
    tags=TAGS,
)
def cancel_import(
    organization_id: Annotated[str, Path(description=ID_DESCRIPTION)],
    import_id: Annotated[str, Path(description=ID_DESCRIPTION)],
) -> Response[ImportJobResponse]:
    require_export_access(app, organization_id, import_id)
    service = wiring.import_service()
    job = service.cancel(organization_id, import_id)
    audit(app, "Import canceled", 200, job_id=import_id)
    return job_response(app, service.describe(job))


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
