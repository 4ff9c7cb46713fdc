"""The page's "Restore from an export" panel (web/index.html) in headless Chromium, against the local stack's
import API: a real export of the example organization chosen as a file, copied into an empty organization
(dry run first, then "Import now"), the outcome checked on the page and through the API (the target's own
next export); and a file that is not an intact export refused, with the problems shown as the API said them.

The browser, its DevTools client and the `chromium`/`page` fixtures are test_web_page.py's."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.archive_checks import ACME, archive_files
from tests.e2e.client import call
from tests.e2e.test_web_page import (  # its fixtures: one Chromium for the module, a fresh tab per test
    ACME_KEY,
    Page,
    answer_rate_limited,
    chromium_fixture,  # noqa: F401
    fill_in,
    page_fixture,  # noqa: F401
)
from tests.round_trip import empty_organization
from tests.security.helpers import export

IMPORT_BASE = "/dashboard/api/v1/data-import"
IMPORT_DEADLINE_S = 300  # generous: the whole suite may share a loaded machine
# Imported into the target: every section but these two, which an import never writes.
IMPORTED = ["brands", "products", "offers", "locations"]
NEVER_IMPORTED = ["members", "api_keys"]

SHOWN_IMPORT_ERROR = "(e => e.hidden ? '' : e.textContent)(document.getElementById('import-error'))"
IMPORT_STATE = """(() => {
    const panel = document.getElementById("import");
    const value = (row, name) => Number(row.querySelector("." + name).dataset.value);
    return {
        status: panel.hidden ? null : panel.dataset.status,
        dryRun: panel.dataset.dryRun || null,
        importId: document.getElementById("import-id").textContent,
        error: document.getElementById("import-error").hidden
            ? null : document.getElementById("import-error").textContent,
        summary: document.getElementById("import-summary").textContent,
        uploaded: document.getElementById("upload-progress").value,
        uploadText: document.getElementById("upload-text").textContent,
        createHeader: document.getElementById("import-create-header").textContent,
        sections: [...document.querySelectorAll("#import-sections tbody tr")].map((row) => ({
            key: row.dataset.section,
            records: value(row, "records"),
            create: value(row, "create"),
            createText: row.querySelector(".create").textContent,
            existing: value(row, "existing"),
            invalid: value(row, "invalid"),
            binaries: value(row, "binaries"),
            note: row.querySelector(".note").textContent,
        })),
        problems: [...document.querySelectorAll("#import-problems li")].map((item) => ({
            code: item.dataset.code, text: item.textContent,
        })),
        problemsShown: !document.getElementById("import-problems-area").hidden,
        invalid: [...document.querySelectorAll("#import-invalid li")].map((item) => item.textContent),
        importNow: !document.getElementById("import-now").hidden,
        violations: window.__cspViolations,
    };
})()"""


@pytest.fixture(scope="module")
def acme_export(api_url: str) -> tuple[dict[str, Any], bytes]:
    """One real export of the example organization (zip): the archive a person would have downloaded."""
    return export(api_url, ACME, ACME_KEY, "zip")


@pytest.fixture(scope="module")
def storage_answers_preflights(api_url: str, stack: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The page's PUT to a presigned URL goes to another origin (S3): the browser first sends a CORS
    preflight, which S3 answers from the bucket's CORS rules without authenticating it. Checked once as the
    browser does it, so that a stack that refuses it fails here with the reason, not as a page timeout."""
    target, key = empty_organization(stack, tmp_path_factory.mktemp("preflight"), "Preflight")
    reply = call("POST", f"{api_url}{IMPORT_BASE}/{target}?mode=copy&size_bytes=1", key)
    assert reply.status == 200, reply.body
    preflight = call(
        "OPTIONS",
        reply.json()["upload"]["url"],
        headers={"Origin": api_url, "Access-Control-Request-Method": "PUT"},
    )
    allowed = {name.lower(): value for name, value in preflight.headers.items()}
    if preflight.status != 200 or allowed.get("access-control-allow-origin") not in (api_url, "*"):
        pytest.fail(
            f"S3 answered the browser's CORS preflight of an upload URL with {preflight.status} "
            f"{preflight.body[:300]!r}: a browser cannot upload. (Locally: the stack's strict IAM must let "
            "an OPTIONS preflight through unauthenticated, as S3 does, and the bucket get the template's "
            "CorsConfiguration.)"
        )


def manifest_of(archive: bytes, archive_format: str = "zip") -> dict[str, Any]:
    files = archive_files(archive, archive_format)
    (name,) = [name for name in files if name.endswith("/manifest.yaml") and name.count("/") == 1]
    return dict(yaml.safe_load(files[name]))


def records_of(archive: bytes, section: str) -> list[dict[str, Any]]:
    """The section's records as the archive holds them (one YAML file per record)."""
    files = archive_files(archive, "zip")
    return [
        yaml.safe_load(content)
        for name, content in files.items()
        if name.count("/") == 2 and name.split("/")[1] == section and name.endswith(".yaml")
    ]


def choose_file(page: Page, path: Path) -> None:
    """What a person does in the file picker: the input gets the file, with its input and change events."""
    found = page.command("Runtime.evaluate", expression="document.getElementById('restore-file')")
    page.command("DOM.setFileInputFiles", files=[str(path)], objectId=found["result"]["objectId"])
    assert page.evaluate("document.getElementById('restore-file').files[0].name") == path.name


def fill_and_restore(page: Page, api_key: str, mode: str, dry_run: bool) -> None:
    fill_in(
        page,
        api_key,
        f"""document.querySelector('input[name="restore-mode"][value={json.dumps(mode)}]').click();
            const dryRun = document.getElementById("restore-dry-run");
            if (dryRun.checked !== {json.dumps(dry_run)}) dryRun.click();
            document.getElementById("restore-start").click();""",
    )


def wait_until_finished(page: Page, dry_run: bool, timeout: float = IMPORT_DEADLINE_S) -> dict[str, Any]:
    """Polls the page until it shows the import (a dry run, or not) completed or failed; every status it
    showed on the way is in ``seen``."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        state = page.evaluate(IMPORT_STATE)
        if state["status"] and (not seen or seen[-1] != state["status"]):
            seen.append(state["status"])
        if state["status"] in ("completed", "failed") and state["dryRun"] == json.dumps(dry_run):
            state["seen"] = seen
            return dict(state)
        # An error the page will not retry by itself (a refused request, an upload given up): no wait.
        assert not state["error"] or " again in " in state["error"], state
        assert time.monotonic() < deadline, f"the page still shows {state}"
        time.sleep(0.2)


def get_import(api_url: str, organization_id: str, import_id: str, key: str) -> dict[str, Any]:
    reply = call("GET", f"{api_url}{IMPORT_BASE}/{organization_id}/{import_id}", key)
    assert reply.status == 200, reply.body
    return dict(reply.json())


@pytest.mark.usefixtures("storage_answers_preflights")
def test_a_person_copies_an_export_into_an_empty_organization(
    page: Page, api_url: str, stack: Any, tmp_path: Path, acme_export: tuple[dict[str, Any], bytes]
) -> None:
    job, archive = acme_export
    manifest = {section["key"]: section for section in manifest_of(archive)["sections"]}
    path = tmp_path / job["output_filename"]
    path.write_bytes(archive)
    target, key = empty_organization(stack, tmp_path, "Restore target")

    # The target is prefilled with the organization the page was opened for.
    page.open(f"{api_url}/?org={target}")
    assert page.evaluate("document.getElementById('restore-org').value") == target
    choose_file(page, path)
    fill_and_restore(page, key, "copy", dry_run=True)

    # Dry run: uploaded (the bar in bytes), checked, planned; nothing written.
    state = wait_until_finished(page, dry_run=True)
    assert state["status"] == "completed", (state["summary"], state["error"], state["problems"])
    assert state["error"] is None, state["error"]
    # In order (a short upload or check may pass between two looks at the page); the bar proves the upload.
    order = ["uploading", "validating", "completed"]
    assert state["seen"] == sorted(state["seen"], key=order.index), state["seen"]
    assert state["uploaded"] == 100 and state["uploadText"].startswith("100% · "), state["uploadText"]
    assert state["summary"].startswith("Dry run done, nothing was written"), state["summary"]
    assert state["createHeader"] == "Would create"
    shown = {row["key"]: row for row in state["sections"]}
    for section in IMPORTED:
        expected = manifest[section]
        assert shown[section]["records"] == expected["record_count"], (section, shown[section])
        assert shown[section]["create"] == expected["record_count"], (section, shown[section])
        assert shown[section]["existing"] == 0 and shown[section]["invalid"] == 0, shown[section]
        assert shown[section]["binaries"] == expected["binary_count"], (section, shown[section])
    assert (shown["brands"]["create"], shown["products"]["create"], shown["offers"]["create"]) == (2, 4, 3)
    for section in NEVER_IMPORTED:
        assert shown[section]["create"] == 0 and shown[section]["note"], shown[section]
    assert state["importNow"] is True and state["problemsShown"] is False

    # The page shows what the API says, section by section.
    reported = get_import(api_url, target, state["importId"], key)
    assert (reported["status"], reported["dry_run"], reported["mode"]) == ("completed", True, "copy")
    for section in reported["sections"]:
        row = shown[section["key"]]
        assert (row["records"], row["create"], row["existing"], row["invalid"], row["binaries"]) == (
            section["records"],
            section["would_create"],
            section["skipped_existing"],
            section["invalid_count"],
            section["binaries_would_restore"],
        ), section
    # A dry run writes nothing: the target's sections are still empty.
    assert all(
        s["record_count"] == 0
        for s in export(api_url, target, key, "zip")[0]["sections"]
        if s["key"] in IMPORTED
    )

    # "Import now": the same import, started for real.
    page.evaluate("document.getElementById('import-now').click()")
    state = wait_until_finished(page, dry_run=False)
    assert state["status"] == "completed", (state["summary"], state["error"], state["problems"])
    assert state["error"] is None, state["error"]
    assert state["summary"].startswith("Import done"), state["summary"]
    assert state["createHeader"] == "Created"
    assert state["importNow"] is False
    shown = {row["key"]: row for row in state["sections"]}
    reported = get_import(api_url, target, state["importId"], key)
    assert (reported["status"], reported["dry_run"]) == ("completed", False)
    for section in reported["sections"]:
        row = shown[section["key"]]
        assert (row["create"], row["binaries"]) == (section["created"], section["binaries_restored"]), section
    for section in IMPORTED:
        assert shown[section]["create"] == manifest[section]["record_count"], (section, shown[section])
        assert shown[section]["binaries"] == manifest[section]["binary_count"], (section, shown[section])

    # Through the API: the target's next export holds the copied records and files.
    copied_job, copied = export(api_url, target, key, "zip")
    counts = {s["key"]: (s["record_count"], s["binary_count"]) for s in copied_job["sections"]}
    for section in IMPORTED:
        expected = (manifest[section]["record_count"], manifest[section]["binary_count"])
        assert counts[section] == expected, section
    for section in ("brands", "products", "locations"):
        names = sorted(record["name"] for record in records_of(copied, section))
        assert names == sorted(record["name"] for record in records_of(archive, section)), section
    # The key stays out of the address bar and of storage that outlives the tab; no policy violation.
    assert key not in page.evaluate("location.href")
    assert page.evaluate("localStorage.length") == 0
    assert state["violations"] == []


def tampered(archive: bytes) -> bytes:
    """The archive with one product record changed after the export, its size kept: only its SHA-256 no
    longer matches the manifest's."""
    source = zipfile.ZipFile(io.BytesIO(archive))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as copy:
        changed = False
        for info in source.infolist():
            content = source.read(info)
            if not changed and "/products/" in info.filename and info.filename.endswith(".yaml"):
                at = content.index(b"\nname: ") + len(b"\nname: ")  # same size, other bytes: "pour-over…"
                content = content[:at] + content[at : at + 1].swapcase() + content[at + 1 :]
                changed = True
            copy.writestr(info, content)
    assert changed
    return out.getvalue()


def with_an_invalid_product(archive: bytes) -> bytes:
    """The archive with one product's required ``gtin`` emptied, the manifest updated to match: intact as an
    archive, but that record (and the offers referring to it) invalid."""
    source = zipfile.ZipFile(io.BytesIO(archive))
    files = {info.filename: source.read(info) for info in source.infolist()}
    top = next(iter(files)).split("/", 1)[0]
    name = next(n for n in files if n.startswith(f"{top}/products/") and n.count("/") == 2)
    record = yaml.safe_load(files[name])
    record["gtin"] = ""
    files[name] = yaml.safe_dump(record, allow_unicode=True, sort_keys=False).encode()
    manifest = yaml.safe_load(files[f"{top}/manifest.yaml"])
    for entry in manifest["files"]:
        if f"{top}/{entry['path']}" == name:
            entry["size"], entry["sha256"] = len(files[name]), hashlib.sha256(files[name]).hexdigest()
    files[f"{top}/manifest.yaml"] = yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as copy:
        for path, content in files.items():
            copy.writestr(path, content)
    return out.getvalue()


@pytest.mark.usefixtures("storage_answers_preflights")
@pytest.mark.parametrize("case", ["not an archive", "tampered", "invalid record"])
def test_a_file_that_is_not_an_intact_export_is_refused(
    page: Page,
    api_url: str,
    stack: Any,
    tmp_path: Path,
    acme_export: tuple[dict[str, Any], bytes],
    case: str,
) -> None:
    dry_run, error_code = True, "archive_refused"
    if case == "not an archive":
        path = tmp_path / "holiday-photos.zip"
        path.write_bytes(b"This is a shopping list, not an export.\n" * 100)
    elif case == "tampered":
        path = tmp_path / "acme-coffee-export.zip"
        path.write_bytes(tampered(acme_export[1]))
        # Straight to the import, no dry run: the refusal still comes before anything is written.
        dry_run = False
    else:
        path = tmp_path / "acme-coffee-export.zip"
        path.write_bytes(with_an_invalid_product(acme_export[1]))
        error_code = "archive_invalid"
    target, key = empty_organization(stack, tmp_path, f"Refusal {case.split(maxsplit=1)[0]}")

    page.open(f"{api_url}/?org={target}")
    choose_file(page, path)
    fill_and_restore(page, key, "copy", dry_run=dry_run)
    state = wait_until_finished(page, dry_run=dry_run)
    assert state["status"] == "failed", state

    reported = get_import(api_url, target, state["importId"], key)
    assert (reported["status"], reported["error_code"]) == ("failed", error_code), reported
    assert reported["error"] in state["summary"] and error_code in state["summary"]
    # The problems as the API worded them, each with its code (and the archive path concerned).
    codes = [problem["code"] for problem in reported["problems"]]
    assert [problem["code"] for problem in state["problems"]] == codes
    assert state["problemsShown"] is bool(codes)
    for shown, problem in zip(state["problems"], reported["problems"], strict=True):
        assert problem["message"] in shown["text"], (shown, problem)
        assert not problem.get("path") or problem["path"] in shown["text"], (shown, problem)
    # The invalid records likewise: section, path and reason.
    invalid = [(s["key"], record) for s in reported["sections"] for record in s["invalid"]]
    assert len(state["invalid"]) == len(invalid)
    for shown_text, (section, record) in zip(state["invalid"], invalid, strict=True):
        assert shown_text.startswith(f"{section.capitalize()}: {record['path']} — {record['reason']}"), (
            shown_text
        )
    if case == "invalid record":
        assert not codes and {section for section, _ in invalid} == {"products", "offers"}, invalid
        assert any("missing required field(s): gtin" in text for text in state["invalid"]), state["invalid"]
    else:
        assert ("not_an_archive" if case == "not an archive" else "tampered") in codes, codes
        assert not invalid
    assert state["importNow"] is False
    assert state["violations"] == []
    # Nothing was written.
    sections = export(api_url, target, key, "zip")[0]["sections"]
    assert all(s["record_count"] == 0 for s in sections if s["key"] in IMPORTED), sections


@pytest.mark.usefixtures("storage_answers_preflights")
def test_a_throttled_import_poll_waits_as_told(page: Page, api_url: str, stack: Any, tmp_path: Path) -> None:
    """The import's polls honour Retry-After as the export's do: the browser itself (DevTools ``Fetch``)
    answers the first poll 429 with Retry-After 4; the page says so, waits, then goes on to the outcome."""
    path = tmp_path / "not-an-export.tar.gz"
    path.write_bytes(b"\x00" * 4096)
    target, key = empty_organization(stack, tmp_path, "Throttled poll")
    page.open(f"{api_url}/?org={target}")
    choose_file(page, path)
    page.command("Fetch.enable", patterns=[{"urlPattern": f"{api_url}{IMPORT_BASE}/{target}/*"}])
    fill_and_restore(page, key, "copy", dry_run=True)
    while True:  # the create, its upload renewals and the start go through; the first poll is throttled
        paused = page.event("Fetch.requestPaused")
        if paused["request"]["method"] != "GET":
            page.command("Fetch.continueRequest", requestId=paused["requestId"])
            continue
        answer_rate_limited(page, paused["requestId"], retry_after=4)
        throttled_at = time.monotonic()
        break
    page.command("Fetch.disable")
    shown = page.wait_for(SHOWN_IMPORT_ERROR, 30)
    assert "Too many requests for this key. Checking again in 4 s." in shown and "rate_limited" in shown
    page.wait_for("document.getElementById('import-error').hidden", 30)  # cleared by the next poll's answer
    assert time.monotonic() - throttled_at >= 3.9
    state = wait_until_finished(page, dry_run=True)
    assert state["status"] == "failed" and state["problemsShown"] is True, state


# --- the page's side of the protocol, scripted: the browser itself answers the import API and the uploads


class ScriptedImport:
    """Answers the page's import API and its PUTs to storage from the browser itself (DevTools ``Fetch``):
    what a multipart upload, an expired URL, a 503 and the dry run then the import look like to the page,
    with each request checked. The "storage" is on the page's own origin, so no CORS is involved."""

    def __init__(self, page: Page, api_url: str, organization_id: str, archive: bytes) -> None:
        self.page = page
        self.api = f"{api_url}{IMPORT_BASE}/{organization_id}"
        self.storage = f"{api_url}/scripted-storage"
        self.archive = archive
        self.import_id = "ImportScriptedXXXXXXXXX"[:22]
        self.answered_at = time.monotonic()
        page.command(
            "Fetch.enable",
            patterns=[{"urlPattern": f"{self.api}*"}, {"urlPattern": f"{self.storage}/*"}],
        )

    def job(self, status: str, dry_run: bool | None, **fields: Any) -> dict[str, Any]:
        return {
            "import_id": self.import_id,
            "organization_id": "x",
            "status": status,
            "mode": "copy",
            "dry_run": dry_run,
            "overwrite": False,
            "size_bytes": len(self.archive),
            "created_at": "2025-01-01T00:00:00+00:00",
            **fields,
        }

    def upload(self, parts: list[tuple[int, int, int]], uploaded: list[int]) -> dict[str, Any]:
        return {
            "size_bytes": len(self.archive),
            "part_size_bytes": parts[0][2] if parts else None,
            "parts": [
                {
                    "part_number": n,
                    "offset": o,
                    "size_bytes": s,
                    "url": f"{self.storage}/{n}?try={len(uploaded)}",
                }
                for n, o, s in parts
            ],
            "parts_uploaded": uploaded,
            "expires_at": "2099-01-01T00:00:00+00:00",
        }

    def request(self) -> tuple[str, dict[str, Any]]:
        paused = self.page.event("Fetch.requestPaused")
        return paused["requestId"], dict(paused["request"])

    def answer(self, request_id: str, status: int, body: Any, **headers: str) -> None:
        self.page.fulfill(request_id, status, body, headers)
        self.answered_at = time.monotonic()

    def put_body(self, request: dict[str, Any]) -> bytes:
        return b"".join(base64.b64decode(entry["bytes"]) for entry in request.get("postDataEntries", []))


def test_the_page_uploads_in_parts_renews_an_expired_url_and_shows_the_plan(
    page: Page, api_url: str, tmp_path: Path
) -> None:
    archive = bytes(range(256)) * 100  # 25,600 bytes in parts of 10,000
    part_size = 10_000
    parts = [(1, 0, part_size), (2, part_size, part_size), (3, 2 * part_size, len(archive) - 2 * part_size)]
    path = tmp_path / "acme-coffee-export-S8yfMT73Q29pRJaQ7Y3QM9.zip"
    path.write_bytes(archive)
    target = "TargetOrgXXXXXXXXXXXXX"
    page.open(f"{api_url}/?org={target}")
    choose_file(page, path)
    scripted = ScriptedImport(page, api_url, target, archive)
    fill_and_restore(page, "csb_scriptedKeyXXXXXXXXXXXXXXXXXXXXXXX_00000000", "copy", dry_run=True)

    request_id, request = scripted.request()
    assert request["method"] == "POST", request
    assert request["url"] == f"{scripted.api}?mode=copy&size_bytes={len(archive)}"
    assert request["headers"]["X-API-Key"].startswith("csb_scripted")
    scripted.answer(request_id, 200, scripted.job("pending", None, upload=scripted.upload(parts, [])))

    # The parts go up at once, each its own slice of the file, with no API key; part 2's URL has expired.
    seen: dict[int, bytes] = {}
    for _ in parts:
        request_id, request = scripted.request()
        assert request["method"] == "PUT" and request["url"].startswith(scripted.storage), request
        assert "X-API-Key" not in request["headers"] and "Content-Type" not in request["headers"]
        number = int(request["url"].split("/")[-1].split("?")[0])
        seen[number] = scripted.put_body(request)
        if number == 2:
            expired = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
            scripted.answer(request_id, 403, expired)
        else:
            scripted.answer(request_id, 200, b"", ETag=f'"etag-{number}"')
    assert seen == {n: archive[o : o + s] for n, o, s in parts}
    shown = page.wait_for(SHOWN_IMPORT_ERROR, 10)
    assert "Request has expired" in shown and "AccessDenied, HTTP 403" in shown and "Trying again in" in shown

    # Fresh URLs for the part still missing, then that part alone; then the start, a dry run.
    request_id, request = scripted.request()
    assert (request["method"], request["url"]) == ("POST", f"{scripted.api}/{scripted.import_id}/upload")
    scripted.answer(
        request_id, 200, scripted.job("pending", None, upload=scripted.upload(parts[1:2], [1, 3]))
    )
    request_id, request = scripted.request()
    assert request["method"] == "PUT" and request["url"] == f"{scripted.storage}/2?try=2"
    assert scripted.put_body(request) == archive[part_size : 2 * part_size]
    scripted.answer(request_id, 200, b"", ETag='"etag-2b"')
    request_id, request = scripted.request()
    assert (request["method"], request["url"]) == (
        "POST",
        f"{scripted.api}/{scripted.import_id}/start?dry_run=true",
    )
    assert page.evaluate("document.getElementById('upload-progress').value") == 100
    assert page.evaluate("document.getElementById('import-error').hidden") is True
    scripted.answer(request_id, 200, scripted.job("validating", True))

    # A poll answered 503 with Retry-After: the page says so and waits as told.
    request_id, request = scripted.request()
    assert (request["method"], request["url"]) == ("GET", f"{scripted.api}/{scripted.import_id}")
    scripted.answer(
        request_id, 503, {"error": "service_unavailable", "message": "Busy."}, **{"Retry-After": "3"}
    )
    assert "Busy. Checking again in 3 s. (service_unavailable, HTTP 503)" in page.wait_for(
        SHOWN_IMPORT_ERROR, 10
    )
    request_id, request = scripted.request()
    assert time.monotonic() - scripted.answered_at >= 2.9
    sections = [
        {"key": "members", "records": 3, "skipped_reason": "Members are not imported: invite them again."},
        {"key": "brands", "records": 2, "would_create": 2, "binaries": 1, "binaries_would_restore": 1},
        {
            "key": "products",
            "records": 4,
            "would_create": 3,
            "skipped_existing": 1,
            "binaries": 5,
            "binaries_would_restore": 4,
            "binaries_skipped_existing": 1,
        },
    ]
    progress = {
        "binaries_total": 5,
        "binaries_done": 0,
        "bytes_total": 9,
        "bytes_done": 0,
        "records_total": 5,
        "records_done": 0,
        "percent": 100,
    }
    scripted.answer(request_id, 200, scripted.job("completed", True, sections=sections, progress=progress))

    page.wait_for("document.getElementById('import').dataset.status === 'completed'", 10)
    state = page.evaluate(IMPORT_STATE)
    assert state["error"] is None, state["error"]
    assert state["summary"] == (
        "Dry run done, nothing was written: importing would create 5 records and restore 5 files."
    )
    rows = {row["key"]: row for row in state["sections"]}
    assert (rows["products"]["create"], rows["products"]["existing"], rows["products"]["binaries"]) == (
        3,
        1,
        4,
    )
    assert "1 file already there" in rows["products"]["note"]
    assert rows["members"]["note"] == "Members are not imported: invite them again."
    assert state["importNow"] is True

    # "Import now": the same import, started for real; its counts show as "done of to do" while it runs.
    page.evaluate("document.getElementById('import-now').click()")
    request_id, request = scripted.request()
    assert (request["method"], request["url"]) == (
        "POST",
        f"{scripted.api}/{scripted.import_id}/start?dry_run=false",
    )
    running = [{**section, "created": 1} if section["key"] == "brands" else section for section in sections]
    scripted.answer(request_id, 200, scripted.job("importing", False, sections=running))
    page.wait_for(
        "document.querySelector('#import-sections tr[data-section=brands] .create').textContent === '1 of 2'",
        10,
    )
    request_id, request = scripted.request()
    done = [
        {
            **section,
            "created": section.get("would_create", 0),
            "binaries_restored": section.get("binaries_would_restore", 0),
        }
        for section in sections
    ]
    scripted.answer(request_id, 200, scripted.job("completed", False, sections=done))
    page.wait_for(
        "document.getElementById('import').dataset.dryRun === 'false'"
        " && document.getElementById('import').dataset.status === 'completed'",
        10,
    )
    state = page.evaluate(IMPORT_STATE)
    assert state["summary"] == "Import done: 5 records created and 5 files restored."
    assert state["createHeader"] == "Created" and state["importNow"] is False
    assert {row["key"]: (row["create"], row["binaries"]) for row in state["sections"]} == {
        "members": (0, 0),
        "brands": (2, 1),
        "products": (3, 4),
    }
    assert state["violations"] == []
    page.command("Fetch.disable")
