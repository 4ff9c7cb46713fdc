"""Builds the domain services from boto3 clients, once per Lambda container.

boto3 is imported here, lazily, so that a handler module imports fast and pays for boto3 only when it
first serves a request. Endpoints come from boto3's own ``AWS_ENDPOINT_URL`` (the local stack sets it)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from data_export.settings import get_settings

if TYPE_CHECKING:
    from data_export.export.admission import Admission
    from data_export.export.builder import ExportBuilder
    from data_export.export.chunked import ChunkedExport
    from data_export.export.dispatch import ExportDispatcher
    from data_export.export.service import ExportService
    from data_export.export.sweeper import JobSweeper
    from data_export.ratelimit import RateLimiter
    from data_export.restore.runner import ImportRunner
    from data_export.restore.service import ImportService
    from data_export.storage.imports import ImportJob
    from data_export.storage.jobs import JobRepository
    from data_export.storage.org_data import ApiKeyRepository, OrgDataRepository
    from data_export.storage.signing import DownloadSigner


def client_config(service: str) -> Any:
    from botocore.config import Config

    # Standard retry mode: backoff with jitter on throttling and transient errors.
    config = Config(retries={"mode": "standard", "max_attempts": 8}, max_pool_connections=16)
    if service == "s3":
        # Signature v4 (presigned URLs) with the regional endpoint.
        config = config.merge(Config(signature_version="s3v4"))
    return config


@cache
def client(service: str) -> Any:
    import boto3

    return boto3.client(service, config=client_config(service))  # type: ignore[call-overload]


@cache
def download_signer() -> DownloadSigner:
    """Signs download URLs with sessions of DOWNLOAD_SIGNING_ROLE_ARN, whose expiry is known, cached for
    the container; without a role, with the function's own credentials (docs/operations.md)."""
    from data_export.storage.signing import DownloadSigner

    role_arn = get_settings().download_signing_role_arn
    return DownloadSigner(
        client("sts") if role_arn else None,
        role_arn,
        default_s3=client("s3"),
        s3_config=client_config("s3"),
    )


@cache
def org_data() -> OrgDataRepository:
    from data_export.storage.org_data import OrgDataRepository

    return OrgDataRepository(client("dynamodb"), get_settings().org_data_table)


@cache
def api_keys() -> ApiKeyRepository:
    from data_export.storage.org_data import ApiKeyRepository

    return ApiKeyRepository(client("dynamodb"), get_settings().api_keys_table)


@cache
def jobs() -> JobRepository:
    """The jobs table; every job that finishes is announced on the event bus when one is configured."""
    from data_export.storage.jobs import JobRepository

    settings = get_settings()
    on_finished = None
    if settings.event_bus_name:
        from data_export.storage.events import ExportEvents

        on_finished = ExportEvents(client("events"), settings.event_bus_name).job_finished
    return JobRepository(client("dynamodb"), settings.jobs_table, on_finished)


@cache
def rate_limiter() -> RateLimiter:
    from data_export.ratelimit import RateLimiter
    from data_export.storage.ratelimits import RateLimitCounters

    return RateLimiter(RateLimitCounters(client("dynamodb"), get_settings().rate_limits_table))


@cache
def export_service() -> ExportService:
    from data_export.export.service import ExportService
    from data_export.storage.objects import ExportStore
    from data_export.storage.queue import ExportQueue

    settings = get_settings()
    return ExportService(
        jobs=jobs(),
        org_data=org_data(),
        queue=ExportQueue(client("sqs"), settings.export_queue_url),
        exports=ExportStore(client("s3"), settings.exports_bucket),
        settings=settings,
        stepfunctions=client("stepfunctions") if settings.state_machine_arn else None,
        signer=download_signer(),
    )


@cache
def export_builder() -> ExportBuilder:
    from data_export.export.builder import ExportBuilder
    from data_export.storage.objects import AssetStore, ExportStore

    settings = get_settings()
    return ExportBuilder(
        jobs=jobs(),
        org_data=org_data(),
        api_keys=api_keys(),
        assets=AssetStore(client("s3"), settings.assets_bucket),
        exports=ExportStore(client("s3"), settings.exports_bucket),
        settings=settings,
    )


@cache
def chunked_export() -> ChunkedExport:
    from data_export.export.chunked import ChunkedExport

    builder = export_builder()
    return ChunkedExport(
        jobs=builder.jobs,
        org_data=builder.org_data,
        api_keys=builder.api_keys,
        assets=builder.assets,
        exports=builder.exports,
        settings=builder.settings,
        admission=admission(),
    )


@cache
def dispatcher() -> ExportDispatcher:
    from data_export.export.dispatch import ExportDispatcher
    from data_export.storage.queue import ExportQueue

    settings = get_settings()
    return ExportDispatcher(
        builder=export_builder(),
        stepfunctions=client("stepfunctions"),
        settings=settings,
        admission=admission() if settings.state_machine_arn else None,
        queue=ExportQueue(client("sqs"), settings.export_queue_url),
    )


@cache
def admission() -> Admission:
    """Execution slots of big exports (taken by the worker, given back by the steps, reclaimed by both)."""
    from data_export.export.admission import Admission
    from data_export.storage.slots import ExecutionSlots

    settings = get_settings()
    return Admission(
        slots=ExecutionSlots(client("dynamodb"), settings.jobs_table),
        stepfunctions=client("stepfunctions"),
        state_machine_arn=settings.state_machine_arn,
    )


@cache
def sweeper() -> JobSweeper:
    from data_export.export.sweeper import JobSweeper
    from data_export.storage.queue import ExportQueue

    builder, settings = export_builder(), get_settings()
    return JobSweeper(
        jobs=builder.jobs,
        queue=ExportQueue(client("sqs"), settings.export_queue_url),
        exports=builder.exports,
        stepfunctions=client("stepfunctions"),
        settings=settings,
        admission=admission(),
    )


@cache
def upload_signer() -> DownloadSigner:
    """Signs the upload URLs of imports with sessions of UPLOAD_SIGNING_ROLE_ARN (PutObject on imports/)."""
    from data_export.storage.signing import DownloadSigner

    role_arn = get_settings().upload_signing_role_arn
    return DownloadSigner(
        client("sts") if role_arn else None,
        role_arn,
        default_s3=client("s3"),
        s3_config=client_config("s3"),
        session_name="data-export-upload",
    )


@cache
def import_service() -> ImportService:
    from data_export.restore.service import ImportService
    from data_export.storage.imports import ImportJobRepository
    from data_export.storage.uploads import UploadedArchives

    settings = get_settings()
    return ImportService(
        on_finished=import_events(),
        imports=ImportJobRepository(client("dynamodb"), settings.imports_table),
        archives=UploadedArchives(client("s3"), settings.exports_bucket),
        signer=upload_signer(),
        stepfunctions=client("stepfunctions"),
        settings=settings,
    )


@cache
def import_runner() -> ImportRunner:
    from data_export.restore.runner import ImportRunner
    from data_export.storage.imports import ImportJobRepository
    from data_export.storage.uploads import ImportTarget, UploadedArchives

    settings = get_settings()
    return ImportRunner(
        imports=ImportJobRepository(client("dynamodb"), settings.imports_table),
        archives=UploadedArchives(client("s3"), settings.exports_bucket),
        target=ImportTarget(
            client("dynamodb"),
            settings.org_data_table,
            client("s3"),
            settings.assets_bucket,
            single_put_max_bytes=settings.import_single_put_max_bytes,
            part_bytes=settings.import_part_size_bytes,
        ),
        on_finished=import_events(),
    )


def import_events() -> Callable[[ImportJob], None] | None:
    """Announces finished imports on the event bus (Import Completed / Import Failed), when there is one."""
    settings = get_settings()
    if not settings.event_bus_name:
        return None
    from data_export.storage.events import ImportEvents

    return ImportEvents(client("events"), settings.event_bus_name).import_finished


def reset() -> None:
    """Forget clients and services (tests and the local stack use it when the environment changes)."""
    for cached in (
        client,
        download_signer,
        jobs,
        org_data,
        api_keys,
        rate_limiter,
        export_service,
        export_builder,
        chunked_export,
        dispatcher,
        admission,
        sweeper,
        upload_signer,
        import_service,
        import_runner,
        get_settings,
    ):
        cached.cache_clear()
