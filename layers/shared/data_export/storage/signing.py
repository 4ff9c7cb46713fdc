"""Credentials that sign download URLs, and when they expire.

A presigned URL dies with the credentials that signed it. Lambda hands a function its role's session in
environment variables without saying when it expires, so URLs signed with it could die before the
``expires_at`` the API promised. With ``DOWNLOAD_SIGNING_ROLE_ARN`` set, ``DownloadSigner`` signs instead
with a session of that role (AssumeRole), whose expiry STS states. AWS caps a session assumed by a role's
session (role chaining) at one hour, so each session is asked for ``SESSION_SECONDS`` and reused, per
container, while it has at least ``min(URL lifetime, REUSE_SECONDS)`` left; a URL therefore lives at least
``min(URL lifetime, 30 min)``. Without a role (unit tests, older deployments) it signs with the default
session and knows the expiry only where the SDK does (docs/operations.md, "Download URL lifetimes")."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sts import STSClient

# The longest session AssumeRole grants when the caller is itself a role's session (role chaining).
SESSION_SECONDS = 3600
# A cached session is reused while it outlives the URL to sign by this much, or by the URL's whole lifetime
# when that is shorter; past that, a fresh session is assumed.
REUSE_SECONDS = 1800
SESSION_NAME = "data-export-download"


@dataclass(frozen=True)
class Signing:
    """An S3 client to presign with, and when its credentials expire (None: unknown)."""

    s3: S3Client
    expires_at: datetime | None


def default_session_expiry() -> datetime | None:
    """When the default session's credentials expire, when the SDK knows it (refreshable credentials:
    containers, SSO, assumed roles). Lambda's environment credentials carry no expiry: None there."""
    import boto3

    expiry = getattr(boto3._get_default_session().get_credentials(), "_expiry_time", None)
    return expiry if isinstance(expiry, datetime) else None


class DownloadSigner:
    """Hands out the credentials to sign a download URL with: an assumed session of the signing role
    (cached per container, see the module's doc), or the default session when no role is configured."""

    def __init__(
        self,
        sts: STSClient | None,
        role_arn: str,
        *,
        default_s3: S3Client,
        s3_config: Any = None,
        default_expiry: Callable[[], datetime | None] = default_session_expiry,
        session_name: str = SESSION_NAME,
    ) -> None:
        self._session_name = session_name
        self._sts = sts
        self._role_arn = role_arn
        self._default_s3 = default_s3
        self._s3_config = s3_config  # botocore Config of the S3 clients made for assumed sessions
        self._default_expiry = default_expiry
        self._session: Signing | None = None
        self._lock = threading.Lock()

    @property
    def assumes_role(self) -> bool:
        return bool(self._role_arn) and self._sts is not None

    def signing(self, now: datetime, url_lifetime_seconds: int) -> Signing:
        """Credentials to sign, at ``now``, a URL meant to live ``url_lifetime_seconds``."""
        if not self.assumes_role:
            return Signing(self._default_s3, self._default_expiry())
        wanted_left = timedelta(seconds=min(url_lifetime_seconds, REUSE_SECONDS))
        with self._lock:
            session = self._session
            if session is None or session.expires_at is None or session.expires_at - now < wanted_left:
                session = self._session = self._assume()
            return session

    def _assume(self) -> Signing:
        assert self._sts is not None
        credentials = self._sts.assume_role(
            RoleArn=self._role_arn, RoleSessionName=self._session_name, DurationSeconds=SESSION_SECONDS
        )["Credentials"]
        import boto3

        s3 = boto3.client(
            "s3",
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            config=self._s3_config,
        )
        return Signing(s3, credentials["Expiration"])
