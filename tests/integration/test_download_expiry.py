"""A download URL's expires_at is honest: never past the archive's expiry, nor past the signing
credentials' expiry when it is known (a presigned URL dies with the credentials that signed it). The URLs are
signed as the poll function signs them (GetExportFunction's role, assuming the template's signing role)."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from data_export import wiring
from data_export.export.builder import utcnow
from data_export.ids import new_id
from data_export.jobs import Job
from data_export.models import ArchiveFormat, JobStatus
from data_export.settings import get_settings
from data_export.storage.signing import DownloadSigner

from tests.credentials import as_function
from tests.e2e.client import BASE, call, wait_for_job
from tests.security.helpers import new_key, organization, seed

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def completed_job(archive_expires_at: datetime) -> Job:
    job_id = new_id()
    job = Job.new(
        organization_id=new_id(),
        job_id=job_id,
        archive_format=ArchiveFormat.ZIP,
        output_filename=f"x-{job_id}.zip",
        created_at=NOW - timedelta(minutes=5),
        retention_days=7,
    )
    job.status, job.object_key, job.archive_expires_at = (
        JobStatus.COMPLETED,
        f"exports/{job_id}.zip",
        archive_expires_at,
    )
    return job


def signed_lifetime(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])


@pytest.mark.parametrize(
    ("credentials_expire_in", "archive_expires_in", "expected_seconds"),
    [
        (None, timedelta(days=7), 3600),  # the configured lifetime
        (timedelta(minutes=10), timedelta(days=7), 600),  # cut to the credentials
        (None, timedelta(minutes=20), 1200),  # cut to the archive's expiry
        (timedelta(minutes=30), timedelta(minutes=20), 1200),  # whichever comes first
    ],
)
def test_expires_at_is_the_earliest_of_ttl_archive_expiry_and_credentials(
    stack: Any,
    credentials_expire_in: timedelta | None,
    archive_expires_in: timedelta,
    expected_seconds: int,
) -> None:
    expiry = NOW + credentials_expire_in if credentials_expire_in else None
    # No signing role: the default session signs, its expiry what the SDK knows (here: made up).
    signer = DownloadSigner(None, "", default_s3=wiring.client("s3"), default_expiry=lambda: expiry)
    service = replace(wiring.export_service(), clock=lambda: NOW, signer=signer)
    job = completed_job(NOW + archive_expires_in)

    with as_function("GetExportFunction"):
        answer = service.describe(job)
    assert answer.download_url is not None
    assert answer.expires_at == NOW + timedelta(seconds=expected_seconds)
    assert signed_lifetime(answer.download_url) == expected_seconds

    with as_function("GetExportFunction"):
        url, expires_at = service.download_url(job)
    assert (signed_lifetime(url), expires_at) == (expected_seconds, answer.expires_at)


def test_no_url_once_the_archive_expired(stack: Any) -> None:
    service = replace(wiring.export_service(), clock=lambda: NOW)
    with as_function("GetExportFunction"):
        answer = service.describe(completed_job(NOW - timedelta(seconds=1)))
    assert (answer.download_url, answer.expires_at, answer.error_code) == (None, None, "archive_expired")


# ------------------------------------------------------------------ signing with the template's role on moto

# The template's DownloadSigningRole as the local stack names it (RoleName: ${AWS::StackName}-${AWS::Region}-
# download-signing), and what GetExportFunction's DOWNLOAD_SIGNING_ROLE_ARN resolves to there.
SIGNING_ROLE_NAME = "data-export-us-east-1-download-signing"
SIGNING_ROLE_ARN = f"arn:aws:iam::123456789012:role/{SIGNING_ROLE_NAME}"


def assumed_session(access_key_id: str) -> Any:
    """moto's record of the AssumeRole session that a key belongs to (role ARN, expiry)."""
    from moto.sts.models import sts_backends

    sessions = [
        role
        for role in sts_backends["123456789012"]["aws"].assumed_roles
        if role.access_key_id == access_key_id
    ]
    assert len(sessions) == 1, f"{access_key_id} is no AssumeRole session's key"
    return sessions[0]


def archive_in_bucket(stack: Any, archive_expires_at: datetime) -> tuple[Job, bytes]:
    """A completed job whose archive is in the exports bucket, under exports/ as the builder puts it."""
    job = completed_job(archive_expires_at)
    job.object_key = f"exports/{job.organization_id}/{job.job_id}/{new_id()}/{job.output_filename}"
    body = b"PK\x03\x04 archive of " + job.job_id.encode()
    stack.client("s3").put_object(Bucket=get_settings().exports_bucket, Key=job.object_key, Body=body)
    return job, body


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        data: bytes = response.read()
        return data


def signer_on_moto(stack: Any, role_arn: str) -> DownloadSigner:
    """A signer of the template's signing role, as a fresh container of the poll function has (use it as
    GetExportFunction: the role trusts that function's role, not the admin)."""
    return DownloadSigner(
        stack.client("sts"), role_arn, default_s3=wiring.client("s3"), s3_config=wiring.client_config("s3")
    )


def test_the_local_stack_gives_the_poll_function_the_templates_signing_role(stack: Any) -> None:
    assert get_settings().download_signing_role_arn == SIGNING_ROLE_ARN
    assert stack.resolve({"Fn::GetAtt": ["DownloadSigningRole", "Arn"]}) == SIGNING_ROLE_ARN
    assert wiring.download_signer().assumes_role


def test_expires_at_is_the_assumed_sessions_expiry_when_that_comes_first(stack: Any) -> None:
    """AssumeRole through the moto server, presign, download: a URL asked for an hour, 20 minutes into the
    session, lives exactly until the session ends (40 minutes), and the session's key signed it."""
    role_arn = SIGNING_ROLE_ARN
    signer = signer_on_moto(stack, role_arn)
    with as_function("GetExportFunction"):
        session = signer.signing(utcnow(), 3600)
    assert session.expires_at is not None
    later = session.expires_at - timedelta(minutes=40)  # 20 minutes on: 40 left, more than the 30 kept
    service = replace(wiring.export_service(), clock=lambda: later, signer=signer)
    job, body = archive_in_bucket(stack, utcnow() + timedelta(days=7))

    with as_function("GetExportFunction"):
        answer = service.describe(job)
        url, expires_at = service.download_url(job)

    # STS states whole seconds; moto adds microseconds, which whole-second expiries round down.
    assert answer.expires_at == expires_at == session.expires_at.replace(microsecond=0)
    assert signed_lifetime(url) == 40 * 60
    assert answer.download_url is not None
    for signed in (url, answer.download_url):
        sts_session = assumed_session(signing_key(signed))
        assert sts_session.role_arn == role_arn
        assert sts_session.expiration.replace(tzinfo=UTC) == session.expires_at
        assert download(signed) == body  # S3 takes the session's signature


def test_a_session_with_less_than_30_minutes_left_is_replaced_on_moto(stack: Any) -> None:
    role_arn = SIGNING_ROLE_ARN
    signer = signer_on_moto(stack, role_arn)
    job, body = archive_in_bucket(stack, utcnow() + timedelta(days=7))
    with as_function("GetExportFunction"):
        first_url, _ = replace(wiring.export_service(), signer=signer).download_url(job)
    first = assumed_session(signing_key(first_url))

    # 29 minutes before that session ends (moto's clock is the real one: only the service's moves on).
    later = first.expiration.replace(tzinfo=UTC) - timedelta(minutes=29)
    with as_function("GetExportFunction"):
        url, expires_at = replace(wiring.export_service(), clock=lambda: later, signer=signer).download_url(
            job
        )

    fresh = assumed_session(signing_key(url))
    assert fresh.access_key_id != first.access_key_id, "a new session signed"
    assert fresh.role_arn == first.role_arn == role_arn
    assert expires_at <= fresh.expiration.replace(tzinfo=UTC)
    assert download(url) == body
    # ...and it is cached in turn: the next URL is signed with it.
    with as_function("GetExportFunction"):
        next_url, _ = replace(wiring.export_service(), signer=signer).download_url(job)
    assert signing_key(next_url) == fresh.access_key_id


def signing_key(url: str) -> str:
    """The access key id a presigned URL was signed with."""
    return parse_qs(urlsplit(url).query)["X-Amz-Credential"][0].split("/")[0]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_: Any) -> None:
        return None


def test_the_api_signs_polls_and_downloads_with_the_signing_roles_session(
    api_url: str, stack: Any, tmp_path: Path
) -> None:
    """End to end through the local stack (the template's role, env and grants, IAM enforced): a poll's
    download_url and /download's Location are signed with a session of DownloadSigningRole, expire no later
    than it, and download the archive."""
    key = new_key()
    fixture = organization("Signing", key)
    seed(stack, tmp_path, fixture)
    organization_id = fixture["organization"]["id"]
    started = call("POST", f"{api_url}{BASE}/{organization_id}", key)
    assert started.status == 200, started.body
    job = wait_for_job(api_url, organization_id, started.json()["job_id"], key)
    assert job["status"] == "completed", job

    polled = assumed_session(signing_key(job["download_url"]))
    assert polled.role_arn == SIGNING_ROLE_ARN
    assert datetime.fromisoformat(job["expires_at"]) <= polled.expiration.replace(tzinfo=UTC)

    request = urllib.request.Request(
        f"{api_url}{BASE}/{organization_id}/{job['job_id']}/download", headers={"X-API-Key": key}
    )
    try:
        urllib.request.build_opener(_NoRedirects).open(request, timeout=60)
        raise AssertionError("no redirect")
    except urllib.error.HTTPError as redirect:
        assert redirect.code == 302
        location, expires = redirect.headers["Location"], redirect.headers["Expires"]
    assert signing_key(location) == polled.access_key_id  # the container's session, reused
    assert parsedate_to_datetime(expires) <= polled.expiration.replace(tzinfo=UTC)
    assert download(location)[:4] == b"PK\x03\x04"
