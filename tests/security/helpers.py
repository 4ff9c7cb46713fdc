"""Shared by the security tests: hostile organizations seeded into the running local stack, and exports."""

from __future__ import annotations

import secrets
import string
import zlib
from pathlib import Path
from typing import Any

import yaml
from data_export.ids import new_id

from tests.e2e.client import BASE, call, wait_for_job

_KEY_BODY_ALPHABET = string.ascii_letters + string.digits
CREATED_AT = "2025-01-01T00:00:00+00:00"


def new_key(prefix: str = "csb") -> str:
    """A fresh, well-formed raw API key (32-character body, CRC-32 checksum)."""
    body = "".join(secrets.choice(_KEY_BODY_ALPHABET) for _ in range(32))
    return f"{prefix}_{body}_{zlib.crc32(body.encode()):08x}"


def organization(name: str, key: str, **sections: list[dict[str, Any]]) -> dict[str, Any]:
    """One organization of a seed fixture with an owner and a csb key; ``sections`` adds records."""
    organization_id = new_id()
    return {
        "organization": {"id": organization_id, "name": name, "slug": name.lower(), "created_at": CREATED_AT},
        "members": [
            {
                "id": new_id(),
                "email": "owner@hostile.example",
                "name": "Owner",
                "role": "owner",
                "joined_at": CREATED_AT,
            }
        ],
        "api_keys": [{"id": new_id(), "name": "server", "key": key, "created_at": CREATED_AT}],
        **sections,
    }


def seed(stack: Any, folder: Path, *organizations: dict[str, Any]) -> Path:
    """Write a fixture to ``folder`` and load it into the running stack's stores, as the seed command does."""
    from data_export.settings import get_settings
    from data_export_cli.seed import seed_file

    path = folder / "fixture.yaml"
    # Non-ASCII characters go out escaped: PyYAML writes some raw ones (NEL, U+0085) that it reads back
    # as a different character. Key order is kept, as a person would have typed it.
    document = {"format": 1, "organizations": list(organizations)}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="ascii")
    seed_file(
        path, dynamodb_client=stack.client("dynamodb"), s3_client=stack.client("s3"), settings=get_settings()
    )
    return path


def export(
    api_url: str, organization_id: str, key: str, archive_format: str, timeout: float = 300
) -> tuple[dict[str, Any], bytes]:
    """Request an export over HTTP, wait for it, and download it: (the finished job, the archive's bytes)."""
    reply = call("POST", f"{api_url}{BASE}/{organization_id}?archive_format={archive_format}", key)
    assert reply.status == 200, reply.body
    job = wait_for_job(api_url, organization_id, reply.json()["job_id"], key, timeout)
    assert job["status"] == "completed", job
    download = call("GET", job["download_url"])
    assert download.status == 200, download.body[:500]
    return job, download.body
