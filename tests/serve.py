"""`data-export local serve` as a user runs it: a process of its own, read until its ready line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import REPO


@contextmanager
def local_serve(template: Path, seed: Path, log: Path) -> Iterator[dict[str, Any]]:
    """Runs `local serve --port 0 --seed SEED --template TEMPLATE`, its log (stderr) into ``log``; yields its
    ready line (api_url, aws_endpoint_url, the admin's keys) and stops it after."""
    with log.open("w", encoding="utf-8") as errors:
        serve = subprocess.Popen(
            [
                *(sys.executable, "-m", "data_export_cli.main", "local", "serve", "--port", "0"),
                *("--seed", str(seed), "--template", str(template)),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            assert serve.stdout is not None
            yield json.loads(serve.stdout.readline())
        finally:
            serve.terminate()
            serve.wait(timeout=60)
