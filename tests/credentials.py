"""Credentials for a test's own moto server.

moto's IAM checks are per process: once a local stack in this pytest process enforces them (as the session's
``stack`` fixture does), only identities it knows may call any moto server in the process, so a test's own
server is called as the stack's admin (what the stack put in the environment); else anything goes."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager


def test_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    }


def as_function(logical_id: str) -> AbstractContextManager[None]:
    """Test code doing what a function does (signing a download URL as the poll does) with its role, as the
    local stack runs that function: the admin may not, for one, assume the download-signing role."""
    from data_export_cli.iam import acting_as

    return acting_as(f"data-export-{logical_id}Role")
