"""A download URL's expires_at is honest: never past the archive's expiry, nor past the signing
credentials' expiry when it is known (a presigned URL dies with the credentials that signed it)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from data_export import wiring
from data_export.ids import new_id
from data_export.jobs import Job
from data_export.models import ArchiveFormat, JobStatus
from data_export.storage.signing import DownloadSigner

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

    answer = service.describe(job)
    assert answer.download_url is not None
    assert answer.expires_at == NOW + timedelta(seconds=expected_seconds)
    assert signed_lifetime(answer.download_url) == expected_seconds

    url, expires_at = service.download_url(job)
    assert (signed_lifetime(url), expires_at) == (expected_seconds, answer.expires_at)


def test_no_url_once_the_archive_expired(stack: Any) -> None:
    service = replace(wiring.export_service(), clock=lambda: NOW)
    answer = service.describe(completed_job(NOW - timedelta(seconds=1)))
    assert (answer.download_url, answer.expires_at, answer.error_code) == (None, None, "archive_expired")
