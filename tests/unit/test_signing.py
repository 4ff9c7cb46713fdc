"""Download URLs signed with credentials of known expiry (storage.signing): the assumed session, its
per-container cache, expires_at as the earliest of the URL's lifetime, the credentials and the archive,
and the fallback to the default session when no signing role is configured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import ClientError
from data_export.errors import ServiceUnavailableError
from data_export.export.service import ExportService
from data_export.ids import new_id
from data_export.jobs import Job
from data_export.models import ArchiveFormat, JobStatus
from data_export.settings import Settings
from data_export.storage import signing
from data_export.storage.objects import ExportStore
from data_export.storage.signing import REUSE_SECONDS, SESSION_SECONDS, DownloadSigner
from data_export.wiring import client_config

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ROLE_ARN = "arn:aws:iam::123456789012:role/data-export-us-east-1-download-signing"
BUCKET = "exports-bucket"


class FakeSts:
    """AssumeRole as STS answers it: a new key pair per call, expiring ``DurationSeconds`` after ``now``."""

    def __init__(self) -> None:
        self.now = NOW
        self.calls: list[dict[str, Any]] = []

    def assume_role(self, **request: Any) -> dict[str, Any]:
        self.calls.append(request)
        return {
            "Credentials": {
                "AccessKeyId": f"ASIAFAKE{len(self.calls):04d}",
                "SecretAccessKey": "secret",
                "SessionToken": f"token-{len(self.calls)}",
                "Expiration": self.now + timedelta(seconds=request["DurationSeconds"]),
            }
        }


def plain_s3() -> Any:
    return boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="AKIADEFAULT",
        aws_secret_access_key="secret",
        config=client_config("s3"),
    )


def role_signer(sts: FakeSts) -> DownloadSigner:
    return DownloadSigner(cast(Any, sts), ROLE_ARN, default_s3=plain_s3(), s3_config=client_config("s3"))


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


# ------------------------------------------------------------------------------------------ the signer


def test_signs_with_a_one_hour_session_of_the_signing_role() -> None:
    sts = FakeSts()
    session = role_signer(sts).signing(NOW, 3600)

    assert sts.calls == [
        {"RoleArn": ROLE_ARN, "RoleSessionName": "data-export-download", "DurationSeconds": 3600}
    ]
    assert session.expires_at == NOW + timedelta(hours=1)
    url = session.s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "k"}, ExpiresIn=60)
    signed = query(url)
    assert signed["X-Amz-Credential"].startswith("ASIAFAKE0001/")
    assert signed["X-Amz-Security-Token"] == "token-1"
    assert signed["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"  # the same s3v4 config as wiring.client("s3")


@pytest.mark.parametrize(
    ("url_lifetime", "reused_while_left"),
    [
        (3600, REUSE_SECONDS),  # long URLs: reused while 30 minutes are left
        (2400, REUSE_SECONDS),
        (600, 600),  # short URLs: reused while the whole lifetime is left
        (60, 60),
    ],
)
def test_a_session_is_reused_while_it_outlives_the_url_or_30_minutes(
    url_lifetime: int, reused_while_left: int
) -> None:
    sts = FakeSts()
    signer = role_signer(sts)
    first = signer.signing(NOW, url_lifetime)
    assert first.expires_at is not None

    last_reuse = first.expires_at - timedelta(seconds=reused_while_left)
    assert signer.signing(NOW + timedelta(minutes=1), url_lifetime) is first
    assert signer.signing(last_reuse, url_lifetime) is first
    assert len(sts.calls) == 1

    sts.now = last_reuse + timedelta(seconds=1)
    fresh = signer.signing(sts.now, url_lifetime)
    assert fresh is not first
    assert fresh.expires_at == sts.now + timedelta(seconds=SESSION_SECONDS)
    assert len(sts.calls) == 2
    assert signer.signing(sts.now, url_lifetime) is fresh  # and the new one is cached in turn


def test_without_a_role_the_default_session_signs_and_its_expiry_is_what_the_sdk_knows() -> None:
    s3 = plain_s3()
    unknown = DownloadSigner(None, "", default_s3=s3, default_expiry=lambda: None)
    assert (unknown.signing(NOW, 3600).s3, unknown.signing(NOW, 3600).expires_at) == (s3, None)

    known = DownloadSigner(None, "", default_s3=s3, default_expiry=lambda: NOW + timedelta(minutes=7))
    assert known.signing(NOW, 3600).expires_at == NOW + timedelta(minutes=7)
    assert not known.assumes_role
    # A role without an STS client (or an STS client without a role) does not assume anything either.
    assert not DownloadSigner(cast(Any, FakeSts()), "", default_s3=s3).assumes_role


def test_the_default_session_expiry_is_read_from_refreshable_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expiry = NOW + timedelta(minutes=42)
    session = boto3.Session(region_name="us-east-1")
    refreshable = RefreshableCredentials("AKIA", "secret", "token", expiry, lambda: {}, method="test")
    monkeypatch.setattr(session._session, "_credentials", refreshable)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    assert signing.default_session_expiry() == expiry

    static = boto3.Session(aws_access_key_id="AKIA", aws_secret_access_key="secret", region_name="us-east-1")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", static)
    assert signing.default_session_expiry() is None  # Lambda's environment credentials: no expiry given


# ------------------------------------------------------------------------------------------ the service


def service(signer: DownloadSigner | None, *, ttl: int = 3600, now: datetime = NOW) -> ExportService:
    settings = Settings(
        jobs_table="jobs",
        org_data_table="org",
        api_keys_table="keys",
        assets_bucket="assets",
        exports_bucket=BUCKET,
        export_queue_url="",
        download_url_ttl_seconds=ttl,
    )
    unused = cast(Any, None)  # describe and download_url touch neither the tables nor the queue
    return ExportService(
        jobs=unused,
        org_data=unused,
        queue=unused,
        exports=ExportStore(plain_s3(), BUCKET),
        settings=settings,
        clock=lambda: now,
        signer=signer,
    )


def completed_job(archive_expires_at: datetime) -> Job:
    job_id = new_id()
    job = Job.new(
        organization_id=new_id(),
        job_id=job_id,
        archive_format=ArchiveFormat.ZIP,
        output_filename=f"x-{job_id}.zip",
        created_at=NOW - timedelta(days=1),
        retention_days=7,
    )
    job.status, job.object_key, job.archive_expires_at = (
        JobStatus.COMPLETED,
        f"exports/{job_id}.zip",
        archive_expires_at,
    )
    return job


def assumed_earlier(signer: DownloadSigner, sts: FakeSts, age: timedelta) -> datetime | None:
    """Let the signer assume (and cache) its session ``age`` before NOW; when that session expires."""
    sts.now = NOW - age
    return signer.signing(sts.now, 3600).expires_at


def answers(export_service: ExportService, job: Job) -> tuple[str, datetime]:
    """download_url's URL and expiry, after checking describe promises the same expiry."""
    url, expires_at = export_service.download_url(job)
    assert export_service.describe(job).expires_at == expires_at
    return url, expires_at


@pytest.mark.parametrize(
    ("session_age", "ttl", "archive_left", "expected_left"),
    [
        (timedelta(0), 3600, timedelta(days=7), timedelta(hours=1)),  # a fresh session: the full hour
        (timedelta(minutes=20), 3600, timedelta(days=7), timedelta(minutes=40)),  # cut to the credentials
        (timedelta(minutes=20), 600, timedelta(days=7), timedelta(minutes=10)),  # the configured lifetime
        (timedelta(minutes=20), 3600, timedelta(minutes=25), timedelta(minutes=25)),  # the archive's expiry
    ],
)
def test_expires_at_is_the_earliest_of_lifetime_credentials_and_archive(
    session_age: timedelta, ttl: int, archive_left: timedelta, expected_left: timedelta
) -> None:
    sts = FakeSts()
    signer = role_signer(sts)
    credentials_expire_at = assumed_earlier(signer, sts, session_age)
    assert credentials_expire_at is not None

    url, expires_at = answers(service(signer, ttl=ttl), completed_job(NOW + archive_left))

    assert expires_at == NOW + expected_left
    assert expires_at <= credentials_expire_at  # never later than the credentials
    if expected_left == credentials_expire_at - NOW:
        assert expires_at == credentials_expire_at  # exactly, when they are the earliest
    assert int(query(url)["X-Amz-Expires"]) == expected_left.total_seconds()
    assert query(url)["X-Amz-Credential"].startswith("ASIAFAKE0001/")
    assert len(sts.calls) == 1  # signed with the cached session


def test_a_session_too_close_to_its_end_is_replaced_before_signing() -> None:
    sts = FakeSts()
    signer = role_signer(sts)
    assumed_earlier(signer, sts, timedelta(minutes=31))  # 29 minutes left at NOW: below the 30 kept
    sts.now = NOW

    url, expires_at = answers(service(signer), completed_job(NOW + timedelta(days=7)))

    assert len(sts.calls) == 2
    assert query(url)["X-Amz-Credential"].startswith("ASIAFAKE0002/")
    assert expires_at == NOW + timedelta(hours=1)


def test_a_session_that_cannot_be_assumed_is_a_503_not_a_url() -> None:
    class DeniedSts(FakeSts):
        def assume_role(self, **request: Any) -> dict[str, Any]:
            self.calls.append(request)
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "AssumeRole")

    export_service = service(role_signer(DeniedSts()))
    job = completed_job(NOW + timedelta(days=7))
    for ask in (export_service.download_url, export_service.describe):
        with pytest.raises(ServiceUnavailableError) as refused:
            ask(job)
        assert refused.value.status_code == 503


def test_the_archive_expiry_cuts_the_url_to_whole_seconds() -> None:
    archive_expires_at = NOW + timedelta(minutes=5, seconds=7, microseconds=900_000)
    url, expires_at = answers(service(role_signer(FakeSts())), completed_job(archive_expires_at))
    assert expires_at == NOW + timedelta(minutes=5, seconds=7)  # rounded down: never past the archive
    assert query(url)["X-Amz-Expires"] == "307"


def test_expires_at_counts_from_the_signing_second() -> None:
    """S3 counts X-Amz-Expires from the second in X-Amz-Date: expires_at is whole seconds, and exactly the
    credentials' expiry when they end first, even when the clock is mid-second."""
    sts = FakeSts()
    signer = role_signer(sts)
    credentials_expire_at = assumed_earlier(signer, sts, timedelta(minutes=20))
    mid_second = NOW + timedelta(microseconds=700_000)

    url, expires_at = answers(service(signer, now=mid_second), completed_job(NOW + timedelta(days=7)))

    assert expires_at == credentials_expire_at == NOW + timedelta(minutes=40)
    assert query(url)["X-Amz-Expires"] == str(40 * 60)


@pytest.mark.parametrize(
    ("sdk_expiry", "expected_left"),
    [(None, timedelta(hours=1)), (NOW + timedelta(minutes=10), timedelta(minutes=10))],
)
def test_without_a_role_the_default_session_signs_as_before(
    sdk_expiry: datetime | None, expected_left: timedelta
) -> None:
    signer = DownloadSigner(None, "", default_s3=plain_s3(), default_expiry=lambda: sdk_expiry)
    url, expires_at = answers(service(signer), completed_job(NOW + timedelta(days=7)))
    assert expires_at == NOW + expected_left
    assert query(url)["X-Amz-Credential"].startswith("AKIADEFAULT/")
    assert query(url)["X-Amz-Expires"] == str(int(expected_left.total_seconds()))


def test_without_a_signer_the_exports_store_signs_for_the_configured_lifetime() -> None:
    url, expires_at = answers(service(None, ttl=900), completed_job(NOW + timedelta(days=7)))
    assert expires_at == NOW + timedelta(minutes=15)
    assert query(url)["X-Amz-Credential"].startswith("AKIADEFAULT/")
    assert query(url)["X-Amz-Expires"] == "900"
