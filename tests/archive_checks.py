"""Checks of an exported archive against the example fixture, shared by the tests of every build path:
each record equals its source, each binary equals its source byte for byte, the manifest is right, and the
real tools (unzip, 7z, jar, Java's ZipInputStream, tar, bsdtar) open it."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ACME = "eHcFM2wk4RdyYG8yMrTGbQ"
OTHER = "TpR7vWk3Qx9mHc2NbY5sLe"
SECTIONS = ["organization", "members", "api_keys", "brands", "products", "offers", "locations"]
EXAMPLE_SECTION_COUNTS = {
    "organization": ("completed", 1, 1),
    "members": ("completed", 3, 0),
    "api_keys": ("completed", 4, 0),
    "brands": ("completed", 2, 1),
    "products": ("completed", 4, 5),
    "offers": ("completed", 3, 0),
    "locations": ("completed", 2, 0),
}


def archive_files(data: bytes, archive_format: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    if archive_format == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert archive.testzip() is None
            for info in archive.infolist():
                assert info.flag_bits & 0x800, f"{info.filename}: UTF-8 flag not set"
                # Java's ZipInputStream rejects a STORED entry with a data descriptor; DEFLATED may have one.
                assert info.compress_type == zipfile.ZIP_DEFLATED or not info.flag_bits & 0x8, info.filename
                files[info.filename] = archive.read(info)
    else:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive.getmembers():
                assert member.isfile()
                extracted = archive.extractfile(member)
                assert extracted is not None
                files[member.name] = extracted.read()
        # Streaming mode reads only the first member of a multi-member gzip file: one member, all entries.
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|gz") as stream:
            assert [member.name for member in stream] == list(files)
    return files


def section_counts(sections: list[dict[str, Any]]) -> dict[str, tuple[str, int, int]]:
    return {s["key"]: (s["status"], s["record_count"], s["binary_count"]) for s in sections}


def _record_name(top: str, section: str, record_id: str) -> str:
    if section == "organization":
        return f"{top}/organization/organization.yaml"
    return f"{top}/{section}/{record_id}.yaml"


def check_records(files: dict[str, bytes], top: str, example: Any) -> None:
    """Every record of Acme, with the same fields and values as the source (binaries aside)."""
    assert all(name.startswith(top + "/") for name in files)
    acme = next(org for org in example.organizations if org.id == ACME)
    for section in SECTIONS:
        records = [acme.organization] if section == "organization" else getattr(acme, section)
        for record in records:
            name = _record_name(top, section, record.id)
            exported = yaml.safe_load(files[name])
            source = record.as_typed()
            if section == "api_keys":
                assert "key" not in exported and "key_hash" not in exported
                source.pop("key")
                source.setdefault("is_active", True)
            for field in ("logo", "images", "documents"):
                if field in source:
                    source.pop(field)
                    exported.pop(field)
            assert exported == source, name
    product = yaml.safe_load(files[f"{top}/products/ZUF6rFErzk2LMU4DvbtjDA.yaml"])
    assert product["gtin"] == "00628176543215" and product["price"]["amount"] == "21.50"


def check_binaries(files: dict[str, bytes], top: str, example: Any) -> int:
    """Every binary equals its source byte for byte, the missing one is marked; returns how many matched."""
    acme = next(org for org in example.organizations if org.id == ACME)
    checked = 0
    for section, records, fields in (
        ("organization", [acme.organization], ("logo",)),
        ("brands", acme.brands, ("logo",)),
        ("products", acme.products, ("images", "documents")),
    ):
        for record in records:
            exported = yaml.safe_load(files[_record_name(top, section, record.id)])
            for field in fields:
                sources = getattr(record, field)
                if sources is None:
                    continue
                sources = sources if isinstance(sources, list) else [sources]
                refs = exported[field] if isinstance(exported[field], list) else [exported[field]]
                for source, ref in zip(sources, refs, strict=True):
                    assert ref["filename"] == source.filename and ref["content_type"] == source.content_type
                    expected = example.binary_bytes(source)
                    if expected is None:
                        assert ref["missing"] is True and "file" not in ref
                        continue
                    assert ref["size_bytes"] == len(expected)
                    assert files[f"{top}/{ref['file']}"] == expected
                    checked += 1
    assert f"{top}/products/CpWrfXcQ9K3QMjuiwcGWu8/images/huila café.jpg" in files
    assert f"{top}/products/ZUF6rFErzk2LMU4DvbtjDA/documents/spec sheet (2024).pdf" in files
    return checked


def check_manifest(files: dict[str, bytes], top: str, job: dict[str, Any]) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(files[f"{top}/manifest.yaml"])
    assert manifest["format_version"] == job["format_version"] == "1.0"
    assert manifest["job_id"] == job["job_id"]
    assert manifest["organization"] == {"id": ACME, "name": "Acme Coffee Roasters", "slug": "acme-coffee"}
    assert manifest["sections"] == job["sections"]
    assert manifest["missing_assets"] == [
        {
            "section": "products",
            "record_id": "3xQmTqPZcRk7YhFw2VbNsd",
            "field": "images",
            "filename": "kettle-side.png",
        }
    ]
    datetime.fromisoformat(manifest["generated_at"])
    return manifest


def check_no_secret_nor_other_organization(files: dict[str, bytes], example: Any) -> None:
    blob = b"".join(files.values())
    for organization in example.organizations:
        for key in organization.api_keys:
            assert key.key.encode() not in blob
    assert OTHER.encode() not in blob and b"Other Org Ltd" not in blob


def check_with_real_tools(archive: Path, archive_format: str, expected: set[str], work: Path) -> int:
    """Test and extract with every archive tool present; returns how many tools ran."""
    if archive_format == "zip":
        commands = [
            ["unzip", "-tq", str(archive)],
            ["jar", "tf", str(archive)],
            ["7z", "t", str(archive)],
            ["bsdtar", "-tf", str(archive)],
        ]
    else:
        commands = [["tar", "-tzf", str(archive)], ["bsdtar", "-tzf", str(archive)]]
    ran = 0
    for command in commands:
        if shutil.which(command[0]) is None:
            continue
        result = subprocess.run(command, capture_output=True, timeout=120, check=False)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
        ran += 1
    if archive_format == "zip" and shutil.which("javac") and shutil.which("java"):
        ran += _check_with_zip_input_stream(archive, expected, work)
    extract = work / "extracted"
    extract.mkdir()
    tool = (
        ["unzip", "-q", str(archive), "-d", str(extract)]
        if archive_format == "zip"
        else ["tar", "-xzf", str(archive), "-C", str(extract)]
    )
    subprocess.run(tool, check=True, timeout=120)
    assert {str(p.relative_to(extract)) for p in extract.rglob("*") if p.is_file()} == expected
    return ran + 1


def _check_with_zip_input_stream(archive: Path, expected: set[str], work: Path) -> int:
    """Java's sequential reader, the strictest about local headers and data descriptors."""
    from tests.unit.test_archive_zip import JAVA_ZIP_CHECK

    classes = work / "java"
    classes.mkdir()
    (classes / "ZipCheck.java").write_text(JAVA_ZIP_CHECK)
    subprocess.run(["javac", "-d", str(classes), str(classes / "ZipCheck.java")], check=True, timeout=120)
    listed = subprocess.run(
        ["java", "-cp", str(classes), "ZipCheck", str(archive)], capture_output=True, timeout=120, check=True
    ).stdout.decode("utf-8")
    assert {line.split("\t")[0] for line in listed.splitlines()} == expected
    return 1


MANIFEST_SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "manifest.schema.json"


def check_manifest_files(files: dict[str, bytes], top: str) -> dict[str, Any]:
    """The manifest is valid against docs/manifest.schema.json, comes last, and lists every other file of the
    archive once, in archive order, with its exact size and SHA-256. ``files`` as ``archive_files`` gives
    them (in archive order)."""
    import hashlib
    import json

    import jsonschema

    name = f"{top}/manifest.yaml"
    assert list(files)[-1] == name, "manifest.yaml is the archive's last file"
    manifest: dict[str, Any] = yaml.safe_load(files[name])
    schema = json.loads(MANIFEST_SCHEMA.read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(manifest)
    listed = [f"{top}/{entry['path']}" for entry in manifest["files"]]
    assert listed == [other for other in files if other != name]
    for entry, path in zip(manifest["files"], listed, strict=True):
        assert entry["size"] == len(files[path]), path
        assert entry["sha256"] == hashlib.sha256(files[path]).hexdigest(), path
    return manifest


def s3_composite_checksum(s3: Any, bucket: str, key: str, data: bytes) -> str:
    """The ChecksumSHA256 S3 should keep for ``data`` stored as ``key``'s parts: base64 of the SHA-256 of the
    parts' SHA-256s (part sizes as S3 reports them), without the "-<parts>" suffix."""
    import base64
    import hashlib

    head = s3.head_object(Bucket=bucket, Key=key, PartNumber=1)
    digests, offset = [], 0
    for number in range(1, int(head.get("PartsCount", 1)) + 1):
        size = s3.head_object(Bucket=bucket, Key=key, PartNumber=number)["ContentLength"]
        digests.append(hashlib.sha256(data[offset : offset + size]).digest())
        offset += size
    assert offset == len(data)
    return base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()
