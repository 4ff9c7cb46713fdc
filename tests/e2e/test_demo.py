"""The README's demo command works: it serves, seeds, exports, polls, downloads and verifies by itself."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path


def test_demo_exports_and_verifies_the_example(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "data_export_cli.main", "demo", "--format", "zip", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "verified: every record and every binary matches the fixture" in result.stdout
    assert "kettle-side.png" in result.stdout  # the missing asset is reported, not hidden
    (archive,) = tmp_path.glob("acme-coffee-export-*.zip")
    with zipfile.ZipFile(archive) as opened:
        assert opened.testzip() is None
    # The client's own checks ran: the archive's SHA-256 and every file against the manifest.
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert f"SHA-256 {digest}, 26 files match the manifest" in result.stdout
    assert "completed 100.0% 7/7 sections" in result.stdout
