"""The end-to-end demo: local stack, seeded example, an export requested over HTTP with the client (polled
with visible progress, downloaded, its SHA-256 and every file checked against the manifest), then verified
record by record and byte by byte against the fixture."""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

from data_export_cli.seed import Fixture, OrganizationData, load_fixture

TIMEOUT_SECONDS = 300


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
    """Export through the client (live progress, download from /download, SHA-256 and manifest checks),
    then compare the archive with the fixture itself."""
    from data_export_cli.client import ClientError, Display, ExportApi, ExportRun, export_archive
    from data_export_cli.gateway import ApiGateway
    from data_export_cli.main import _start_stack
    from data_export_cli.worker import QueuePoller

    loaded = load_fixture(fixture)
    organization = loaded.organizations[0]
    api_key = next(key.key for key in organization.api_keys if key.prefix == "csb" and key.is_active)
    stack = _start_stack([fixture])
    gateway = ApiGateway(stack, "127.0.0.1", 0).start()
    poller = QueuePoller(stack).start()
    display = Display(sys.stdout)
    run = ExportRun()
    try:
        print(f"API {gateway.url}: exporting organization {organization.id} as {archive_format}")
        try:
            target = export_archive(
                ExportApi(gateway.url, api_key),
                organization.id,
                display,
                run,
                archive_format=archive_format,
                timeout=TIMEOUT_SECONDS,
                output=f"{out_dir}/",
            )
        except ClientError as error:
            print(f"EXPORT FAILED: {error}", file=sys.stderr)
            return 1
        problems = verify_archive(target, loaded, organization)
        if problems:
            print("VERIFY FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        print("verified: every record and every binary matches the fixture")
        return 0
    finally:
        display.clear()
        poller.stop()
        gateway.stop()
        stack.stop()
