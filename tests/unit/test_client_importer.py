"""`data-export import`'s upload and resume against a real S3 (moto's server over HTTP): multipart parts and
single PUTs through URLs presigned with boto3 as the server presigns them, checked by reading the completed
object back. The import API itself is a small stand-in (an http.server) that answers `/upload` with the parts
S3 lacks, by ListParts, and `/start` with 409 upload_incomplete while any is missing; the real API is in
tests/e2e/test_client_import.py. Also: the state file, expired URLs, the outcome lines and exit codes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config
from data_export_cli import importer
from data_export_cli.client import ClientError, Display
from data_export_cli.importer import (
    EXIT_INVALID,
    IMPORT_BASE_PATH,
    ImportApi,
    ImportRun,
    Piece,
    import_archive,
    load_state,
    outcome_lines,
    section_outcome,
    state_path,
)
from data_export_cli.main import main

from tests.credentials import moto_credentials
from tests.moto_s3 import own_s3

KEY = "csb_test_key"
ORG = "org1"
BUCKET = "imports"
MIB = 1024 * 1024
PART = 5 * MIB  # S3's smallest part but the last: moto completes nothing smaller
EXPIRED_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message></Error>"
)

SECTIONS = [
    {"key": "organization", "records": 1, "would_create": 0, "skipped_existing": 1},
    {"key": "members", "records": 3, "skipped_reason": "members are not imported"},
    {"key": "products", "records": 4, "would_create": 4, "binaries": 5, "binaries_would_restore": 5},
]


@dataclass
class StandIn:
    """The import API's answers, kept to what the client needs; S3 is moto's real server."""

    s3: Any
    url: str = ""
    single_max: int = PART  # archives up to this size get one PUT URL
    imports: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path with query)
    expires_in: timedelta = timedelta(minutes=15)  # what expires_at says
    expired_once: set[int] = field(default_factory=set)  # parts whose next URL S3 refuses as expired
    outcome: dict[str, Any] = field(default_factory=dict)  # merged into the finished import
    started: int = 0

    # -- the API ---------------------------------------------------------------------------------
    def create(self, org: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        import_id = secrets.token_hex(11)
        size = int(query["size_bytes"])
        key = f"imports/{org}/{import_id}/archive"
        job: dict[str, Any] = {
            "import_id": import_id,
            "organization_id": org,
            "status": "pending",
            "mode": query["mode"],
            "dry_run": None,
            "overwrite": query.get("overwrite") == "true",
            "size_bytes": size,
            "created_at": datetime.now(UTC).isoformat(),
            "sections": [],
            "problems": [],
            "_key": key,
            "_upload_id": None,
            "_polls": 0,
        }
        if size > self.single_max:
            job["_upload_id"] = self.s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        self.imports[import_id] = job
        return 200, {**self.public(job), "upload": self.target(job)}

    def uploaded(self, job: dict[str, Any]) -> dict[int, int]:
        """Part number -> size of what S3 has (ListParts), as the server asks."""
        listed = self.s3.list_parts(Bucket=BUCKET, Key=job["_key"], UploadId=job["_upload_id"])
        return {part["PartNumber"]: part["Size"] for part in listed.get("Parts", [])}

    def target(self, job: dict[str, Any]) -> dict[str, Any]:
        size, key = job["size_bytes"], job["_key"]
        expires_at = (datetime.now(UTC) + self.expires_in).isoformat()
        if job["_upload_id"] is None:
            url = self.s3.generate_presigned_url(
                "put_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=900
            )
            return {"size_bytes": size, "url": url, "expires_at": expires_at}
        have = self.uploaded(job)
        parts, done = [], []
        for number in range(1, -(-size // PART) + 1):
            offset = (number - 1) * PART
            length = min(PART, size - offset)
            if have.get(number) == length:
                done.append(number)
                continue
            url = self.s3.generate_presigned_url(
                "upload_part",
                Params={"Bucket": BUCKET, "Key": key, "UploadId": job["_upload_id"], "PartNumber": number},
                ExpiresIn=900,
            )
            if number in self.expired_once:
                self.expired_once.discard(number)
                url = f"{self.url}/expired-url?part={number}"
            parts.append({"part_number": number, "offset": offset, "size_bytes": length, "url": url})
        return {
            "size_bytes": size,
            "part_size_bytes": PART,
            "parts": parts,
            "parts_uploaded": done,
            "expires_at": expires_at,
        }

    def start(self, job: dict[str, Any], dry_run: bool) -> tuple[int, dict[str, Any]]:
        if job["_upload_id"] is not None:
            missing = self.target(job)["parts"]
            if missing:
                return 409, {"error": "upload_incomplete", "message": f"{len(missing)} parts are missing"}
            have = self.s3.list_parts(Bucket=BUCKET, Key=job["_key"], UploadId=job["_upload_id"])["Parts"]
            self.s3.complete_multipart_upload(
                Bucket=BUCKET,
                Key=job["_key"],
                UploadId=job["_upload_id"],
                MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in have]},
            )
            job["_upload_id"] = None
        self.started += 1
        job.update(status="validating", dry_run=dry_run, _polls=0)
        return 200, self.public(job)

    def poll(self, job: dict[str, Any]) -> dict[str, Any]:
        """A dry run: validating -> the outcome. An apply: validating -> importing (products 2 of 4, then
        3 of 4) -> the outcome."""
        if job["status"] in ("validating", "importing"):
            job["_polls"] += 1
            if job["_polls"] <= 2 and not job["dry_run"]:
                created, binaries = (2, 2) if job["_polls"] == 1 else (3, 5)
                job.update(
                    status="importing",
                    sections=[
                        {**s, "created": created, "binaries_restored": binaries}
                        if s["key"] == "products"
                        else s
                        for s in SECTIONS
                    ],
                    progress={
                        "binaries_total": 5,
                        "binaries_done": binaries,
                        "bytes_total": 1000,
                        "bytes_done": 200 * binaries,
                        "records_total": 4,
                        "records_done": created,
                        "percent": 40.0 * job["_polls"],
                        "eta_seconds": 3,
                    },
                )
            else:
                done = [
                    {
                        **s,
                        "created": 0 if job["dry_run"] else s.get("would_create", 0),
                        "binaries_restored": 0 if job["dry_run"] else s.get("binaries_would_restore", 0),
                    }
                    for s in SECTIONS
                ]
                job.update(status="completed", sections=done, progress=None)
                job.update(self.outcome)
        return self.public(job)

    @staticmethod
    def public(job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    def stored(self, import_id: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=BUCKET, Key=self.imports[import_id]["_key"])["Body"].read()
        return body


class Handler(BaseHTTPRequestHandler):
    stand_in: StandIn

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(
        self, status: int, body: dict[str, Any] | bytes, content_type: str = "application/json"
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        stand_in = self.stand_in
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        stand_in.requests.append((self.command, self.path))
        if url.path == "/expired-url":  # what S3 answers to a presigned URL past its expiry
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._reply(403, EXPIRED_XML, "application/xml")
            return
        if url.path == "/not-storage":
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._reply(
                400, b"<Error><Code>InvalidRequest</Code><Message>no</Message></Error>", "application/xml"
            )
            return
        assert self.headers["X-API-Key"] == KEY
        parts = url.path.removeprefix(IMPORT_BASE_PATH + "/").split("/")
        job = stand_in.imports.get(parts[1]) if len(parts) > 1 else None
        if len(parts) > 1 and job is None:
            self._reply(404, {"error": "not_found", "message": "No such import"})
        elif self.command == "POST" and len(parts) == 1:
            self._reply(*stand_in.create(parts[0], query))
        elif self.command == "POST" and parts[2:] == ["upload"]:
            assert job is not None
            self._reply(200, {**stand_in.public(job), "upload": stand_in.target(job)})
        elif self.command == "POST" and parts[2:] == ["start"]:
            assert job is not None
            self._reply(*stand_in.start(job, query["dry_run"] == "true"))
        elif self.command == "GET" and job is not None:
            self._reply(200, stand_in.poll(job))
        else:
            self._reply(400, {"error": "bad_request", "message": f"{self.command} {self.path}"})

    do_GET = do_POST = do_PUT = do_DELETE = _handle


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    """moto's S3 server, the client presigning with SigV4 as the service's does (wiring.py)."""
    credentials = moto_credentials()
    for client in own_s3(BUCKET):
        yield boto3.session.Session().client(
            "s3",
            endpoint_url=client.meta.endpoint_url,
            region_name="us-east-1",
            config=Config(signature_version="s3v4"),
            aws_access_key_id=credentials["aws_access_key_id"],
            aws_secret_access_key=credentials["aws_secret_access_key"],
        )


@pytest.fixture
def stand_in(s3: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    state = StandIn(s3)
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Bound", (Handler,), {"stand_in": state}))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setenv("DATA_EXPORT_API_KEY", KEY)
    monkeypatch.setenv("DATA_EXPORT_ENDPOINT", state.url)
    monkeypatch.setattr(importer, "POLL_MIN_SECONDS", 0.01)
    monkeypatch.setattr(importer, "backoff_seconds", lambda attempt: 0.01)
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def puts(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """The part numbers PUT to storage (None: a whole-file PUT), in the order they were begun."""
    sent: list[int | None] = []
    real = importer.put_part

    def recording(url: str, archive: Path, piece: Piece, *args: Any) -> None:
        sent.append(piece.part_number)
        real(url, archive, piece, *args)

    monkeypatch.setattr(importer, "put_part", recording)
    return sent


@dataclass
class PartHook:
    """A test's hand in the PUTs: ``instead``, when set, is given each piece and its URL before the PUT and
    returns the URL to PUT it to, or None for no PUT at all (it may also raise)."""

    instead: Callable[[Piece, str], str | None] | None = None


@pytest.fixture
def part_hook(puts: list[int | None], monkeypatch: pytest.MonkeyPatch) -> PartHook:
    """`importer.put_part` through a PartHook, then the `puts` fixture's (which records, then sends)."""
    hook = PartHook()
    recording = importer.put_part

    def hooked(url: str, archive: Path, piece: Piece, *args: Any) -> None:
        target = url if hook.instead is None else hook.instead(piece, url)
        if target is not None:
            recording(target, archive, piece, *args)

    monkeypatch.setattr(importer, "put_part", hooked)
    return hook


def archive_file(folder: Path, size: int) -> Path:
    path = folder / "acme-export.zip"
    path.write_bytes(os.urandom(size))
    return path


def run(*args: str) -> int:
    return main(["import", *args])


def only_import(stand_in: StandIn) -> str:
    (import_id,) = stand_in.imports
    return import_id


def test_a_multipart_upload_lands_byte_for_byte_and_the_outcome_is_printed(
    stand_in: StandIn, puts: list[int | None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = archive_file(tmp_path, 2 * PART + 123_457)  # three parts, the last a short one
    assert run(str(archive), ORG, "--mode", "copy") == 0
    out = capsys.readouterr().out
    import_id = only_import(stand_in)
    assert stand_in.stored(import_id) == archive.read_bytes()
    assert sorted(p or 0 for p in puts) == [1, 2, 3]
    assert not state_path(archive).exists()  # completed: nothing left to resume
    assert ("POST", f"{IMPORT_BASE_PATH}/{ORG}?mode=copy&size_bytes={archive.stat().st_size}") in (
        stand_in.requests
    )
    assert ("POST", f"{IMPORT_BASE_PATH}/{ORG}/{import_id}/start?dry_run=false") in stand_in.requests
    lines = out.splitlines()
    assert lines[0] == f"import {import_id} created (copy into {ORG}, 10.1 MiB in 3 parts)"
    assert "uploaded 100% (10609217 of 10609217 bytes)" in lines
    assert "importing 40.0% 2/4 records, 2/5 binaries, 400 B of 1000 B, about 0:03 left" in lines
    assert (
        "importing 80.0% 3/4 records, 5/5 binaries, 1000 B of 1000 B, about 0:03 left; "
        "now products 3/4 records, 5/5 binaries"
    ) in lines
    assert lines[-4:] == [
        f"import {import_id} completed",
        "  organization: 0 created, 1 existing, 0 invalid, 0 binaries",
        "  members: skipped (members are not imported)",
        "  products: 4 created, 0 existing, 0 invalid, 5 binaries",
    ]
    assert "\r" not in out  # not a terminal: plain lines


def test_a_small_archive_is_one_put_and_a_dry_run_says_what_it_would_do(
    stand_in: StandIn, puts: list[int | None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = archive_file(tmp_path, 300_000)
    assert run(str(archive), ORG, "--dry-run", "--overwrite") == 0
    import_id = only_import(stand_in)
    assert stand_in.stored(import_id) == archive.read_bytes()
    assert puts == [None]
    assert stand_in.imports[import_id]["overwrite"] is True
    assert stand_in.imports[import_id]["mode"] == "restore"  # the default
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3:] == [
        "  organization: 0 to create, 1 existing, 0 invalid, 0 binaries",
        "  members: skipped (members are not imported)",
        "  products: 4 to create, 0 existing, 0 invalid, 5 binaries",
    ]
    assert lines[-4] == (
        f"dry run {import_id} completed: nothing was written; an import would do this "
        "(run without --dry-run to import)"
    )
    # The dry run's upload stays for the import: the next run starts the same import, uploading nothing.
    assert load_state(state_path(archive)) is not None
    puts.clear()
    assert run(str(archive), ORG, "--overwrite") == 0
    out = capsys.readouterr().out
    assert puts == [] and len(stand_in.imports) == 1
    assert f"continuing import {import_id} (completed dry run), from {state_path(archive)}" in out
    assert f"import {import_id} started again: validating" in out
    assert out.splitlines()[-1] == "  products: 4 created, 0 existing, 0 invalid, 5 binaries"
    assert not state_path(archive).exists()


def test_an_interrupted_upload_resumes_with_only_the_missing_parts(
    stand_in: StandIn,
    puts: list[int | None],
    part_hook: PartHook,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    archive = archive_file(tmp_path, 3 * PART + 10)  # four parts

    def ctrl_c_after_part_1(piece: Piece, url: str) -> str:
        if piece.part_number != 1:
            raise KeyboardInterrupt
        return url

    monkeypatch.setattr(importer, "UPLOAD_THREADS", 1)  # part 1 goes before the interruption
    part_hook.instead = ctrl_c_after_part_1
    assert run(str(archive), ORG, "--mode", "copy") == 130
    captured = capsys.readouterr()
    import_id = only_import(stand_in)
    assert (
        f"Run the same command again to resume the upload ({state_path(archive)} holds import {import_id})"
        in captured.err
    )
    saved = load_state(state_path(archive))
    assert saved is not None and saved.import_id == import_id and saved.mode == "copy"
    assert saved.size == archive.stat().st_size and saved.endpoint == stand_in.url
    assert stand_in.uploaded(stand_in.imports[import_id]) == {1: PART}

    part_hook.instead = None
    monkeypatch.setattr(importer, "UPLOAD_THREADS", 4)
    puts.clear()
    assert run(str(archive), ORG, "--mode", "copy") == 0
    out = capsys.readouterr().out
    assert len(stand_in.imports) == 1  # the same import, no new one
    assert sorted(p or 0 for p in puts) == [2, 3, 4]
    assert f"continuing import {import_id} (pending), from {state_path(archive)}" in out
    assert "resuming the upload: 1 part(s), 5.0 MiB of 15.0 MiB, already in storage" in out
    assert ("POST", f"{IMPORT_BASE_PATH}/{ORG}/{import_id}/upload") in stand_in.requests
    assert stand_in.stored(import_id) == archive.read_bytes()
    assert not state_path(archive).exists()


def test_a_part_that_keeps_failing_ends_the_run_and_the_next_run_sends_the_rest(
    stand_in: StandIn,
    puts: list[int | None],
    part_hook: PartHook,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    archive = archive_file(tmp_path, 2 * PART + 1)
    failures: list[int] = []

    def part_2_unreachable(piece: Piece, url: str) -> str:
        if piece.part_number == 2:
            failures.append(2)
            return "http://127.0.0.1:9/refused"  # nobody listens: a connection error, retried
        return url

    part_hook.instead = part_2_unreachable
    assert run(str(archive), ORG) == 1
    err = capsys.readouterr().err
    assert "data-export: error: upload of part 2 failed 4 times (" in err
    assert failures == [2, 2, 2, 2]
    import_id = only_import(stand_in)
    assert sorted(stand_in.uploaded(stand_in.imports[import_id])) == [1, 3]
    assert state_path(archive).exists()

    puts.clear()
    part_hook.instead = None
    assert run(str(archive), ORG) == 0
    assert puts == [2]
    assert stand_in.stored(import_id) == archive.read_bytes()


def test_urls_that_expire_mid_upload_are_asked_for_again(
    stand_in: StandIn, puts: list[int | None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = archive_file(tmp_path, 2 * PART + 1)
    stand_in.expired_once = {2}  # S3 answers 403 "Request has expired" to part 2's first URL
    assert run(str(archive), ORG) == 0
    out = capsys.readouterr().out
    import_id = only_import(stand_in)
    assert "storage refused part 2: AccessDenied: Request has expired; asking for fresh upload URLs" in out
    assert sorted(p or 0 for p in puts) == [1, 2, 2, 3]
    assert [r for r in stand_in.requests if r[1].endswith("/upload")] == [
        ("POST", f"{IMPORT_BASE_PATH}/{ORG}/{import_id}/upload")
    ]
    assert stand_in.stored(import_id) == archive.read_bytes()


def test_urls_about_to_expire_are_renewed_before_a_part_is_begun(
    stand_in: StandIn, puts: list[int | None], tmp_path: Path
) -> None:
    archive = archive_file(tmp_path, PART + 1)
    out = io.StringIO()
    display = Display(out, interactive=False)
    api = ImportApi(stand_in.url, KEY)
    stand_in.expires_in = timedelta(seconds=40)  # 30 s of margin: 10 s to go
    clock_now = [datetime.now(UTC).timestamp()]

    def later() -> float:
        clock_now[0] += 4  # each look at the clock is 4 s later: part 2 would begin 2 s past the margin
        return clock_now[0]

    importer.UPLOAD_THREADS, threads = 1, importer.UPLOAD_THREADS
    try:
        job = import_archive(api, archive, ORG, display, ImportRun(), clock=later)
    finally:
        importer.UPLOAD_THREADS = threads
    assert job["status"] == "completed"
    assert puts == [1, 2]  # part 2 with the renewed URL only
    assert "the upload URLs are about to expire; asking for fresh upload URLs" in out.getvalue()
    assert sum(1 for _, path in stand_in.requests if path.endswith("/upload")) == 1


def test_a_start_refused_as_incomplete_sends_the_missing_parts(
    stand_in: StandIn, puts: list[int | None], part_hook: PartHook, tmp_path: Path
) -> None:
    """S3 lost a part the client thought sent (or another run was still sending it)."""
    archive = archive_file(tmp_path, 2 * PART + 1)
    lost: list[int] = []

    def part_3_lost(piece: Piece, url: str) -> str | None:
        if piece.part_number == 3 and 3 not in lost:
            lost.append(3)
            puts.append(3)
            return None  # "sent", yet S3 never got it
        return url

    part_hook.instead = part_3_lost
    assert run(str(archive), ORG) == 0
    import_id = only_import(stand_in)
    starts = [r for r in stand_in.requests if "/start" in r[1]]
    assert len(starts) == 2  # 409, then accepted
    assert sorted(p or 0 for p in puts) == [1, 2, 3, 3]
    assert stand_in.stored(import_id) == archive.read_bytes()


def test_a_changed_archive_gets_a_new_import(
    stand_in: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = archive_file(tmp_path, 1000)
    state_path(archive).write_text(
        json.dumps(
            {
                "endpoint": stand_in.url,
                "organization_id": ORG,
                "import_id": "old",
                "size": 999,  # another file was here
                "mtime": archive.stat().st_mtime,
                "mode": "restore",
            }
        )
    )
    assert run(str(archive), ORG) == 0
    out = capsys.readouterr().out
    assert "is of another import (or the archive changed): starting a new one" in out
    assert len(stand_in.imports) == 1 and not state_path(archive).exists()


def test_a_saved_import_that_is_gone_is_replaced(
    stand_in: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = archive_file(tmp_path, 1000)
    state = {
        "endpoint": stand_in.url,
        "organization_id": ORG,
        "import_id": "expired-import",
        "size": 1000,
        "mtime": archive.stat().st_mtime,
        "mode": "restore",
    }
    state_path(archive).write_text(json.dumps(state))
    assert run(str(archive), ORG) == 0
    assert "import expired-import no longer exists; starting a new one" in capsys.readouterr().out


def test_a_refused_archive_exits_1_with_its_problems(
    stand_in: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = archive_file(tmp_path, 1000)
    stand_in.outcome = {
        "status": "failed",
        "error_code": "archive_refused",
        "error": "The archive failed verification",
        "sections": [],
        "problems": [
            {"code": "tampered", "path": "products/p1.yaml", "message": "SHA-256 differs from the manifest"},
            {"code": "missing_file", "path": "brands/b1.yaml", "message": "listed but absent"},
        ],
    }
    assert run(str(archive), ORG) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-3:] == [
        "archive refused:",
        "  [tampered] products/p1.yaml: SHA-256 differs from the manifest",
        "  [missing_file] brands/b1.yaml: listed but absent",
    ]
    import_id = only_import(stand_in)
    assert captured.err == (
        f"data-export: error: import {import_id} failed [archive_refused]: The archive failed verification: "
        "[tampered] products/p1.yaml: SHA-256 differs from the manifest (and 1 more)\n"
    )
    assert not state_path(archive).exists()  # refused for good: a new run starts a new import


def test_invalid_records_exit_3_and_are_listed(
    stand_in: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = archive_file(tmp_path, 1000)
    stand_in.outcome = {  # what the API answers: failed, nothing written, each section's invalid records
        "status": "failed",
        "error_code": "archive_invalid",
        "error": "The archive holds invalid records: see each section's invalid; nothing was written",
        "sections": [
            {
                "key": "offers",
                "records": 3,
                "would_create": 1,
                "invalid": [{"path": "offers/o3.yaml", "reason": "product p9 does not exist"}],
                "invalid_count": 2,
            }
        ],
        "problems": [{"code": "duplicate_id", "path": "offers/o4.yaml", "message": "o1 appears twice"}],
    }
    assert run(str(archive), ORG, "--dry-run") == EXIT_INVALID
    captured = capsys.readouterr()
    import_id = only_import(stand_in)
    assert captured.out.splitlines()[-7:] == [
        f"dry run {import_id} failed",
        "  offers: 1 to create, 0 existing, 2 invalid, 0 binaries",
        "problems:",
        "  [duplicate_id] offers/o4.yaml: o1 appears twice",
        "invalid records:",
        "  offers/o3.yaml: product p9 does not exist",
        "  (1 more invalid offers not listed)",
    ]
    assert captured.err == (
        f"data-export: error: dry run {import_id}: 2 invalid record(s) and 1 problem(s) in the archive; "
        "nothing was written\n"
    )
    assert not state_path(archive).exists()  # a new archive is needed: nothing to resume


def test_progress_on_a_terminal_is_one_line_redrawn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Display, "width", lambda self: 160)
    out = io.StringIO()
    view = importer.ImportProgressView(Display(out, interactive=True))
    job: dict[str, Any] = {"status": "importing", "sections": SECTIONS, "progress": None}
    view.update({**job, "status": "validating"})
    view.update(
        {
            **job,
            "sections": [{**s, "created": 1} if s["key"] == "products" else s for s in SECTIONS],
            "progress": {
                "binaries_total": 5,
                "binaries_done": 5,
                "bytes_total": 2048,
                "bytes_done": 2048,
                "records_total": 4,
                "records_done": 1,
                "percent": 62.5,
                "eta_seconds": 75,
            },
        }
    )
    assert "\n" not in out.getvalue()
    last = out.getvalue().split("\r")[-1]
    assert last.startswith("[") and " 62.5% importing 1/4 records, 5/5 binaries, 2.0 KiB of 2.0 KiB" in last
    assert last.rstrip().endswith("about 1:15 left")  # the poll before was validating: nothing moved yet


def test_a_failure_that_can_resume_keeps_the_state_and_the_next_run_starts_again(
    stand_in: StandIn, puts: list[int | None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = archive_file(tmp_path, 1000)
    stand_in.outcome = {"status": "failed", "error_code": "timed_out", "error": "a step ran out of time"}
    assert run(str(archive), ORG) == 1
    assert "(to resume: run the same command again)" in capsys.readouterr().err
    assert state_path(archive).exists()
    stand_in.outcome = {}
    assert run(str(archive), ORG) == 0
    assert puts == [None]  # not uploaded again
    assert stand_in.started == 2
    assert not state_path(archive).exists()


def test_a_missing_archive_is_one_error_line(stand_in: StandIn, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("/nonexistent/a.zip", ORG) == 1
    assert capsys.readouterr().err.startswith("data-export: error: cannot read /nonexistent/a.zip: ")
    assert stand_in.requests == []


def test_no_api_key_is_reported(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("DATA_EXPORT_API_KEY", raising=False)
    assert run("a.zip", ORG) == 1
    assert "no API key: pass --api-key or set DATA_EXPORT_API_KEY" in capsys.readouterr().err


def test_the_storage_put_carries_no_api_key(stand_in: StandIn, tmp_path: Path) -> None:
    """The PUT goes to the presigned URL as is: here to the stand-in, to see its headers."""
    seen: dict[str, str] = {}

    class Storage(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_PUT(self) -> None:
            seen.update({k.lower(): v for k, v in self.headers.items()})
            seen["body-sha256"] = hashlib.sha256(
                self.rfile.read(int(self.headers["Content-Length"]))
            ).hexdigest()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Storage)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        archive = archive_file(tmp_path, 70_000)
        piece = Piece(
            None, 0, 70_000, f"http://127.0.0.1:{server.server_address[1]}/bucket/key?X-Amz-Signature=s"
        )
        importer.put_part(piece.url, archive, piece, lambda n: None, threading.Event())
    finally:
        server.shutdown()
        server.server_close()
    assert "x-api-key" not in seen
    assert seen["content-length"] == "70000"
    assert seen["body-sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_outcome_lines_of_an_apply_with_overwrites_and_existing_binaries() -> None:
    section = {
        "key": "products",
        "records": 4,
        "created": 1,
        "skipped_existing": 1,
        "overwritten": 2,
        "binaries_restored": 3,
        "binaries_skipped_existing": 2,
    }
    assert section_outcome(section, dry_run=False) == (
        "products: 1 created, 1 existing, 2 overwritten, 0 invalid, 3 binaries, 2 binaries existing"
    )
    assert outcome_lines({"sections": [section], "dry_run": False}) == [
        f"  {section_outcome(section, False)}"
    ]


def test_client_error_is_raised_for_a_fatal_storage_answer(stand_in: StandIn, tmp_path: Path) -> None:
    archive = archive_file(tmp_path, 1000)
    api = ImportApi(stand_in.url, KEY)
    job = api.create_import(ORG, "copy", 1000, False)
    job["upload"]["url"] = f"{stand_in.url}/not-storage"  # the stand-in answers 400 to this
    with pytest.raises(ClientError, match=r"storage refused the archive: HTTP 400"):
        importer.upload_archive(api, ORG, job, archive, Display(io.StringIO(), interactive=False))


def test_upload_lines_count_only_what_storage_confirmed() -> None:
    """Bytes a PUT sent are not uploaded until storage answers: a failed PUT takes them back."""
    out = io.StringIO()
    transfer = importer._Transfer(Display(out, interactive=False), total=400, done=0)
    transfer.add(300)  # sent, unanswered
    transfer.add(-300)  # the PUT failed
    transfer.add(100)
    transfer.confirm(100)
    assert out.getvalue().splitlines() == ["uploaded 0% (0 of 400 bytes)", "uploaded 25% (100 of 400 bytes)"]
