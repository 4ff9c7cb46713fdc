"""`data-export import` end to end: the installed command in a subprocess against the local stack's real
import API and pipeline (IAM and limits enforced), behind a small recording forward proxy that sees every
request (tests/e2e/proxy.py), including the PUTs to storage's presigned URLs.

The round trip: the example organization exported as a zip by `data-export export`, dry-run into an empty
organization (nothing changes), imported (the same brands, products, offers and locations, ids mapped, the
same binaries byte for byte), imported again (all existing). Also: an upload interrupted by Ctrl-C after
its first part and resumed by running the command again (only the other part is sent), and a tampered
archive refused (exit 1, the problem printed). The stack uploads archives over 1 MiB in 5 MiB parts
(tests/conftest.py): the example's archive (about 7.8 MB) is two parts."""

from __future__ import annotations

import io
import signal
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.archive_checks import ACME, archive_files
from tests.e2e.proxy import (  # its `proxy` fixture: a recording proxy for the command in a subprocess
    Proxy,
    cli_command,
    cli_environment,
    proxy_fixture,  # noqa: F401
    run_cli,
)
from tests.round_trip import ACME_KEY, IMPORT_BASE, comparable, empty_organization, records_of
from tests.security.helpers import export

DATA_SECTIONS = ("brands", "products", "offers", "locations")


def as_user(api_url: str, key: str) -> dict[str, str]:
    """Key and endpoint from the environment, as a user would give them."""
    return {"DATA_EXPORT_API_KEY": key, "DATA_EXPORT_ENDPOINT": api_url}


def run_as_user(
    args: list[str], api_url: str, key: str, proxy: Proxy | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed command with `key` and `api_url` in its environment, output captured."""
    return run_cli(args, proxy, **as_user(api_url, key))


@pytest.fixture(scope="module")
def acme_zip(api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example organization exported by the command, as a user would before importing it."""
    folder = tmp_path_factory.mktemp("acme")
    result = run_as_user(["export", ACME, "--format", "zip", "-o", f"{folder}/"], api_url, ACME_KEY)
    assert result.returncode == 0, result.stderr
    (archive,) = folder.iterdir()
    return archive


def a_copy_and_an_empty_organization(
    stack: Any, acme_zip: Path, folder: Path, name: str
) -> tuple[Path, Path, str, str]:
    """The example's archive copied into `folder` and a new empty organization to import it into:
    (the archive, its state file to be, the organization's id, its key)."""
    archive = folder / acme_zip.name
    archive.write_bytes(acme_zip.read_bytes())
    target, key = empty_organization(stack, folder / "seed", name)
    return archive, archive.with_name(archive.name + ".import.json"), target, key


def section_lines(stdout: str) -> dict[str, str]:
    """`  products: 4 created, ...` lines by section."""
    lines = {}
    for line in stdout.splitlines():
        if line.startswith("  ") and ": " in line:
            key, rest = line.strip().split(": ", 1)
            lines[key] = rest
    return lines


def data_records(api_url: str, organization_id: str, key: str) -> dict[str, dict[str, Any]]:
    _, data = export(api_url, organization_id, key, "zip")
    records = records_of(archive_files(data, "zip"))
    return {section: records.get(section, {}) for section in DATA_SECTIONS}


def test_round_trip_into_an_empty_organization(
    stack: Any, api_url: str, acme_zip: Path, proxy: Proxy, tmp_path: Path
) -> None:
    archive, state, target, key = a_copy_and_an_empty_organization(stack, acme_zip, tmp_path, "Empty")

    # A dry run: what would be created, and nothing is.
    dry = run_as_user(["import", str(archive), target, "--mode", "copy", "--dry-run"], api_url, key, proxy)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "\r" not in dry.stdout
    assert section_lines(dry.stdout) | {"organization": "..."} == {
        "organization": "...",
        "members": "skipped (never imported: people are invited to an organization, not copied into it)",
        "api_keys": "skipped (never imported: keys are secrets, and an export holds only their metadata)",
        "brands": "2 to create, 0 existing, 0 invalid, 1 binaries",
        "products": "4 to create, 0 existing, 0 invalid, 5 binaries",
        "offers": "3 to create, 0 existing, 0 invalid, 0 binaries",
        "locations": "2 to create, 0 existing, 0 invalid, 0 binaries",
    }
    assert (
        "fields to merge (country, description, logo, settings, website)"
        in section_lines(dry.stdout)["organization"]
    )
    assert data_records(api_url, target, key) == {section: {} for section in DATA_SECTIONS}
    assert sorted(p or 0 for p in proxy.parts_put()) == [1, 2]  # two 5 MiB parts
    # Storage never gets the API key; the API always does.
    assert all("x-api-key" not in headers for _, headers in proxy.storage_puts())
    assert state.exists()  # the dry run's upload is kept for the import

    # The import: the uploaded archive is started for real, not uploaded again.
    proxy.seen.clear()
    applied = run_as_user(["import", str(archive), target, "--mode", "copy"], api_url, key, proxy)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert proxy.storage_puts() == []
    assert "continuing import " in applied.stdout and " started again: validating" in applied.stdout
    outcome = section_lines(applied.stdout)
    assert outcome["brands"] == "2 created, 0 existing, 0 invalid, 1 binaries"
    assert outcome["products"] == "4 created, 0 existing, 0 invalid, 5 binaries"
    assert outcome["offers"] == "3 created, 0 existing, 0 invalid, 0 binaries"
    assert outcome["locations"] == "2 created, 0 existing, 0 invalid, 0 binaries"
    assert not state.exists()

    # The organization's next export holds the same data: ids dropped, references by what they point at,
    # each binary by the SHA-256 of its bytes (comparable).
    _, copied = export(api_url, target, key, "zip")
    source_files, copied_files = archive_files(acme_zip.read_bytes(), "zip"), archive_files(copied, "zip")
    assert comparable(copied_files) == comparable(source_files)
    for section in DATA_SECTIONS:
        assert len(records_of(copied_files)[section]) == len(records_of(source_files)[section])

    # Again: a new import, and everything is there already.
    again = run_as_user(["import", str(archive), target, "--mode", "copy"], api_url, key, proxy)
    assert again.returncode == 0, again.stdout + again.stderr
    outcome = section_lines(again.stdout)
    assert outcome["brands"] == "0 created, 2 existing, 0 invalid, 0 binaries"
    assert outcome["products"] == "0 created, 4 existing, 0 invalid, 0 binaries"
    assert outcome["offers"] == "0 created, 3 existing, 0 invalid, 0 binaries"
    assert outcome["locations"] == "0 created, 2 existing, 0 invalid, 0 binaries"
    _, copied_again = export(api_url, target, key, "zip")
    assert comparable(archive_files(copied_again, "zip")) == comparable(copied_files)


def test_an_upload_interrupted_after_its_first_part_resumes(
    stack: Any, api_url: str, acme_zip: Path, proxy: Proxy, tmp_path: Path
) -> None:
    archive, state, target, key = a_copy_and_an_empty_organization(stack, acme_zip, tmp_path, "Resumed")

    # Part 2's PUT is held by the proxy; once part 1 is in storage, Ctrl-C.
    proxy.hold_part = 2
    args = ["import", str(archive), target, "--mode", "copy"]
    process = subprocess.Popen(
        cli_command() + args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_environment(proxy, **as_user(api_url, key)),
    )
    try:
        assert proxy.held.wait(120), "part 2 never came"
        deadline = time.monotonic() + 60
        while not any(
            method == "PUT" and "partNumber=1&" in url + "&" and status == 200
            for method, url, status in list(proxy.answered)
        ):
            assert time.monotonic() < deadline, "part 1 never reached storage"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proxy.release.set()  # the held PUT is dropped, as a connection cut by the Ctrl-C would be
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stdout + stderr
    assert "Run the same command again to resume the upload" in stderr
    assert state.exists()
    import_id = stdout.splitlines()[0].split()[1]

    proxy.seen.clear()
    proxy.hold_part = None
    resumed = run_as_user(args, api_url, key, proxy)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"continuing import {import_id} (pending)" in resumed.stdout
    assert "resuming the upload: 1 part(s), 5.0 MiB of 7.4 MiB, already in storage" in resumed.stdout
    assert proxy.parts_put() == [2]  # only what storage lacked
    assert ("POST", f"{IMPORT_BASE}/{target}/{import_id}/upload") in proxy.api_calls(api_url)
    assert not any(
        method == "POST" and path == f"{IMPORT_BASE}/{target}" for method, path in proxy.api_calls(api_url)
    )  # no new import
    assert section_lines(resumed.stdout)["products"] == "4 created, 0 existing, 0 invalid, 5 binaries"
    assert not state.exists()


def test_a_tampered_archive_is_refused(stack: Any, api_url: str, acme_zip: Path, tmp_path: Path) -> None:
    """A binary changed inside the zip, the manifest left as it was: refused, nothing written."""
    source = zipfile.ZipFile(io.BytesIO(acme_zip.read_bytes()))
    changed_name = next(
        info.filename for info in source.infolist() if "/products/" in info.filename and info.file_size > 100
    )
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(tampered, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == changed_name:
                data = bytes([data[0] ^ 0xFF]) + data[1:]  # same size, other bytes
            out.writestr(info, data)
    target, key = empty_organization(stack, tmp_path / "seed", "Tampered")

    result = run_as_user(["import", str(tampered), target, "--mode", "copy"], api_url, key)
    assert result.returncode == 1, result.stdout + result.stderr
    path = changed_name.split("/", 1)[1]
    assert "archive refused:" in result.stdout
    assert any(line.startswith("  [") and path in line for line in result.stdout.splitlines()), result.stdout
    assert result.stderr.startswith("data-export: error: import ")
    assert "failed [archive_refused]" in result.stderr and path in result.stderr
    assert data_records(api_url, target, key) == {section: {} for section in DATA_SECTIONS}
    assert not tampered.with_name(tampered.name + ".import.json").exists()  # refused for good
