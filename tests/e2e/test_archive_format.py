"""docs/archive-format.md holds for real exports over HTTP: the manifest validates against
docs/manifest.schema.json and lists every file with its size and SHA-256, the poll's archive_sha256 is the
downloaded file's, and the doc's own verification commands succeed on it (and fail on a tampered file)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from data_export.models import ExportJobResponse

from tests.archive_checks import ACME, archive_files, check_manifest_files
from tests.e2e.client import BASE, call, wait_for_job

ACME_KEY = "csb_uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo_b5b88299"
DOC = Path(__file__).resolve().parents[2] / "docs" / "archive-format.md"
DOC_ARCHIVE = "acme-coffee-export-S8yfMT73Q29pRJaQ7Y3QM9"


@pytest.fixture(scope="module", params=["zip", "tar.gz"])
def exported(request: pytest.FixtureRequest, api_url: str) -> dict[str, Any]:
    archive_format = request.param
    reply = call("POST", f"{api_url}{BASE}/{ACME}?archive_format={archive_format}", ACME_KEY)
    assert reply.status == 200, reply.body
    started = ExportJobResponse.model_validate_json(reply.body)
    job = wait_for_job(api_url, ACME, started.job_id, ACME_KEY)
    assert job["status"] == "completed", job
    download = call("GET", job["download_url"])
    assert download.status == 200
    return {"format": archive_format, "job": job, "data": download.body}


def test_the_archive_is_what_the_poll_says(exported: dict[str, Any]) -> None:
    job, data = exported["job"], exported["data"]
    assert len(data) == job["file_size_bytes"]
    assert job["archive_sha256"] == hashlib.sha256(data).hexdigest()
    assert job["s3_checksum_sha256"]


def test_the_manifest_lists_every_file_and_validates(exported: dict[str, Any]) -> None:
    job = exported["job"]
    top = job["output_filename"].removesuffix("." + exported["format"])
    manifest = check_manifest_files(archive_files(exported["data"], exported["format"]), top)
    assert manifest["sections"] == job["sections"]
    assert manifest["format_version"] == job["format_version"] == "1.0"


def doc_block(marker: str, language: str) -> str:
    """The doc's fenced code block of ``language`` that contains ``marker``."""
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return next(block for block in blocks if marker in block)


def test_the_docs_verification_by_hand_works(exported: dict[str, Any], tmp_path: Path) -> None:
    job, archive_format = exported["job"], exported["format"]
    top = job["output_filename"].removesuffix("." + archive_format)
    (tmp_path / job["output_filename"]).write_bytes(exported["data"])
    extract = f"unzip -q {top}.zip"
    script = doc_block("sha256sum --quiet -c", "sh").replace(DOC_ARCHIVE, top)
    assert extract in script
    if archive_format == "tar.gz":
        script = script.replace(extract, f"tar -xzf {top}.tar.gz")
    # The doc's python3 is any Python with PyYAML: this environment's.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def run(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    result = run(script)
    assert result.returncode == 0, result.stderr
    assert "every listed file is intact" in result.stdout and "no file missing or extra" in result.stdout

    # The same commands (on the files already extracted) catch a changed file, and an extra one.
    again = script.replace(extract, "true").replace(f"tar -xzf {top}.tar.gz", "true")
    member = tmp_path / top / "members" / "Djk5VzZQSmFWwcnyTKemEV.yaml"
    original = member.read_text()
    member.write_text(original.replace("Rosa", "Rose"))
    changed = run(again).stdout
    assert "Djk5VzZQSmFWwcnyTKemEV.yaml: FAILED" in changed and "every listed file is intact" not in changed
    member.write_text(original)
    assert "every listed file is intact" in run(again).stdout
    (tmp_path / top / "members" / "stray.yaml").write_text("id: stray\n")
    extra = run(again).stdout
    assert "every listed file is intact" in extra and "no file missing or extra" not in extra

    if archive_format == "zip":
        python = doc_block("import hashlib, zipfile, yaml", "python").replace(DOC_ARCHIVE, top)
        subprocess.run([sys.executable, "-c", python], cwd=tmp_path, check=True, timeout=120)
