"""Helpers for the archive tests: which extractors exist, running them, comparing trees."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

# Extractors print and create non-ASCII names only under a UTF-8 locale.
UTF8_ENV = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z, even, so DOS time holds it exactly

UNSAFE_NAMES = [
    "",
    "/etc/passwd",
    "../escape.txt",
    "a/../../escape.txt",
    "a/./b.txt",
    ".",
    "a//b.txt",
    "dir/",
    "a\\b.txt",
    "nul\x00byte",
    "new\nline",
    "tab\tname",
    "del\x7fname",
    "c1\x85control",
    "lone\udcffsurrogate",
]


def has_tool(name: str) -> bool:
    return shutil.which(name) is not None


def require(*tools: str) -> None:
    missing = [tool for tool in tools if not has_tool(tool)]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def run(args: list[str | Path], *, cwd: Path | None = None, stdin: Path | None = None) -> str:
    """Run a tool, fail the test with its output if it exits non-zero, return its stdout."""
    with open(stdin, "rb") if stdin else open(os.devnull, "rb") as input_file:
        result = subprocess.run(
            [str(arg) for arg in args],
            check=False,
            cwd=cwd,
            env=UTF8_ENV,
            stdin=input_file,
            capture_output=True,
        )
    output = result.stdout.decode("utf-8", "replace")
    if result.returncode != 0:
        pytest.fail(
            f"{args} exited {result.returncode}:\n{output}\n{result.stderr.decode('utf-8', 'replace')}"
        )
    return output


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under root, keyed by its relative POSIX path."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()
    }


def sample_files() -> dict[str, bytes]:
    """Names and contents that exercise Unicode, spaces, emptiness and binary data."""
    rng = random.Random(7)
    return {
        "products/x/images/huila café.jpg": rng.randbytes(150_000),
        "products/x/spec sheet (2024).pdf": rng.randbytes(3_000),
        "products/x/product.yaml": b"id: x\nname: Huila caf\xc3\xa9\n" * 200,
        "emoji/😀 smile 🎉.txt": "snowman ☃ and 漢字\n".encode(),
        "empty.txt": b"",
        "binary/all-bytes.bin": bytes(range(256)) * 300,
        "deep/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/" + "long name " * 12 + ".txt": b"deep\n",
    }


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]
