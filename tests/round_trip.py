"""Round trips: an import over HTTP as any client makes it (create, upload to the presigned URLs, start,
poll), and the comparison of two exports' data without the ids a copy changes.

``comparable`` turns an archive's files into what must survive a copy: every record of the data sections
with its id dropped, each reference replaced by the referenced record's content key, and each binary by the
SHA-256 of its bytes. Timestamps are kept: a copy keeps them."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.client import call, wait_for_job

IMPORT_BASE = "/dashboard/api/v1/data-import"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DATA_SECTIONS = ("brands", "products", "offers", "locations")
_REFERENCES = {
    "products": {"brand_id": "brands"},
    "offers": {"product_id": "products", "location_id": "locations"},
}
_BINARY_FIELDS = {"organization": ("logo",), "brands": ("logo",), "products": ("images", "documents")}


def put(url: str, data: bytes) -> str:
    """PUT bytes to a presigned URL (no API key: it is S3's); the ETag S3 answers."""
    # An explicit type: urllib would send form-urlencoded, which S3 stores as is but moto parses as a form.
    request = urllib.request.Request(
        url, data=data, method="PUT", headers={"Content-Type": "application/octet-stream"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200, response.status
        return str(response.headers.get("ETag", ""))


def create_import(
    api_url: str, organization_id: str, key: str, size: int, mode: str = "copy", overwrite: bool = False
) -> dict[str, Any]:
    query = f"mode={mode}&size_bytes={size}" + ("&overwrite=true" if overwrite else "")
    reply = call("POST", f"{api_url}{IMPORT_BASE}/{organization_id}?{query}", key)
    assert reply.status == 200, reply.body
    return dict(reply.json())


def upload(job: dict[str, Any], data: bytes, parts: list[int] | None = None) -> None:
    """Upload the archive to the job's upload target (only ``parts`` of a multipart one, if given)."""
    target = job["upload"]
    if target["url"]:
        put(target["url"], data)
        return
    for part in target["parts"]:
        if parts is None or part["part_number"] in parts:
            put(part["url"], data[part["offset"] : part["offset"] + part["size_bytes"]])


def start_import(api_url: str, organization_id: str, key: str, import_id: str, dry_run: bool) -> Any:
    url = f"{api_url}{IMPORT_BASE}/{organization_id}/{import_id}/start?dry_run={str(dry_run).lower()}"
    return call("POST", url, key)


def wait_for_import(
    api_url: str, organization_id: str, import_id: str, key: str, timeout: float = 300
) -> dict[str, Any]:
    return wait_for_job(api_url, organization_id, import_id, key, timeout, base=IMPORT_BASE)


def import_archive(
    api_url: str,
    organization_id: str,
    key: str,
    data: bytes,
    *,
    mode: str = "copy",
    dry_run: bool = False,
    overwrite: bool = False,
    timeout: float = 300,
) -> dict[str, Any]:
    """The whole import of ``data`` over HTTP; the finished import job."""
    job = create_import(api_url, organization_id, key, len(data), mode, overwrite)
    upload(job, data)
    reply = start_import(api_url, organization_id, key, job["import_id"], dry_run)
    assert reply.status == 200, reply.body
    return wait_for_import(api_url, organization_id, job["import_id"], key, timeout)


def sections(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {section["key"]: section for section in job["sections"]}


def records_of(files: dict[str, bytes]) -> dict[str, dict[str, dict[str, Any]]]:
    """section -> record id -> record, of an archive's files (names with their top folder)."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for name, data in files.items():
        parts = name.split("/")
        if len(parts) == 3 and parts[2].endswith(".yaml"):
            record = yaml.load(data, Loader=_LOADER)
            found.setdefault(parts[1], {})[str(record["id"])] = record
    return found


def comparable(files: dict[str, bytes]) -> dict[str, list[str]]:
    """Each data section's records, ids dropped, references and binaries by content (sorted JSON lines)."""
    top = next(iter(files)).split("/")[0]
    records = records_of(files)
    keys: dict[tuple[str, str], str] = {}

    def content_key(section: str, record_id: str) -> str:
        if (section, record_id) not in keys:
            keys[(section, record_id)] = json.dumps(canonical(section, records[section][record_id]))
        return keys[(section, record_id)]

    def canonical(section: str, record: dict[str, Any]) -> dict[str, Any]:
        out = {name: value for name, value in record.items() if name != "id"}
        for name, target in _REFERENCES.get(section, {}).items():
            if isinstance(out.get(name), str):
                out[name] = content_key(target, out[name])
        for name in _BINARY_FIELDS.get(section, ()):
            value = out.get(name)
            if value is None:
                continue
            refs = value if isinstance(value, list) else [value]
            digests = []
            for ref in refs:
                digest = dict(ref)
                path = digest.pop("file", None)
                if path is not None:
                    digest["sha256"] = hashlib.sha256(files[f"{top}/{path}"]).hexdigest()
                digests.append(digest)
            out[name] = digests if isinstance(value, list) else digests[0]
        return out

    return {
        section: sorted(content_key(section, record_id) for record_id in records.get(section, {}))
        for section in DATA_SECTIONS
    }


def staged_import(
    stack: Any,
    organization_id: str,
    import_id: str,
    run_id: str,
    data: bytes,
    mode: str,
    status: str = "validating",
) -> Any:
    """An import as a start leaves it for its run (archive uploaded, job owned by ``run_id``), written as
    the admin: for tests that drive the run's steps themselves."""
    from datetime import UTC, datetime

    from data_export import wiring
    from data_export.models import ImportMode, ImportStatus
    from data_export.restore.service import archive_key
    from data_export.settings import get_settings
    from data_export.storage.imports import ImportJob, expires_ttl

    key = archive_key(organization_id, import_id)
    etag = stack.client("s3").put_object(Bucket=get_settings().exports_bucket, Key=key, Body=data)["ETag"]
    now = datetime.now(UTC)
    job = ImportJob(
        organization_id=organization_id,
        import_id=import_id,
        status=ImportStatus(status),
        mode=ImportMode(mode),
        dry_run=False,
        size_bytes=len(data),
        object_key=key,
        archive_etag=etag,
        run_id=run_id,
        created_at=now,
        started_at=now,
        expires_ttl=expires_ttl(now, 7),
    )
    wiring.import_runner().imports.create(job)
    return job


ACME_KEY = "csb_uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo_b5b88299"
# The example organization's records of the imported sections.
ACME_COUNTS = {"brands": 2, "products": 4, "offers": 3, "locations": 2}


def empty_organization(stack: Any, folder: Path, name: str = "Empty") -> tuple[str, str]:
    """A new organization with its profile, one owner and one csb key, and nothing else: (its id, the key)."""
    from tests.security.helpers import new_key, organization, seed

    key = new_key()
    target = organization(name, key)
    folder.mkdir(parents=True, exist_ok=True)
    seed(stack, folder, target)
    return target["organization"]["id"], key
