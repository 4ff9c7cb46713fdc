"""Hostile file names, end to end: seeded into the running stack, exported over HTTP in both formats, then
checked entry by entry and extracted with the real tools into a folder they must not write outside of."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import unicodedata
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from data_export.ids import new_id

from tests.security.helpers import export, new_key, organization, seed

# What users could type as a file name, and what each one tries.
HOSTILE_NAMES = [
    "../../etc/passwd",  # climb out of the extraction folder
    "/abs.png",  # absolute path
    "a\\b.png",  # backslash: a separator on Windows
    "CON.txt",  # Windows device name
    "aux",  # device name without extension
    "com1 .jpg",  # device name Windows finds despite the space
    "e\u0301.png",  # é as e + combining accent ...
    "\u00e9.png",  # ... and as one code point: the same name on macOS
    "Front.JPG",  # case variants: the same file on Windows and macOS
    "front.jpg",
    "FRONT.jpg",
    "x" * 296 + ".png",  # 300 bytes: over every file system's 255-byte limit
    "\u00e9" * 200 + ".pdf",  # 405 bytes of two-byte characters
    "invoice\u202egnp.exe",  # right-to-left override: displays as invoiceexe.png
    "nul\x00byte.png",  # NUL ends a C string
    "tab\tnew\nline\r.txt",  # control characters
    "zero\u200bwidth.png",  # invisible character
    "..",
    ".",
    "   ",
    "trailing dot.",
    'what?<is>:this|"*.png',  # characters Windows forbids
    "a/b/c.png",  # folders inside a name
    "COM0.txt",  # device names Windows reserves too: port 0 and superscript digits
    "lpt0",
    "COM\u00b9.png",
    "lpt\u00b3.jpg",
    "spec sheet " + "long " * 40 + "(final).pdf",  # a long name inside a long path: over Windows' 260
]
SLUG = "../../Évil\u202e Org"
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{port}{digit}" for port in ("COM", "LPT") for digit in "0123456789¹²³"
}
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
_WINDOWS_FORBIDDEN = set('<>:"|?*\\')


def generated(seed: int, size: int) -> bytes:
    return hashlib.shake_256(str(seed).encode()).digest(size)


def collision_key(path: str) -> str:
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", path).casefold())


def unsafe_reasons(path: str) -> list[str]:
    """Why an entry name is unsafe to extract anywhere (empty when it is safe)."""
    reasons = []
    if len(path.encode("utf-16-le")) // 2 >= 200:
        # Windows counts UTF-16 units up to 260 with the folder extracted into: keep 60 for that folder.
        reasons.append("200 UTF-16 units or more")
    if path.startswith("/") or path.endswith("/"):
        reasons.append("absolute or a folder")
    if unicodedata.normalize("NFC", path) != path:
        reasons.append("not NFC")
    for component in path.split("/"):
        if component in ("", ".", ".."):
            reasons.append(f"component {component!r}")
        elif component[-1] in " .":
            reasons.append(f"{component!r} ends in a space or dot")
        if len(component.encode("utf-8")) > 255:
            reasons.append(f"{component[:20]!r}... is over 255 bytes")
        if component.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
            reasons.append(f"{component!r} is a Windows device")
        bad = {char for char in component if char in _WINDOWS_FORBIDDEN}
        bad |= {char for char in component if unicodedata.category(char) in _UNSAFE_CATEGORIES}
        if bad:
            reasons.append(f"{component!r} holds {sorted(bad)!r}")
    return reasons


@pytest.fixture(scope="module")
def hostile(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    key = new_key()
    product_id = new_id()
    images = [
        {"filename": name, "content_type": "image/png", "generate": {"size_bytes": 64 + index, "seed": index}}
        for index, name in enumerate(HOSTILE_NAMES)
    ]
    product = {
        "id": product_id,
        "name": "Hostile names",
        "gtin": "00012345678905",
        "created_at": "2025-01-01T00:00:00+00:00",
        "images": images,
        "documents": images[:3],  # the same names again, in a sibling folder
    }
    data = organization("Hostile", key, products=[product])
    data["organization"]["slug"] = SLUG
    data["organization"]["logo"] = {
        "filename": "../../../../tmp/pwned.png",
        "content_type": "image/png",
        "generate": {"size_bytes": 10, "seed": 99},
    }
    seed(stack, tmp_path_factory.mktemp("hostile"), data)
    return {"organization_id": data["organization"]["id"], "key": key, "product_id": product_id}


@pytest.fixture(scope="module", params=["zip", "tar.gz"])
def archive(request: pytest.FixtureRequest, api_url: str, hostile: dict[str, Any]) -> dict[str, Any]:
    archive_format = request.param
    job, body = export(api_url, hostile["organization_id"], hostile["key"], archive_format)
    files: dict[str, bytes] = {}
    if archive_format == "zip":
        with zipfile.ZipFile(io.BytesIO(body)) as opened:
            names = opened.namelist()
            files = {info.filename: opened.read(info) for info in opened.infolist()}
    else:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as opened:
            members = opened.getmembers()
            names = [member.name for member in members]
            for member in members:
                assert member.isfile(), (member.name, member.type)
                extracted = opened.extractfile(member)
                assert extracted is not None
                files[member.name] = extracted.read()
    return {"format": archive_format, "job": job, "body": body, "names": names, "files": files}


def test_every_entry_name_is_safe(archive: dict[str, Any]) -> None:
    unsafe = {name: reasons for name in archive["names"] if (reasons := unsafe_reasons(name))}
    assert not unsafe, unsafe


def test_every_entry_is_inside_one_top_folder_named_safely(archive: dict[str, Any]) -> None:
    tops = {name.split("/", 1)[0] for name in archive["names"]}
    assert tops == {archive["job"]["output_filename"].removesuffix("." + archive["format"])}
    (top,) = tops
    assert top.isascii() and ".." not in top and top.startswith("evil-org-export-"), top


def test_entry_names_are_unique_after_normalization_and_case_folding(archive: dict[str, Any]) -> None:
    keys = [collision_key(name) for name in archive["names"]]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    assert not duplicates


def test_every_hostile_file_is_exported_with_its_bytes_and_its_name_kept_as_data(
    archive: dict[str, Any], hostile: dict[str, Any]
) -> None:
    top = archive["names"][0].split("/", 1)[0]
    record = yaml.safe_load(archive["files"][f"{top}/products/{hostile['product_id']}.yaml"])
    for field, count in (("images", len(HOSTILE_NAMES)), ("documents", 3)):
        refs = record[field]
        # The names as typed stay in the record; only the paths in the archive are made safe.
        assert [ref["filename"] for ref in refs] == HOSTILE_NAMES[:count]
        for index, ref in enumerate(refs):
            assert archive["files"][f"{top}/{ref['file']}"] == generated(index, 64 + index), ref
        folders = {ref["file"].rsplit("/", 1)[0] for ref in refs}
        assert folders == {f"products/{hostile['product_id']}/{field}"}
    logo = yaml.safe_load(archive["files"][f"{top}/organization/organization.yaml"])["logo"]
    assert logo["file"].startswith("organization/") and archive["files"][
        f"{top}/{logo['file']}"
    ] == generated(99, 10)


def _extract_command(tool: str, archive: Path, dest: Path) -> list[str]:
    return {
        "unzip": ["unzip", "-q", str(archive), "-d", str(dest)],
        "7z": ["7z", "x", "-y", f"-o{dest}", str(archive)],
        "tar": ["tar", "-xzf", str(archive), "-C", str(dest)],
        "bsdtar": ["bsdtar", "-xzf", str(archive), "-C", str(dest)],
    }[tool]


def _tree(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def test_real_extractors_write_only_inside_the_target_folder(archive: dict[str, Any], tmp_path: Path) -> None:
    saved = tmp_path / f"export.{archive['format']}"
    saved.write_bytes(archive["body"])
    tools = [
        tool
        for tool in (("unzip", "7z") if archive["format"] == "zip" else ("tar", "bsdtar"))
        if shutil.which(tool)
    ]
    assert tools, "no extractor installed (make tools installs them)"
    for tool in tools:
        # Deep inside a sandbox folder, so that a climb of a few levels would still land in the sandbox.
        sandbox = tmp_path / f"sandbox-{tool}"
        dest = sandbox / "a" / "b" / "c" / "out"
        dest.mkdir(parents=True)
        command = _extract_command(tool, saved, dest)
        result = subprocess.run(command, capture_output=True, timeout=120, check=False)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
        inside = {"a", "a/b", "a/b/c", "a/b/c/out"} | {f"a/b/c/out/{path}" for path in _tree(dest)}
        assert _tree(sandbox) == inside, (tool, _tree(sandbox) - inside)
        for path in dest.rglob("*"):
            assert not path.is_symlink() and path.resolve().is_relative_to(dest.resolve()), path
        extracted = {
            str(path.relative_to(dest)): path.read_bytes() for path in dest.rglob("*") if path.is_file()
        }
        # Nothing lost, renamed or merged: every entry is a file of its own, with its bytes.
        assert extracted == archive["files"], tool
    assert {path.name for path in tmp_path.iterdir()} == {saved.name, *(f"sandbox-{tool}" for tool in tools)}


def test_python_extractors_with_their_strictest_filters_accept_the_archive(
    archive: dict[str, Any], tmp_path: Path
) -> None:
    if archive["format"] == "zip":
        with zipfile.ZipFile(io.BytesIO(archive["body"])) as opened:
            # zipfile rewrites unsafe names silently: the comparison below catches any rewritten name.
            opened.extractall(tmp_path)
    else:
        with tarfile.open(fileobj=io.BytesIO(archive["body"]), mode="r:gz") as opened:
            opened.extractall(tmp_path, filter="data")  # raises on anything outside or unsafe
    assert {str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file()} == set(
        archive["files"]
    )
