"""The end-to-end demo: local stack, seeded example, an export requested over HTTP, polled with visible
progress, downloaded, and verified record by record and byte by byte against the fixture."""

from __future__ import annotations

import json
import sys
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import yaml

from data_export_cli.seed import Fixture, OrganizationData, load_fixture

POLL_INTERVAL_SECONDS = 0.5
TIMEOUT_SECONDS = 300


def http_json(method: str, url: str, api_key: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, method=method, headers={"X-API-Key": api_key})  # noqa: S310 - local URL
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def read_archive(path: Path) -> dict[str, bytes]:
    """Every file of the archive by its path inside the top-level folder."""
    files: dict[str, bytes] = {}
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                files[info.filename.split("/", 1)[1]] = archive.read(info)
    else:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive.getmembers():
                extracted = archive.extractfile(member)
                if extracted is not None:
                    files[member.name.split("/", 1)[1]] = extracted.read()
    return files


def verify_archive(path: Path, fixture: Fixture, organization: OrganizationData) -> list[str]:
    """Compare the archive with the fixture; returns the problems found (empty when all is well)."""
    files = read_archive(path)
    problems: list[str] = []
    manifest = yaml.safe_load(files.get("manifest.yaml", b"{}")) or {}
    inventory = {section["key"]: section for section in manifest.get("sections", [])}
    for section in ("organization", "members", "api_keys", "brands", "products", "offers", "locations"):
        records = [organization.organization] if section == "organization" else getattr(organization, section)
        reported = inventory.get(section, {}).get("record_count")
        if reported != len(records):
            problems.append(f"{section}: manifest says {reported} records, fixture has {len(records)}")
        for record in records:
            name = (
                "organization/organization.yaml"
                if section == "organization"
                else f"{section}/{record.id}.yaml"
            )
            if name not in files:
                problems.append(f"missing {name}")
                continue
            exported = yaml.safe_load(files[name])
            source = record.as_typed()
            source.pop("key", None)
            for field, value in source.items():
                binaries = value if isinstance(value, list) else [value]
                if isinstance(value, (dict, list)) and all(
                    isinstance(b, dict) and "filename" in b for b in binaries
                ):
                    got = exported[field] if isinstance(exported[field], list) else [exported[field]]
                    for expected, binary in zip(binaries, got, strict=True):
                        problems.extend(_verify_binary(fixture, expected, binary, files, name))
                elif exported.get(field) != value:
                    problems.append(f"{name}: {field} is {exported.get(field)!r}, expected {value!r}")
    return problems


def _verify_binary(
    fixture: Fixture, source: dict[str, Any], exported: dict[str, Any], files: dict[str, bytes], where: str
) -> list[str]:
    from data_export_cli.seed import Binary

    binary = Binary.model_validate(source)
    expected = fixture.binary_bytes(binary)
    if expected is None:
        return (
            []
            if exported.get("missing") is True
            else [f"{where}: {binary.filename} should be reported missing"]
        )
    content = files.get(str(exported.get("file")))
    if content != expected:
        return [f"{where}: {binary.filename} differs from the source ({exported.get('file')})"]
    return []


def run_demo(*, fixture: Path, archive_format: str, out_dir: Path) -> int:
    from data_export_cli.gateway import ApiGateway
    from data_export_cli.main import _start_stack
    from data_export_cli.worker import QueuePoller

    loaded = load_fixture(fixture)
    organization = loaded.organizations[0]
    api_key = next(key.key for key in organization.api_keys if key.prefix == "csb" and key.is_active)
    stack = _start_stack([fixture])
    gateway = ApiGateway(stack, "127.0.0.1", 0).start()
    poller = QueuePoller(stack).start()
    try:
        base = f"{gateway.url}/dashboard/api/v1/data-export/{organization.id}"
        status, job = http_json("POST", f"{base}?archive_format={archive_format}", api_key)
        print(
            f"POST {base}?archive_format={archive_format} -> {status}: "
            f"job {job.get('job_id')} {job.get('status')}"
        )
        if status != 200:
            print(json.dumps(job, indent=2), file=sys.stderr)
            return 1
        deadline = time.monotonic() + TIMEOUT_SECONDS
        seen = ""
        while job["status"] in ("pending", "processing") and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_SECONDS)
            status, job = http_json("GET", f"{base}/{job['job_id']}", api_key)
            line = " ".join(
                f"{s['key']}:{s['status'][:4]}({s['record_count']}r/{s['binary_count']}b)"
                for s in job["sections"]
            )
            if line != seen:
                print(f"  {job['status']:<10} {line}")
                seen = line
        if job["status"] != "completed":
            print(f"export ended {job['status']}: {job.get('error')}", file=sys.stderr)
            return 1
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / job["output_filename"]
        with urllib.request.urlopen(job["download_url"], timeout=60) as response:  # noqa: S310 - local URL
            target.write_bytes(response.read())
        print(
            f"downloaded {target} ({target.stat().st_size} bytes; API says {job['file_size_bytes']}), "
            f"link valid until {job['expires_at']}"
        )
        problems = verify_archive(target, loaded, organization)
        for section in job["sections"]:
            if section["error"]:
                print(f"  note: {section['key']}: {section['error']}")
        if problems or target.stat().st_size != job["file_size_bytes"]:
            print("VERIFY FAILED:\n  " + "\n  ".join(problems or ["size differs"]), file=sys.stderr)
            return 1
        print("verified: every record and every binary matches the fixture")
        return 0
    finally:
        poller.stop()
        gateway.stop()
        stack.stop()
