"""The local gateway's static files (the "Export your data" page) and the page's own safety rules:
only files directly inside web/ are served, and the page's Content-Security-Policy matches its inline code."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from data_export_cli.gateway import WEB_ROOT, static_file

PAGE = WEB_ROOT / "index.html"


@pytest.fixture
def web_root(tmp_path: Path) -> Path:
    root = tmp_path / "web"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>page</title>")
    (root / "style.css").write_text("body {}")
    (root / "notes.txt").write_text("not a web file")
    (root / ".hidden.html").write_text("dot file")
    (root / "sub" / "inner.html").write_text("nested")
    (tmp_path / "secret.html").write_text("outside web/")
    return root


@pytest.mark.parametrize("path", ["/", "/index.html"])
def test_the_page_is_index_html(web_root: Path, path: str) -> None:
    answer = static_file(web_root, path)
    assert answer is not None
    status, headers, body = answer
    assert status == 200 and body == b"<!doctype html><title>page</title>"
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_other_web_files_get_their_type(web_root: Path) -> None:
    answer = static_file(web_root, "/style.css")
    assert answer is not None and answer[1]["Content-Type"] == "text/css; charset=utf-8"


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.html",
        "/..%2fsecret.html",
        "/%2e%2e/secret.html",
        "/sub/inner.html",
        "/sub%2finner.html",
        "/.hidden.html",
        "/notes.txt",
        "/missing.html",
        "/index.html/",
        "/./index.html",
        "/..\\secret.html",
        "",
        "/dashboard/api/v1/data-export/x",
    ],
)
def test_nothing_else_is_a_static_file(web_root: Path, path: str) -> None:
    assert static_file(web_root, path) is None


def _inline(tag: str, html: str) -> str:
    (body,) = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)
    return str(body)


def _sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_page_policy_allows_exactly_its_own_script_and_style() -> None:
    html = PAGE.read_text(encoding="utf-8")
    (policy,) = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    expected = (
        f"default-src 'none'; script-src {_sha256_source(_inline('script', html))}; "
        f"style-src {_sha256_source(_inline('style', html))}; connect-src *; base-uri 'none'; "
        "form-action 'none'"
    )
    assert policy == expected, f"after editing the inline script or style, set the policy to:\n{expected}"


def test_the_page_is_self_contained_and_inserts_text_only() -> None:
    html = PAGE.read_text(encoding="utf-8")
    assert re.search(r"<(link|img|iframe|object|embed)\b", html) is None
    assert re.search(r"\bsrc=|@import|url\(", html) is None
    assert len(re.findall(r"<script\b", html)) == 1 and len(re.findall(r"<style\b", html)) == 1
    script = _inline("script", html)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "localStorage"):
        assert sink not in script, sink
    assert re.search(r"\son[a-z]+=", html) is None  # no inline handlers (the policy would block them anyway)
