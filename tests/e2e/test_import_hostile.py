"""Hostile archives through the import API, against the local stack (IAM and limits enforced).

Each archive is a real export of the example organization, changed the way an attacker or a broken upload
would change it, imported over HTTP (tests/round_trip.py) into a fresh empty organization: each is refused
(``archive_refused``, or ``archive_invalid`` for records that do not hold up) with the precise problem, and
nothing is written: the organization's next export has no brands nor products, and its assets folder is
empty. Then the lifecycle: a cancel while the import validates or imports (the import stays canceled, and a
new import of the same archive completes), and a dry run started again for real, on the same import (the
web page's "Import now")."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import stat
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from data_export import wiring
from data_export.models import ImportErrorCode, ImportJobResponse
from data_export.restore.service import IMPORT_FAILURES
from data_export.settings import get_settings

from tests.archive_checks import ACME, archive_files
from tests.e2e.client import call
from tests.iam_guard import function_denials
from tests.round_trip import (
    ACME_COUNTS,
    ACME_KEY,
    IMPORT_BASE,
    create_import,
    empty_organization,
    import_archive,
    records_of,
    sections,
    start_import,
    upload,
    wait_for_import,
)
from tests.security.helpers import export

FORMATS = ("zip", "tar.gz")
# Records of the example (../shared/spec/example-org.yaml) that the cases break.
PLAIN_BRAND = "JwCCvmAqZ583VxRmfiUTdq"  # no logo; the brand of the kettle and the grinder
GRINDER = "Hk4tWm8Ns2vQeRaJc5LpXy"  # no offer
KETTLE = "3xQmTqPZcRk7YhFw2VbNsd"  # one image; the product of one offer
KETTLE_OFFER = "Xm6Tb2QwK9rNcV4sHe8JdF"
KETTLE_IMAGE = f"products/{KETTLE}/images/kettle.png"
HUILA_IMAGE = "products/CpWrfXcQ9K3QMjuiwcGWu8/images/huila café.jpg"  # 6 MiB
NO_SUCH_BRAND = "NoSuchBrandZZZZZZZZZZZZ"
BOMB_BYTES = 20 << 20  # zeros: past the 16 MiB ratio floor, deflated about 1000:1 (the limit is 200:1)
REFUSED = IMPORT_FAILURES[ImportErrorCode.ARCHIVE_REFUSED]
INVALID = IMPORT_FAILURES[ImportErrorCode.ARCHIVE_INVALID]


# -- archives -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A file of an archive (its whole name, top folder included), or a symbolic link to ``link``."""

    name: str
    data: bytes = b""
    link: str | None = None


@pytest.fixture(scope="module")
def acme(api_url: str) -> dict[str, bytes]:
    """A real export of the example organization, in each format."""
    return {fmt: export(api_url, ACME, ACME_KEY, fmt)[1] for fmt in FORMATS}


def entries_of(data: bytes, archive_format: str) -> list[Entry]:
    return [Entry(name, body) for name, body in archive_files(data, archive_format).items()]


def build(archive_format: str, entries: list[Entry]) -> bytes:
    """An archive of ``entries`` in that order, as any zip or tar tool would write it."""
    buffer = io.BytesIO()
    if archive_format == "zip":
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            for entry in entries:
                member = zipfile.ZipInfo(entry.name, date_time=(2026, 1, 1, 0, 0, 0))
                member.compress_type = zipfile.ZIP_DEFLATED
                if entry.link is not None:
                    member.external_attr = (stat.S_IFLNK | 0o777) << 16
                    archive.writestr(member, entry.link)
                else:
                    member.external_attr = (stat.S_IFREG | 0o644) << 16
                    archive.writestr(member, entry.data)
        return buffer.getvalue()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.mtime, info.mode = 1_767_225_600, 0o644
            if entry.link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, entry.link
                tar.addfile(info)
            else:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    return gzip.compress(buffer.getvalue(), compresslevel=6, mtime=0)


def top_of(entries: list[Entry]) -> str:
    return entries[-1].name.split("/", 1)[0]


def before_manifest(entries: list[Entry], *extra: Entry) -> list[Entry]:
    """The entries with ``extra`` inserted just before manifest.yaml (which an export writes last)."""
    assert entries[-1].name.endswith("/manifest.yaml")
    return [*entries[:-1], *extra, entries[-1]]


def changed(entries: list[Entry], changes: dict[str, bytes], *, fix_manifest: bool) -> list[Entry]:
    """The entries with some files' bytes replaced (paths below the top folder); with ``fix_manifest``, the
    manifest lists their new sizes and SHA-256s, as an attacker who knows the format would write it."""
    top = top_of(entries)
    out = []
    for entry in entries:
        path = entry.name[len(top) + 1 :]
        out.append(replace(entry, data=changes[path]) if path in changes else entry)
    assert len({entry.name for entry in out} & {f"{top}/{path}" for path in changes}) == len(changes)
    if fix_manifest:
        manifest = yaml.safe_load(out[-1].data)
        for listed in manifest["files"]:
            if listed["path"] in changes:
                data = changes[listed["path"]]
                listed["size"], listed["sha256"] = len(data), hashlib.sha256(data).hexdigest()
        text = yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True).encode()
        out[-1] = replace(out[-1], data=text)
    return out


def record_file(entries: list[Entry], path: str) -> dict[str, Any]:
    top = top_of(entries)
    return dict(yaml.safe_load(next(e.data for e in entries if e.name == f"{top}/{path}")))


def dumped(record: dict[str, Any]) -> bytes:
    return yaml.safe_dump(record, sort_keys=False, allow_unicode=True).encode()


# -- the cases --------------------------------------------------------------------------------------------

Hostile = Callable[[str, bytes], bytes]  # (format, the real archive) -> the hostile one


def path_traversal(archive_format: str, data: bytes) -> bytes:
    return build(archive_format, before_manifest(entries_of(data, archive_format), Entry("../evil", b"x")))


def symlink(archive_format: str, data: bytes) -> bytes:
    entries = entries_of(data, archive_format)
    link = Entry(f"{top_of(entries)}/products/evil-link", link="/etc/passwd")
    return build(archive_format, before_manifest(entries, link))


def bomb(archive_format: str, data: bytes) -> bytes:
    entries = entries_of(data, archive_format)
    zeros = Entry(f"{top_of(entries)}/products/bomb.bin", bytes(BOMB_BYTES))
    # First: a tar.gz's ratio is its whole gzip stream's so far, and the example's photos do not deflate.
    return build(archive_format, [zeros, *entries])


def tampered_binary(archive_format: str, data: bytes) -> bytes:
    entries = entries_of(data, archive_format)
    image = next(e.data for e in entries if e.name.endswith(KETTLE_IMAGE))
    altered = image[:1000] + bytes(b ^ 0xFF for b in image[1000:1016]) + image[1016:]
    return build(archive_format, changed(entries, {KETTLE_IMAGE: altered}, fix_manifest=False))


def not_in_manifest(archive_format: str, data: bytes) -> bytes:
    entries = entries_of(data, archive_format)
    extra = Entry(f"{top_of(entries)}/products/extra.txt", b"not listed anywhere\n")
    return build(archive_format, before_manifest(entries, extra))


def missing_file(archive_format: str, data: bytes) -> bytes:
    entries = entries_of(data, archive_format)
    return build(archive_format, [entry for entry in entries if not entry.name.endswith(KETTLE_IMAGE)])


def foreign_version(archive_format: str, data: bytes) -> bytes:
    entries = entries_of(data, archive_format)
    manifest = entries[-1].data
    assert manifest.count(b"format_version: '1.0'") == 1, manifest[:200]
    return build(
        archive_format, [*entries[:-1], replace(entries[-1], data=manifest.replace(b"'1.0'", b"'2.0'", 1))]
    )


def truncated(archive_format: str, data: bytes) -> bytes:
    return data[: len(data) // 2]


@dataclass(frozen=True)
class Refusal:
    hostile: Hostile
    code: str
    path: dict[str, str | None] | str | None  # the problem's path; per format when they differ
    words: str  # in the problem's message


REFUSALS = {
    "path_traversal": Refusal(path_traversal, "traversal", "../evil", "'..' component"),
    "symlink": Refusal(symlink, "link", "products/evil-link", "a symbolic link"),
    "zip_bomb": Refusal(bomb, "compression_ratio", "products/bomb.bin", "bomb"),
    "tampered_binary": Refusal(tampered_binary, "tampered", KETTLE_IMAGE, "SHA-256 is not the manifest's"),
    "not_in_manifest": Refusal(
        not_in_manifest, "not_in_manifest", "products/extra.txt", "not in its manifest"
    ),
    "format_version": Refusal(foreign_version, "format_version", "manifest.yaml", "format_version '2.0'"),
    "missing_file": Refusal(missing_file, "missing_file", KETTLE_IMAGE, "not in the archive"),
    # A cut zip has no central directory (no entry to name); a cut tar.gz ends inside the 6 MiB photo that
    # spans the middle of the archive.
    "truncated": Refusal(truncated, "truncated", {"zip": None, "tar.gz": HUILA_IMAGE}, "incomplete"),
}


def assert_nothing_written(stack: Any, api_url: str, organization_id: str, key: str, fmt: str) -> None:
    _, after = export(api_url, organization_id, key, fmt)
    records = records_of(archive_files(after, fmt))
    assert not records.get("brands") and not records.get("products"), records
    assert set(records) <= {"organization", "members", "api_keys"}, records
    assert records["organization"][organization_id]["name"] == "Target"  # the profile merge never ran
    listed = stack.client("s3").list_objects_v2(
        Bucket=get_settings().assets_bucket, Prefix=f"{organization_id}/"
    )
    assert listed["KeyCount"] == 0, [item["Key"] for item in listed.get("Contents", [])]


@pytest.mark.parametrize("archive_format", FORMATS)
@pytest.mark.parametrize("case", list(REFUSALS))
def test_hostile_archive_is_refused_and_nothing_is_written(
    stack: Any, api_url: str, tmp_path: Path, acme: dict[str, bytes], case: str, archive_format: str
) -> None:
    refusal = REFUSALS[case]
    target, key = empty_organization(stack, tmp_path, "Target")
    job = import_archive(api_url, target, key, refusal.hostile(archive_format, acme[archive_format]))
    ImportJobResponse.model_validate(job)
    assert (job["status"], job["error_code"], job["error"]) == ("failed", "archive_refused", REFUSED), job
    assert "importing" not in job["_statuses_seen"]
    assert [problem["code"] for problem in job["problems"]] == [refusal.code], job["problems"]
    problem = job["problems"][0]
    path = refusal.path[archive_format] if isinstance(refusal.path, dict) else refusal.path
    assert problem["path"] == path, problem
    assert refusal.words in problem["message"], problem
    assert job["progress"] is None or job["progress"]["records_done"] == 0
    assert_nothing_written(stack, api_url, target, key, archive_format)


def malformed_yaml(archive_format: str, data: bytes) -> bytes:
    entries = entries_of(data, archive_format)
    broken = b"id: " + PLAIN_BRAND.encode() + b"\nname: [an unclosed list\ncreated_at: x\n"
    return build(archive_format, changed(entries, {f"brands/{PLAIN_BRAND}.yaml": broken}, fix_manifest=True))


def broken_reference(archive_format: str, data: bytes) -> bytes:
    entries = entries_of(data, archive_format)
    kettle = record_file(entries, f"products/{KETTLE}.yaml")
    assert kettle["brand_id"] == PLAIN_BRAND
    kettle["brand_id"] = NO_SUCH_BRAND
    return build(
        archive_format, changed(entries, {f"products/{KETTLE}.yaml": dumped(kettle)}, fix_manifest=True)
    )


# section -> {path: the start of its reason}: every invalid record, and nothing else.
INVALID_CASES: dict[str, tuple[Hostile, dict[str, dict[str, str]]]] = {
    "malformed_yaml": (
        malformed_yaml,
        {
            "brands": {f"brands/{PLAIN_BRAND}.yaml": "not valid YAML at line 3, column 1"},
            # What referred to the brand is invalid too, and what referred to those.
            "products": {
                f"products/{KETTLE}.yaml": f"brand_id '{PLAIN_BRAND}' names no brand of the archive",
                f"products/{GRINDER}.yaml": f"brand_id '{PLAIN_BRAND}' names no brand of the archive",
            },
            "offers": {
                f"offers/{KETTLE_OFFER}.yaml": f"product_id '{KETTLE}' names no product of the archive"
            },
        },
    ),
    "broken_reference": (
        broken_reference,
        {
            "products": {
                f"products/{KETTLE}.yaml": f"brand_id '{NO_SUCH_BRAND}' names no brand of the archive"
            },
            "offers": {
                f"offers/{KETTLE_OFFER}.yaml": f"product_id '{KETTLE}' names no product of the archive"
            },
        },
    ),
}


@pytest.mark.parametrize("archive_format", FORMATS)
@pytest.mark.parametrize("case", list(INVALID_CASES))
def test_invalid_records_fail_the_whole_import_and_nothing_is_written(
    stack: Any, api_url: str, tmp_path: Path, acme: dict[str, bytes], case: str, archive_format: str
) -> None:
    hostile, expected = INVALID_CASES[case]
    target, key = empty_organization(stack, tmp_path, "Target")
    job = import_archive(api_url, target, key, hostile(archive_format, acme[archive_format]))
    ImportJobResponse.model_validate(job)
    assert (job["status"], job["error_code"], job["error"]) == ("failed", "archive_invalid", INVALID), job
    assert job["problems"] == [] and "importing" not in job["_statuses_seen"]
    report = sections(job)
    found = {
        name: {item["path"]: item["reason"] for item in section["invalid"]}
        for name, section in report.items()
        if section["invalid"]
    }
    assert set(found) == set(expected), found
    for name, reasons in expected.items():
        assert set(found[name]) == set(reasons), found[name]
        assert report[name]["invalid_count"] == len(reasons)
        for path, reason in reasons.items():
            assert found[name][path].startswith(reason), (path, found[name][path])
    assert all(section["created"] == 0 for section in report.values())
    assert_nothing_written(stack, api_url, target, key, archive_format)


# -- the lifecycle ----------------------------------------------------------------------------------------

Matches = Callable[[dict[str, Any]], bool]


def hold_point(stage: str, organization_id: str, import_id: str) -> tuple[str, Matches]:
    """Where the import's run is held for a cancel (a DynamoDB call of the run, by operation and params):
    validate's first write to the job (before it reads the archive), its planning (the organization's
    records it reads, once the archive is verified), or the apply's first checkpoint (the binaries are
    written, the records not yet)."""
    settings = get_settings()

    def job_fields(params: dict[str, Any]) -> set[str]:
        if params.get("TableName") != settings.imports_table or params["Key"]["import_id"]["S"] != import_id:
            return set()
        names = params.get("ExpressionAttributeNames", {})
        return {value for name, value in names.items() if name.startswith("#f")}

    if stage == "validating":
        return "UpdateItem", lambda params: job_fields(params) == {"archive_format"}
    if stage == "planning":

        def planning(params: dict[str, Any]) -> bool:
            keys = params.get("RequestItems", {}).get(settings.org_data_table, {}).get("Keys", [])
            return any(key["partition"]["S"].startswith(f"{organization_id}#") for key in keys)

        return "BatchGetItem", planning
    return "UpdateItem", lambda params: "cursor" in (fields := job_fields(params)) and "status" not in fields


@contextlib.contextmanager
def held(operation: str, matches: Matches) -> Iterator[tuple[threading.Event, threading.Event]]:
    """The first ``operation`` that ``matches`` waits until released: (reached, release). A botocore hook on
    the DynamoDB client the in-process functions share (as tests/dynamo_hooks.py does)."""
    reached, release = threading.Event(), threading.Event()

    def hold(params: dict[str, Any], **_: Any) -> None:
        if not reached.is_set() and matches(params):
            reached.set()
            release.wait(60)

    events = wiring.client("dynamodb").meta.events
    event = f"provide-client-params.dynamodb.{operation}"
    events.register(event, hold)
    try:
        yield reached, release
    finally:
        release.set()
        events.unregister(event, hold)


def wait_for_run_end(stack: Any, organization_id: str, import_id: str) -> None:
    """Until the import's Step Functions execution has ended."""
    run_id = wiring.import_service().get(organization_id, import_id).run_id
    machine = stack.physical["ImportStateMachine"]
    arn = f"{machine.replace(':stateMachine:', ':execution:')}:{run_id}"
    sfn = stack.client("stepfunctions")
    deadline = time.monotonic() + 60
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the import's run is still going"
        time.sleep(0.2)


class CanceledRunWentOn(AssertionError):
    """A canceled import's run did more than stop: a function was refused a call, or it wrote to S3."""


@pytest.mark.parametrize(
    ("stage", "archive_format"),
    [
        ("validating", "zip"),
        ("planning", "tar.gz"),
        ("importing", "tar.gz"),
        ("importing", "zip"),
    ],
)
def test_cancel_while_running_then_import_again(
    stack: Any,
    api_url: str,
    tmp_path: Path,
    acme: dict[str, bytes],
    denials_expected: None,  # checked below, in the test itself
    stage: str,
    archive_format: str,
) -> None:
    """A DELETE while the run is held at ``stage``: the import is failed/canceled for good, its run stops
    without a refused call or a write, and a new import of the same archive completes."""
    denials_before = {id(denial) for denial in stack.denials}
    data = acme[archive_format]
    target, key = empty_organization(stack, tmp_path, "Target")
    job = create_import(api_url, target, key, len(data))
    import_id = job["import_id"]
    upload(job, data)
    url = f"{api_url}{IMPORT_BASE}/{target}/{import_id}"
    with held(*hold_point(stage, target, import_id)) as (reached, release):
        assert start_import(api_url, target, key, import_id, dry_run=False).status == 200
        assert reached.wait(30), f"the run never reached {stage}"
        expected = "importing" if stage == "importing" else "validating"
        assert call("GET", url, key).json()["status"] == expected
        canceled = call("DELETE", url, key)
        assert canceled.status == 200, canceled.body
        assert (canceled.json()["status"], canceled.json()["error_code"]) == ("failed", "canceled")
        release.set()
        wait_for_run_end(stack, target, import_id)
    after = call("GET", url, key).json()
    assert (after["status"], after["error_code"]) == ("failed", "canceled"), after
    assert after["error"].startswith("Canceled by request")
    assert all(section["created"] == 0 for section in after["sections"])
    again = start_import(api_url, target, key, import_id, dry_run=False)
    assert again.status == 409 and again.json()["error"] == "not_restartable", again.body
    _, exported = export(api_url, target, key, archive_format)
    records = records_of(archive_files(exported, archive_format))
    assert not records.get("brands") and not records.get("products")  # no record before its apply
    s3 = stack.client("s3")
    left = s3.list_objects_v2(Bucket=get_settings().exports_bucket, Prefix=f"imports/{target}/{import_id}/")
    left_behind = [item["Key"] for item in left.get("Contents", [])]

    later = import_archive(api_url, target, key, data)
    assert later["status"] == "completed" and later["error_code"] is None, later
    report = sections(later)
    assert {name: report[name]["created"] for name in ACME_COUNTS} == ACME_COUNTS
    _, exported = export(api_url, target, key, archive_format)
    records = records_of(archive_files(exported, archive_format))
    assert {name: len(records.get(name, {})) for name in ACME_COUNTS} == ACME_COUNTS

    # Last, so that the rest is checked first.
    refused = function_denials(stack, [d for d in stack.denials if id(d) not in denials_before])
    if refused:
        raise CanceledRunWentOn("AccessDenied after the cancel:\n" + "\n".join(sorted(set(refused))))
    if left_behind:
        raise CanceledRunWentOn(f"the canceled run wrote under the import's folder: {left_behind}")


@pytest.mark.parametrize("archive_format", FORMATS)
def test_dry_run_then_import_now_on_the_same_import(
    stack: Any, api_url: str, tmp_path: Path, acme: dict[str, bytes], archive_format: str
) -> None:
    data = acme[archive_format]
    target, key = empty_organization(stack, tmp_path, "Target")
    job = create_import(api_url, target, key, len(data))
    import_id = job["import_id"]
    upload(job, data)
    assert start_import(api_url, target, key, import_id, dry_run=True).status == 200
    dry = wait_for_import(api_url, target, import_id, key)
    assert (dry["status"], dry["dry_run"]) == ("completed", True), dry
    report = sections(dry)
    assert {name: report[name]["would_create"] for name in ACME_COUNTS} == ACME_COUNTS
    assert all(report[name]["created"] == 0 for name in ACME_COUNTS)
    assert_nothing_written(stack, api_url, target, key, archive_format)

    now = start_import(api_url, target, key, import_id, dry_run=False)
    assert now.status == 200 and now.json()["status"] == "validating", now.body
    applied = wait_for_import(api_url, target, import_id, key)
    assert (applied["status"], applied["dry_run"], applied["error_code"]) == ("completed", False, None), (
        applied
    )
    report = sections(applied)
    assert {name: report[name]["created"] for name in ACME_COUNTS} == ACME_COUNTS
    assert applied["progress"]["percent"] == 100
    _, exported = export(api_url, target, key, archive_format)
    records = records_of(archive_files(exported, archive_format))
    assert {name: len(records.get(name, {})) for name in ACME_COUNTS} == ACME_COUNTS
    # Applied: it cannot be started again.
    done = start_import(api_url, target, key, import_id, dry_run=False)
    assert done.status == 409 and done.json()["error"] == "already_completed", done.body
