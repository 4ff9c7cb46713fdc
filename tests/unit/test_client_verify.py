"""The client's archive check: every file against the manifest's `files` list, in both formats."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from data_export_cli.client import ClientError, FileDigest, compare_with_manifest, verify_archive

TOP = "acme-coffee-export-job1"
CONTENT = {
    "organization/organization.yaml": b"id: org\nname: Acme\n",
    "products/p1.yaml": b"id: p1\n",
    "products/p1/images/huila caf\u00e9.jpg": bytes(range(256)) * 40,
}


def manifest_for(files: dict[str, bytes], **extra: object) -> bytes:
    listed = [
        {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for path, data in files.items()
    ]
    return yaml.safe_dump({"format_version": "1.0", "job_id": "job1", "files": listed, **extra}).encode()


def write_zip(path: Path, entries: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def write_tar_gz(path: Path, entries: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


WRITERS: dict[str, Callable[[Path, dict[str, bytes]], None]] = {"zip": write_zip, "tar.gz": write_tar_gz}


def build(tmp_path: Path, archive_format: str, files: dict[str, bytes], manifest: bytes | None) -> Path:
    entries = {f"{TOP}/{path}": data for path, data in files.items()}
    if manifest is not None:
        entries[f"{TOP}/manifest.yaml"] = manifest
    path = tmp_path / f"{TOP}.{archive_format}"
    WRITERS[archive_format](path, entries)
    return path


@pytest.fixture(params=["zip", "tar.gz"])
def archive_format(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_whole_archive_verifies(tmp_path: Path, archive_format: str) -> None:
    path = build(tmp_path, archive_format, CONTENT, manifest_for(CONTENT))
    result = verify_archive(path, archive_format, TOP)
    assert result.files == 3 and result.warning is None


def test_a_changed_file_is_named(tmp_path: Path, archive_format: str) -> None:
    tampered = {**CONTENT, "products/p1.yaml": b"id: p2\n"}  # same size, other bytes
    path = build(tmp_path, archive_format, tampered, manifest_for(CONTENT))
    with pytest.raises(ClientError, match=r"products/p1\.yaml: SHA-256 [0-9a-f]{64}, the manifest says"):
        verify_archive(path, archive_format, TOP)


def test_missing_and_extra_files_are_named(tmp_path: Path, archive_format: str) -> None:
    files = {k: v for k, v in CONTENT.items() if k != "products/p1.yaml"} | {"notes.txt": b"hi"}
    path = build(tmp_path, archive_format, files, manifest_for(CONTENT))
    with pytest.raises(ClientError, match=r"notes\.txt: in the archive but not listed.*\(and 1 more\)"):
        verify_archive(path, archive_format, TOP)


def test_no_files_list_is_a_warning_not_a_failure(tmp_path: Path, archive_format: str) -> None:
    path = build(tmp_path, archive_format, CONTENT, yaml.safe_dump({"format_version": "1.0"}).encode())
    result = verify_archive(path, archive_format, TOP)
    assert result.warning is not None and "no files list" in result.warning


def test_no_manifest_at_all_fails(tmp_path: Path, archive_format: str) -> None:
    path = build(tmp_path, archive_format, CONTENT, None)
    with pytest.raises(ClientError, match=f"no {TOP}/manifest.yaml in the archive"):
        verify_archive(path, archive_format, TOP)


def test_a_file_outside_the_top_folder_fails(tmp_path: Path, archive_format: str) -> None:
    path = tmp_path / f"x.{archive_format}"
    WRITERS[archive_format](path, {f"{TOP}/manifest.yaml": manifest_for({}), "elsewhere/evil.sh": b"rm"})
    with pytest.raises(ClientError, match=r"elsewhere/evil\.sh is outside"):
        verify_archive(path, archive_format, TOP)


def test_a_truncated_archive_fails_clearly(tmp_path: Path, archive_format: str) -> None:
    path = build(tmp_path, archive_format, CONTENT, manifest_for(CONTENT))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ClientError, match="cannot read"):
        verify_archive(path, archive_format, TOP)


def test_a_zip_entry_with_a_bad_crc_is_named(tmp_path: Path) -> None:
    path = tmp_path / "stored.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{TOP}/manifest.yaml", manifest_for({"a.bin": b"A" * 100}))
        archive.writestr(f"{TOP}/a.bin", b"A" * 100)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"A" * 100, b"A" * 99 + b"B"))  # stored: flip a byte of the content
    with pytest.raises(ClientError, match=rf"cannot read {TOP}/a.bin: Bad CRC-32"):
        verify_archive(path, "zip", TOP)


def test_compare_with_manifest_lists_every_difference_in_path_order() -> None:
    expected = {"a": FileDigest(1, "00"), "b": FileDigest(2, "11"), "c": FileDigest(3, "22")}
    actual = {"a": FileDigest(1, "00"), "b": FileDigest(5, "11"), "d": FileDigest(1, "33")}
    assert compare_with_manifest(expected, actual) == [
        "b: 5 bytes, the manifest says 2",
        "c: listed in the manifest but missing from the archive",
        "d: in the archive but not listed in the manifest",
    ]
