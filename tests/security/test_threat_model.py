"""docs/threat-model.md names the tests that prove its controls: every one of them must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
THREAT_MODEL = ROOT / "docs" / "threat-model.md"
# `tests/x.py`, `tests/x.py::test_y`, or `::test_y` (a further test of the file named just before).
_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")


def references() -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    current = ""
    for file, function in _REFERENCE.findall(THREAT_MODEL.read_text(encoding="utf-8")):
        current = file or current
        if current and (file or function):
            found.append((current, function or None))
    return found


def test_every_test_the_threat_model_names_exists() -> None:
    named = references()
    assert len(named) > 40
    missing = []
    for file, function in named:
        path = ROOT / file
        if not path.is_file():
            missing.append(file)
        elif function and not re.search(
            rf"^def {function}\(", path.read_text(encoding="utf-8"), re.MULTILINE
        ):
            missing.append(f"{file}::{function}")
    assert not missing, missing
