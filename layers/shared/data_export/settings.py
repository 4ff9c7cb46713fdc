"""Settings, read from environment variables in this one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

MIB = 1024 * 1024
# Units one execution builds at once: the BuildUnits Map's MaxConcurrency in template.yaml (a test keeps
# the two equal).
UNITS_AT_ONCE = 16


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


@dataclass(frozen=True)
class Settings:
    jobs_table: str
    org_data_table: str
    api_keys_table: str
    assets_bucket: str
    exports_bucket: str
    export_queue_url: str
    rate_limits_table: str = ""
    download_url_ttl_seconds: int = 3600
    # The role whose assumed sessions sign download URLs, so that their expiry is known ("" signs with the
    # function's own credentials; storage.signing).
    download_signing_role_arn: str = ""
    # Days an archive stays downloadable (the exports bucket's lifecycle deletes it then).
    job_retention_days: int = 7
    # Days a job's record outlives its archive, so that late polls and the list say "expired", not 404.
    job_history_days: int = 30
    # EventBridge bus of the Export Completed / Export Failed events ("" sends none).
    event_bus_name: str = ""
    # S3 requires >= 5 MiB for every part but the last; the uploader grows parts
    # beyond this as the archive grows, to stay under the 10,000-part limit.
    part_size_bytes: int = 8 * MIB
    # A worker holds a job for at most this long before another delivery may take it over.
    job_lease_seconds: int = 960
    # Exports bigger than this go to Step Functions as parallel units; smaller ones are built by the worker.
    fast_path_max_bytes: int = 512 * MIB
    fast_path_max_records: int = 20_000
    chunk_target_bytes: int = 2 * 1024 * MIB
    chunk_max_records: int = 10_000
    # Asset GETs a build keeps in flight ahead of the archive writer (export.prefetch); 0 reads one at a time.
    asset_read_ahead: int = 8
    state_machine_arn: str = ""
    # A Step Functions run holds its job this long (its execution timeout), then a sweeper may take it back.
    execution_lease_seconds: int = 7200
    # A pending job that no worker has handled for this long may have lost its queue message: the sweeper
    # queues it again, and fails it only once the queue holds no message that could still be its own.
    pending_grace_seconds: int = 900
    # Unit builds of all big exports at once (ExportBuildUnitFunction's reserved concurrency): executions are
    # admitted only while each can run UNITS_AT_ONCE units without being throttled (see execution_slots).
    max_concurrent_unit_builds: int = 32
    # A big export that finds no free execution slot goes back to the queue for this long (SQS: 900 at most).
    admission_retry_seconds: int = 60
    # Imports: their jobs, the state machine that runs them, and the role whose sessions sign upload URLs.
    imports_table: str = ""
    import_state_machine_arn: str = ""
    upload_signing_role_arn: str = ""
    # Archives up to this size are uploaded with one PUT, bigger ones in parts of at least this size, and so
    # are the binaries an import writes (S3: 5 MiB at least; the tests lower both, so that the example's
    # archive and its 6 MiB image go in parts).
    import_single_put_max_bytes: int = 64 * MIB
    import_part_size_bytes: int = 16 * MIB

    @property
    def execution_slots(self) -> int:
        """Big exports that may run at once: UNITS_AT_ONCE x slots never exceeds the unit builders'
        concurrency (one slot at least; 0 builds turns admission control off)."""
        if self.max_concurrent_unit_builds <= 0:
            return 0
        return max(1, self.max_concurrent_unit_builds // UNITS_AT_ONCE)

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            jobs_table=env["JOBS_TABLE_NAME"],
            org_data_table=env["ORG_DATA_TABLE_NAME"],
            api_keys_table=env["API_KEYS_TABLE_NAME"],
            assets_bucket=env["ASSETS_BUCKET_NAME"],
            exports_bucket=env["EXPORTS_BUCKET_NAME"],
            export_queue_url=env.get("EXPORT_QUEUE_URL", ""),
            rate_limits_table=env["RATE_LIMITS_TABLE_NAME"],
            download_url_ttl_seconds=_int("DOWNLOAD_URL_TTL_SECONDS", 3600),
            download_signing_role_arn=env.get("DOWNLOAD_SIGNING_ROLE_ARN", ""),
            job_retention_days=_int("JOB_RETENTION_DAYS", 7),
            job_history_days=_int("JOB_HISTORY_DAYS", 30),
            event_bus_name=env.get("EXPORT_EVENT_BUS_NAME", ""),
            part_size_bytes=max(_int("EXPORT_PART_SIZE_BYTES", 8 * MIB), 5 * MIB),
            job_lease_seconds=_int("JOB_LEASE_SECONDS", 960),
            fast_path_max_bytes=_int("FAST_PATH_MAX_BYTES", 512 * MIB),
            fast_path_max_records=_int("FAST_PATH_MAX_RECORDS", 20_000),
            chunk_target_bytes=_int("CHUNK_TARGET_BYTES", 2 * 1024 * MIB),
            chunk_max_records=_int("CHUNK_MAX_RECORDS", 10_000),
            asset_read_ahead=_int("ASSET_READ_AHEAD", 8),
            state_machine_arn=env.get("EXPORT_STATE_MACHINE_ARN", ""),
            execution_lease_seconds=_int("EXECUTION_LEASE_SECONDS", 7200),
            pending_grace_seconds=_int("PENDING_GRACE_SECONDS", 900),
            max_concurrent_unit_builds=_int("MAX_CONCURRENT_UNIT_BUILDS", 32),
            admission_retry_seconds=min(max(_int("ADMISSION_RETRY_SECONDS", 60), 0), 900),
            imports_table=env.get("IMPORTS_TABLE_NAME", ""),
            import_state_machine_arn=env.get("IMPORT_STATE_MACHINE_ARN", ""),
            upload_signing_role_arn=env.get("UPLOAD_SIGNING_ROLE_ARN", ""),
            import_single_put_max_bytes=_int("IMPORT_SINGLE_PUT_MAX_BYTES", 64 * MIB),
            import_part_size_bytes=max(_int("IMPORT_PART_SIZE_BYTES", 16 * MIB), 5 * MIB),
        )


@cache
def get_settings() -> Settings:
    return Settings.from_env()
