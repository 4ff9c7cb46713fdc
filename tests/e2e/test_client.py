"""The `data-export` client end to end against the local stack: export in both formats (once through the
installed command in a subprocess), resumed downloads (a connection cut by a proxy; a .part left by an
earlier run), a tampered download, a refused key, status, list, and a deleted archive.

The subprocess runs behind a small forward proxy (tests/e2e/proxy.py: `http_proxy`, which urllib honours)
that records every request and can hang up mid-response: that is how the tests see the Range requests, the
fresh signed URLs and that the API key never goes to storage."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from data_export_cli.main import main

from tests.archive_checks import ACME
from tests.e2e.client import BASE, call, wait_for_job
from tests.e2e.proxy import (  # its `proxy` fixture: a recording proxy for the command in a subprocess
    Proxy,
    proxy_fixture,  # noqa: F401
    run_cli,
)
from tests.security.helpers import export, new_key, organization, seed

ACME_KEY = "csb_uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo_b5b88299"
REVOKED_KEY = "csb_2ym7FgoRF9Hvrby6WjKt989NUzo4l7Hx_035ce1bd"


def assert_plain(text: str) -> None:
    assert "\r" not in text and "\x1b" not in text


@pytest.fixture(scope="module")
def finished_zip(api_url: str) -> dict[str, Any]:
    """A completed zip export of the example organization and its bytes, for the download tests."""
    reply = call("POST", f"{api_url}{BASE}/{ACME}?archive_format=zip", ACME_KEY)
    assert reply.status == 200, reply.body
    job = wait_for_job(api_url, ACME, reply.json()["job_id"], ACME_KEY)
    assert job["status"] == "completed", job
    archive = call("GET", job["download_url"]).body
    assert hashlib.sha256(archive).hexdigest() == job["archive_sha256"]
    return {"job": job, "archive": archive}


def test_export_zip_with_the_installed_command(api_url: str, proxy: Proxy, tmp_path: Path) -> None:
    result = run_cli(
        ["export", ACME, "--format", "zip", "-o", f"{tmp_path}/"],
        proxy,
        DATA_EXPORT_API_KEY=ACME_KEY,  # key and endpoint from the environment
        DATA_EXPORT_ENDPOINT=api_url,
    )
    assert result.returncode == 0, result.stderr
    assert_plain(result.stdout)
    (archive,) = tmp_path.iterdir()  # no .part left behind
    assert archive.name.startswith("acme-coffee-export-") and archive.suffix == ".zip"
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    lines = result.stdout.splitlines()
    assert lines[-1].startswith(f"verified {archive}: SHA-256 {sha256}, ")
    assert lines[-1].endswith("files match the manifest")
    # A line per finished section, with what went wrong in it.
    assert any(line.startswith("  products      completed  4 records, 5 binaries (") for line in lines)
    job_id = lines[0].split()[1]
    assert call("GET", f"{api_url}{BASE}/{ACME}/{job_id}", ACME_KEY).json()["archive_sha256"] == sha256
    # The archive came through the /download redirect, from storage, without the API key.
    assert ("GET", f"{BASE}/{ACME}/{job_id}/download") in proxy.api_calls(api_url)
    ((url, headers),) = proxy.storage_gets(api_url)
    assert "X-Amz-Signature=" in url and "x-api-key" not in headers and "range" not in headers


def test_export_tar_gz_in_process(
    api_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATA_EXPORT_API_KEY", raising=False)
    target = tmp_path / "mine.tar.gz"
    code = main(
        [
            "export",
            ACME,
            "--format",
            "tar.gz",
            "--endpoint",
            api_url,
            "--api-key",
            ACME_KEY,
            "-o",
            str(target),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert_plain(out)
    assert out.splitlines()[-1].startswith(f"verified {target}: SHA-256 ")
    assert "files match the manifest" in out and "warning" not in out
    assert [p.name for p in tmp_path.iterdir()] == ["mine.tar.gz"]


def test_a_download_cut_midway_resumes_with_range(
    api_url: str, proxy: Proxy, finished_zip: dict[str, Any], tmp_path: Path
) -> None:
    job, archive = finished_zip["job"], finished_zip["archive"]
    proxy.cut_downloads_after = [3_000_000]
    target = tmp_path / "cut.zip"
    result = run_cli(
        [
            "export",
            ACME,
            "--job",
            job["job_id"],
            "-o",
            str(target),
            "--endpoint",
            api_url,
            "--api-key",
            ACME_KEY,
        ],
        proxy,
    )
    assert result.returncode == 0, result.stderr
    assert "download interrupted (connection closed at byte 3000000" in result.stdout
    assert target.read_bytes() == archive
    gets = proxy.storage_gets(api_url)
    assert [headers.get("range") for _, headers in gets] == [None, "bytes=3000000-"]
    # A freshly signed URL for each attempt (the same text when signed within the same second).
    assert proxy.api_calls(api_url).count(("GET", f"{BASE}/{ACME}/{job['job_id']}/download")) == 2
    assert all("x-api-key" not in headers for _, headers in gets)


def test_a_part_file_left_by_an_earlier_run_is_continued(
    api_url: str, proxy: Proxy, finished_zip: dict[str, Any], tmp_path: Path
) -> None:
    job, archive = finished_zip["job"], finished_zip["archive"]
    target = tmp_path / "again.zip"
    Path(f"{target}.part").write_bytes(archive[:1_234_567])
    result = run_cli(
        [
            "export",
            ACME,
            "--job",
            job["job_id"],
            "-o",
            str(target),
            "--endpoint",
            api_url,
            "--api-key",
            ACME_KEY,
        ],
        proxy,
    )
    assert result.returncode == 0, result.stderr
    assert f"resuming the download of {target}.part at byte 1234567 of {len(archive)}" in result.stdout
    assert [headers.get("range") for _, headers in proxy.storage_gets(api_url)] == ["bytes=1234567-"]
    assert target.read_bytes() == archive and not Path(f"{target}.part").exists()


def test_a_tampered_download_fails_naming_the_file(
    api_url: str, finished_zip: dict[str, Any], tmp_path: Path
) -> None:
    job, archive = finished_zip["job"], finished_zip["archive"]
    target = tmp_path / "tampered.zip"
    part = Path(f"{target}.part")
    prefix = bytearray(archive[:2_000_000])
    prefix[1_000_000] ^= 0xFF
    part.write_bytes(bytes(prefix))
    result = run_cli(
        [
            "export",
            ACME,
            "--job",
            job["job_id"],
            "-o",
            str(target),
            "--endpoint",
            api_url,
            "--api-key",
            ACME_KEY,
        ]
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"data-export: error: checksum mismatch: {part} has SHA-256 ")
    assert f"the API says {job['archive_sha256']}" in line
    assert not target.exists() and not part.exists()  # the next run starts afresh


def test_a_refused_key_exits_with_the_api_message(api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    refused = call("POST", f"{api_url}{BASE}/{ACME}?archive_format=zip", REVOKED_KEY)
    assert refused.status in (401, 403)
    code = main(["export", ACME, "--endpoint", api_url, "--api-key", REVOKED_KEY])
    _, err = capsys.readouterr()
    assert code == 1
    body = refused.json()
    assert err == f"data-export: error: {body['message']} (HTTP {refused.status} {body['error']})\n"


def test_status(api_url: str, finished_zip: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    job = finished_zip["job"]
    common = ["--endpoint", api_url, "--api-key", ACME_KEY]
    assert main(["status", ACME, job["job_id"], "--json", *common]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {k: shown[k] for k in ("job_id", "status", "archive_sha256", "file_size_bytes", "sections")} == {
        k: job[k] for k in ("job_id", "status", "archive_sha256", "file_size_bytes", "sections")
    }
    assert main(["status", ACME, job["job_id"], *common]) == 0
    summary = capsys.readouterr().out
    assert f"job       {job['job_id']} (zip, format 1.0)" in summary
    assert f"sha256    {job['archive_sha256']}" in summary
    assert "status    completed 100.0%, 7/7 sections, 19 records, 7 binaries" in summary


@pytest.fixture
def own_organization(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A small organization of the test's own: its exports are the test's alone to list or delete."""
    key = new_key()
    fixture = organization("ClientTest", key)
    seed(stack, tmp_path_factory.mktemp("client-org"), fixture)
    return fixture["organization"]["id"], key


def test_list_follows_next_token_with_all(
    api_url: str, own_organization: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    organization_id, key = own_organization
    first, _ = export(api_url, organization_id, key, "zip")
    second, _ = export(api_url, organization_id, key, "tar.gz")
    common = ["--endpoint", api_url, "--api-key", key]
    assert main(["list", organization_id, "--limit", "1", *common]) == 0
    one_page = capsys.readouterr().out.splitlines()
    assert one_page[0].startswith(f"{second['job_id']}  completed  tar.gz ")
    assert one_page[1:] == ["(more: --all, or --limit higher than 1)"]
    assert main(["list", organization_id, "--limit", "1", "--all", *common]) == 0  # pages of one
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in listed] == [
        [second["job_id"], "completed", "tar.gz"],
        [first["job_id"], "completed", "zip"],
    ]


def test_a_deleted_archive_is_reported(
    api_url: str, own_organization: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    organization_id, key = own_organization
    common = ["--endpoint", api_url, "--api-key", key]
    assert main(["export", organization_id, "-o", f"{tmp_path}/", *common]) == 0
    job_id = capsys.readouterr().out.splitlines()[0].split()[1]
    assert main(["cancel", organization_id, job_id, *common]) == 0
    assert capsys.readouterr().out == f"export {job_id}: archive deleted\n"
    shutil.rmtree(tmp_path)
    assert main(["export", organization_id, "--job", job_id, "-o", f"{tmp_path}/", *common]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"data-export: error: export {job_id}: The archive was deleted")
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
