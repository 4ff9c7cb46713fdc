"""End to end over HTTP against the local stack: request, poll, download and check every record and
binary of the example organization, in both formats, with the real archive tools."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from data_export.models import ExportJobResponse

from tests.e2e.client import BASE, call, wait_for_job

ACME = "eHcFM2wk4RdyYG8yMrTGbQ"
OTHER = "TpR7vWk3Qx9mHc2NbY5sLe"
ACME_KEY = "csb_uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo_b5b88299"
SECTIONS = ["organization", "members", "api_keys", "brands", "products", "offers", "locations"]


def archive_files(data: bytes, archive_format: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    if archive_format == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert archive.testzip() is None
            for info in archive.infolist():
                assert info.flag_bits & 0x800, f"{info.filename}: UTF-8 flag not set"
                files[info.filename] = archive.read(info)
    else:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive.getmembers():
                assert member.isfile()
                extracted = archive.extractfile(member)
                assert extracted is not None
                files[member.name] = extracted.read()
    return files


@pytest.fixture(scope="module", params=["zip", "tar.gz"])
def exported(request: pytest.FixtureRequest, api_url: str) -> dict[str, Any]:
    archive_format = request.param
    reply = call("POST", f"{api_url}{BASE}/{ACME}?archive_format={archive_format}", ACME_KEY)
    assert reply.status == 200, reply.body
    started = ExportJobResponse.model_validate_json(reply.body)
    job = wait_for_job(api_url, ACME, started.job_id, ACME_KEY)
    download = call("GET", job["download_url"])
    assert download.status == 200
    return {
        "format": archive_format,
        "start": reply,
        "job": job,
        "download": download,
        "files": archive_files(download.body, archive_format),
    }


def test_start_answers_pending_job_with_location(exported: dict[str, Any]) -> None:
    start = exported["start"]
    body = start.json()
    assert body["status"] == "pending"
    assert body["archive_format"] == exported["format"]
    assert body["download_url"] is None and body["expires_at"] is None and body["file_size_bytes"] == 0
    assert [s["key"] for s in body["sections"]] == SECTIONS
    assert start.headers["Location"].endswith(f"{BASE}/{ACME}/{body['job_id']}")
    assert len(body["job_id"]) == 22


def test_completed_job_describes_a_downloadable_archive(exported: dict[str, Any]) -> None:
    job, download = exported["job"], exported["download"]
    ExportJobResponse.model_validate(job)
    assert job["status"] == "completed" and job["error"] is None
    assert job["file_size_bytes"] == len(download.body) > 5 * 1024 * 1024
    assert job["output_filename"] == f"acme-coffee-export-{job['job_id']}.{exported['format']}"
    assert f'filename="{job["output_filename"]}"' in download.headers.get("Content-Disposition", "")
    expires_at = datetime.fromisoformat(job["expires_at"])
    assert expires_at.utcoffset() is not None
    assert timedelta(minutes=50) < expires_at - datetime.now(UTC) <= timedelta(hours=1)
    counts = {s["key"]: (s["status"], s["record_count"], s["binary_count"]) for s in job["sections"]}
    assert counts == {
        "organization": ("completed", 1, 1),
        "members": ("completed", 3, 0),
        "api_keys": ("completed", 4, 0),
        "brands": ("completed", 2, 1),
        "products": ("completed", 4, 5),
        "offers": ("completed", 3, 0),
        "locations": ("completed", 2, 0),
    }
    products = next(s for s in job["sections"] if s["key"] == "products")
    assert "kettle-side.png" in products["error"]


def test_every_record_matches_the_source(exported: dict[str, Any], example: Any) -> None:
    files = exported["files"]
    top = exported["job"]["output_filename"].removesuffix("." + exported["format"])
    assert all(name.startswith(top + "/") for name in files)
    acme = next(org for org in example.organizations if org.id == ACME)
    for section in SECTIONS:
        records = [acme.organization] if section == "organization" else getattr(acme, section)
        for record in records:
            name = (
                f"{top}/organization/organization.yaml"
                if section == "organization"
                else f"{top}/{section}/{record.id}.yaml"
            )
            exported_record = yaml.safe_load(files[name])
            source = record.as_typed()
            if section == "api_keys":
                assert "key" not in exported_record and "key_hash" not in exported_record
                source.pop("key")
                source.setdefault("is_active", True)
            for field in ("logo", "images", "documents"):
                if field in source:
                    source.pop(field)
                    exported_record.pop(field)
            assert exported_record == source, name
    # Strings stay strings: GTINs with leading zeros, prices as text.
    product = yaml.safe_load(files[f"{top}/products/ZUF6rFErzk2LMU4DvbtjDA.yaml"])
    assert product["gtin"] == "00628176543215" and product["price"]["amount"] == "21.50"


def test_every_binary_matches_byte_for_byte(exported: dict[str, Any], example: Any) -> None:
    files = exported["files"]
    top = exported["job"]["output_filename"].removesuffix("." + exported["format"])
    acme = next(org for org in example.organizations if org.id == ACME)
    checked = 0
    for section, records, fields in (
        ("organization", [acme.organization], ("logo",)),
        ("brands", acme.brands, ("logo",)),
        ("products", acme.products, ("images", "documents")),
    ):
        for record in records:
            name = (
                f"{top}/organization/organization.yaml"
                if section == "organization"
                else f"{top}/{section}/{record.id}.yaml"
            )
            exported_record = yaml.safe_load(files[name])
            for field in fields:
                sources = getattr(record, field)
                if sources is None:
                    continue
                sources = sources if isinstance(sources, list) else [sources]
                refs = (
                    exported_record[field]
                    if isinstance(exported_record[field], list)
                    else [exported_record[field]]
                )
                for source, ref in zip(sources, refs, strict=True):
                    assert ref["filename"] == source.filename and ref["content_type"] == source.content_type
                    expected = example.binary_bytes(source)
                    if expected is None:
                        assert ref["missing"] is True and "file" not in ref
                        continue
                    assert ref["size_bytes"] == len(expected)
                    assert files[f"{top}/{ref['file']}"] == expected
                    checked += 1
    assert checked == 7
    assert f"{top}/products/CpWrfXcQ9K3QMjuiwcGWu8/images/huila café.jpg" in files
    assert f"{top}/products/ZUF6rFErzk2LMU4DvbtjDA/documents/spec sheet (2024).pdf" in files


def test_manifest_carries_version_and_inventory(exported: dict[str, Any]) -> None:
    top = exported["job"]["output_filename"].removesuffix("." + exported["format"])
    manifest = yaml.safe_load(exported["files"][f"{top}/manifest.yaml"])
    assert manifest["format_version"] == exported["job"]["format_version"] == "1.0"
    assert manifest["organization"] == {"id": ACME, "name": "Acme Coffee Roasters", "slug": "acme-coffee"}
    assert manifest["sections"] == exported["job"]["sections"]
    assert manifest["missing_assets"] == [
        {
            "section": "products",
            "record_id": "3xQmTqPZcRk7YhFw2VbNsd",
            "field": "images",
            "filename": "kettle-side.png",
        }
    ]
    datetime.fromisoformat(manifest["generated_at"])


def test_no_secret_and_no_other_organization_in_the_archive(exported: dict[str, Any], example: Any) -> None:
    blob = b"".join(exported["files"].values())
    for organization in example.organizations:
        for key in organization.api_keys:
            assert key.key.encode() not in blob
    assert OTHER.encode() not in blob
    assert b"Other Org Ltd" not in blob


def test_real_tools_open_the_archive(exported: dict[str, Any], tmp_path: Path) -> None:
    archive = tmp_path / exported["job"]["output_filename"]
    archive.write_bytes(exported["download"].body)
    if exported["format"] == "zip":
        commands = [["unzip", "-tq", str(archive)], ["jar", "tf", str(archive)], ["7z", "t", str(archive)]]
    else:
        commands = [["tar", "-tzf", str(archive)], ["bsdtar", "-tzf", str(archive)]]
    ran = 0
    for command in commands:
        if shutil.which(command[0]) is None:
            continue
        result = subprocess.run(command, capture_output=True, timeout=120, check=False)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
        ran += 1
    assert ran >= 1
    extract = tmp_path / "x"
    extract.mkdir()
    tool = (
        ["unzip", "-q", str(archive), "-d", str(extract)]
        if exported["format"] == "zip"
        else ["tar", "-xzf", str(archive), "-C", str(extract)]
    )
    subprocess.run(tool, check=True, timeout=120)
    extracted = {str(p.relative_to(extract)) for p in extract.rglob("*") if p.is_file()}
    assert extracted == set(exported["files"])
