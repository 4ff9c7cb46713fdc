"""`data-export import ARCHIVE ORG_ID`: upload an export archive and restore it into an organization.

The archive goes straight to S3 through presigned PUTs (one for a small archive, one per part for a big
one, a few parts at a time). The import's id is kept in `<ARCHIVE>.import.json` until the import is over,
so that running the same command again continues it: the API's `/upload` answer names the parts S3 still
lacks (with fresh URLs) and only those are sent. Then the import is started (or dry-run), followed with
live progress, and its outcome printed section by section. HTTP is the standard library's, through the
export client's request and retry machinery (client.py).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from data_export_cli.client import (
    POLL_MAX_SECONDS,
    POLL_MIN_SECONDS,
    USER_AGENT,
    ApiError,
    ByteProgress,
    ClientError,
    Display,
    ExportApi,
    backoff_seconds,
    connection_settings,
    format_bytes,
    interruptible,
    job_percent,
    poll_until_settled,
    time_left,
)

IMPORT_BASE_PATH = "/dashboard/api/v1/data-import"
MODES = ("copy", "restore")
IMPORT_RUNNING = ("validating", "importing")
# Failures the API resumes when the import is started again; after any other a new import is needed.
RESTARTABLE_ERRORS = ("import_failed", "timed_out")
# A start refused for these uploads (again) what storage lacks, then starts once more.
UPLOAD_MISSING = ("upload_incomplete", "not_uploaded", "upload_size_mismatch")
EXIT_INVALID = 3  # the archive's records are invalid (archive_invalid): listed, and nothing was written

UPLOAD_THREADS = 4  # parts in flight at once
PART_ATTEMPTS = 4  # per part and round, for 5xx answers and dropped connections
UPLOAD_ROUNDS = 6  # sets of upload URLs used in one upload (the first, then fresh ones when they expire)
EXPIRY_MARGIN_SECONDS = 30.0  # no part is begun this close to its URL's expiry: fresh URLs are asked first
PUT_TIMEOUT_SECONDS = 120.0
STATE_SUFFIX = ".import.json"


class ImportApi(ExportApi):
    """The import endpoints, over the export client's HTTP (retries on 429/503, Retry-After, errors)."""

    def __init__(self, endpoint: str, api_key: str, **options: Any) -> None:
        super().__init__(endpoint, api_key, base_path=IMPORT_BASE_PATH, **options)

    def create_import(self, organization_id: str, mode: str, size: int, overwrite: bool) -> dict[str, Any]:
        query = {"mode": mode, "size_bytes": str(size)}
        if overwrite:
            query["overwrite"] = "true"
        return self._json("POST", organization_id, query)

    def renew_upload(self, organization_id: str, import_id: str) -> dict[str, Any]:
        """The import with fresh URLs of what S3 still lacks."""
        return self._json("POST", f"{organization_id}/{import_id}/upload")

    def start_import(self, organization_id: str, import_id: str, dry_run: bool) -> dict[str, Any]:
        return self._json(
            "POST", f"{organization_id}/{import_id}/start", {"dry_run": "true" if dry_run else "false"}
        )

    def get_import(self, organization_id: str, import_id: str) -> dict[str, Any]:
        return self._json("GET", f"{organization_id}/{import_id}")


# --- the state file ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportState:
    """What `<ARCHIVE>.import.json` holds: which import this archive, as it is now, is being imported by."""

    endpoint: str
    organization_id: str
    import_id: str
    size: int
    mtime: float
    mode: str
    overwrite: bool = False

    def same_request(self, other: ImportState) -> bool:
        """The same archive (size and modification time) into the same place, the same way."""
        return replace(self, import_id="") == replace(other, import_id="")


def state_path(archive: Path) -> Path:
    return archive.with_name(archive.name + STATE_SUFFIX)


def load_state(path: Path) -> ImportState | None:
    """The saved state; None when there is none or it is unreadable (a new import is then created)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ImportState(
            endpoint=str(data["endpoint"]),
            organization_id=str(data["organization_id"]),
            import_id=str(data["import_id"]),
            size=int(data["size"]),
            mtime=float(data["mtime"]),
            mode=str(data["mode"]),
            overwrite=bool(data.get("overwrite", False)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_state(path: Path, state: ImportState) -> None:
    # Written aside and renamed: a run killed mid-write leaves the old state or the new, never half.
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


# --- uploading -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """One PUT of the archive: a part of a multipart upload (part_number), or the whole file (None)."""

    part_number: int | None
    offset: int
    size: int
    url: str


class _Stopped(Exception):
    """The run is ending (Ctrl-C, another part's fatal error): a part in flight gives up at once."""


class _PartReader:
    """`size` bytes of the file from its position, reporting each block sent; raises once `stop` is set."""

    def __init__(
        self, source: IO[bytes], size: int, on_sent: Callable[[int], None], stop: threading.Event
    ) -> None:
        self._source = source
        self._left = size
        self._on_sent = on_sent
        self._stop = stop

    def read(self, amount: int = -1) -> bytes:
        if self._stop.is_set():
            raise _Stopped
        if self._left <= 0:
            return b""
        wanted = self._left if amount is None or amount < 0 else min(amount, self._left)
        chunk = self._source.read(wanted)
        if not chunk:
            raise ClientError("the archive got shorter during the upload")
        self._left -= len(chunk)
        self._on_sent(len(chunk))
        return chunk


def put_part(
    url: str, archive: Path, piece: Piece, on_sent: Callable[[int], None], stop: threading.Event
) -> None:
    """PUT the piece's bytes to its presigned URL. No API key: the URL is signed for S3 alone."""
    with archive.open("rb") as source:
        source.seek(piece.offset)
        request = urllib.request.Request(  # noqa: S310 - a URL the API signed
            url,
            data=_PartReader(source, piece.size, on_sent, stop),
            method="PUT",
            headers={
                "Content-Length": str(piece.size),
                # urllib would send a form's type; only the host is signed, so any type is accepted.
                "Content-Type": "application/octet-stream",
                "User-Agent": USER_AGENT,
            },
        )
        with urllib.request.urlopen(request, timeout=PUT_TIMEOUT_SECONDS) as response:  # noqa: S310
            response.read()
            if response.status != 200:
                raise ClientError(f"storage answered HTTP {response.status} to a part's upload")


def pieces_of(upload: dict[str, Any]) -> list[Piece]:
    """What is still to be sent, by the API's upload target."""
    if upload.get("url"):
        return [Piece(None, 0, int(upload["size_bytes"]), str(upload["url"]))]
    return [
        Piece(int(part["part_number"]), int(part["offset"]), int(part["size_bytes"]), str(part["url"]))
        for part in upload.get("parts", [])
    ]


def expiry_deadline(upload: dict[str, Any], now: float) -> float | None:
    """When (time.time()) no new part should be begun with these URLs. None when unknown, or when the
    expiry looks already past on arrival (a clock set wrong here): S3's 403 then says when it is."""
    try:
        expires = datetime.fromisoformat(str(upload["expires_at"])).timestamp()
    except (KeyError, ValueError):
        return None
    deadline = expires - EXPIRY_MARGIN_SECONDS
    return deadline if deadline > now else None


class _Transfer:
    """Bytes sent across the threads, drawn on a ByteProgress; display lines taken one at a time. The bar
    on a terminal moves with the bytes sent; the lines elsewhere count only parts storage has confirmed, so
    that a line never reports as uploaded what a failed PUT then takes back."""

    def __init__(self, display: Display, total: int, done: int) -> None:
        self._lock = threading.Lock()
        self._display = display
        self.sent = self.confirmed = done
        self._bar = ByteProgress(display, total, verb="uploaded")
        self._bar.update(done)

    def add(self, count: int) -> None:
        """Bytes sent (negative: a failed attempt's, taken back)."""
        with self._lock:
            self.sent += count
            if self._display.interactive:
                self._bar.update(self.sent)

    def confirm(self, count: int) -> None:
        """A piece of `count` bytes is in storage."""
        with self._lock:
            self.confirmed += count
            if not self._display.interactive:
                self._bar.update(self.confirmed)

    def line(self, text: str) -> None:
        with self._lock:
            self._display.line(text)


def _describe(piece: Piece) -> str:
    return "the archive" if piece.part_number is None else f"part {piece.part_number}"


def put_pieces(
    archive: Path,
    pieces: list[Piece],
    transfer: _Transfer,
    deadline: float | None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> str | None:
    """Upload the pieces, a few at a time, each retried on 5xx answers and dropped connections. None when
    all are in S3; else why fresh URLs are needed (expired, or about to)."""
    stop = threading.Event()
    expired: list[str] = []

    def send(piece: Piece) -> None:
        for attempt in range(1, PART_ATTEMPTS + 1):
            if expired or stop.is_set():
                return
            if deadline is not None and clock() >= deadline:
                expired.append("the upload URLs are about to expire")
                return
            sent = 0

            def on_sent(count: int) -> None:
                nonlocal sent
                sent += count
                transfer.add(count)

            try:
                put_part(piece.url, archive, piece, on_sent, stop)
                transfer.confirm(piece.size)
                return
            except _Stopped:
                transfer.add(-sent)
                return
            except urllib.error.HTTPError as error:
                transfer.add(-sent)
                detail = _s3_message(error)
                if error.code == 403:  # expired (or otherwise refused) signature: only fresh URLs help
                    expired.append(f"storage refused {_describe(piece)}: {detail}")
                    return
                if error.code not in (500, 502, 503, 504):
                    raise ClientError(
                        f"storage refused {_describe(piece)}: HTTP {error.code} {detail}"
                    ) from error
                problem = f"HTTP {error.code} {detail}"
            except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
                transfer.add(-sent)
                problem = str(getattr(error, "reason", error)) or type(error).__name__
            if stop.is_set():  # the run is ending: the error is the interruption's doing
                return
            if attempt == PART_ATTEMPTS:
                raise ClientError(f"upload of {_describe(piece)} failed {PART_ATTEMPTS} times ({problem})")
            transfer.line(f"upload of {_describe(piece)} interrupted ({problem}); retrying")
            sleep(backoff_seconds(attempt))

    pool = ThreadPoolExecutor(max_workers=UPLOAD_THREADS, thread_name_prefix="upload")
    try:
        futures = [pool.submit(send, piece) for piece in pieces]
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in finished:
            future.result()  # the first failure, if any
    except BaseException:  # KeyboardInterrupt too: parts in flight stop at their next block
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return expired[0] if expired else None


def _s3_message(error: urllib.error.HTTPError) -> str:
    """S3's <Code> and <Message> from its XML error, else the body's start."""
    try:
        body = error.read().decode("utf-8", "replace")
    except OSError:
        return ""
    code = body.split("<Code>", 1)[-1].split("</Code>", 1)[0] if "<Code>" in body else ""
    message = body.split("<Message>", 1)[-1].split("</Message>", 1)[0] if "<Message>" in body else ""
    return f"{code}: {message}".strip(": ") if code or message else " ".join(body.split())[:200]


def upload_archive(
    api: ImportApi,
    organization_id: str,
    job: dict[str, Any],
    archive: Path,
    display: Display,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Send what S3 lacks of the archive; returns the job's last answer. The job's own `upload` target is
    used first when it has one (a create's answer), after that fresh ones from `/upload`."""
    size = int(job["size_bytes"])
    upload = job.get("upload")
    for round_number in range(1, UPLOAD_ROUNDS + 1):
        if not upload:
            job = api.renew_upload(organization_id, job["import_id"])
            upload = job.get("upload")
            if not upload:
                raise ClientError(f"import {job['import_id']}: the API gave no upload target")
        pieces = pieces_of(upload)
        left = sum(piece.size for piece in pieces)
        if round_number == 1 and left < size:
            display.line(
                f"resuming the upload: {len(upload.get('parts_uploaded', []))} part(s), "
                f"{format_bytes(size - left)} of {format_bytes(size)}, already in storage"
            )
        if not pieces:
            display.clear()
            return job
        transfer = _Transfer(display, size, size - left)
        why = put_pieces(
            archive, pieces, transfer, expiry_deadline(upload, clock()), sleep=sleep, clock=clock
        )
        if why is None:
            display.clear()
            return job
        display.line(f"{why}; asking for fresh upload URLs")
        upload = None
    raise ClientError(
        f"upload of {archive} not finished after {UPLOAD_ROUNDS} sets of upload URLs; "
        "run the same command again to resume it"
    )


def start_uploaded(
    api: ImportApi,
    organization_id: str,
    job: dict[str, Any],
    archive: Path,
    display: Display,
    dry_run: bool,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Upload what is missing, then start. A start refused because parts are missing (a PUT that S3 lost,
    or that another run was still sending) uploads the missing parts again and starts once more."""
    for attempt in range(1, 4):
        job = upload_archive(api, organization_id, job, archive, display, sleep=sleep, clock=clock)
        try:
            return api.start_import(organization_id, job["import_id"], dry_run)
        except ApiError as error:
            if error.code not in UPLOAD_MISSING or attempt == 3:
                raise
            display.line(f"the import cannot start yet: {error}; sending what is missing")
            job = {**job, "upload": None}
    raise AssertionError("unreachable")


# --- following the import ------------------------------------------------------------------------------


def section_progress(section: dict[str, Any]) -> str:
    """`products 2/4 records, 1/5 binaries`: how far the apply is with one section."""
    return (
        f"{section['key']} {section.get('created', 0)}/{section.get('would_create', 0)} records, "
        f"{section.get('binaries_restored', 0)}/{section.get('binaries_would_restore', 0)} binaries"
    )


def moving_section(previous: dict[str, Any] | None, job: dict[str, Any]) -> dict[str, Any] | None:
    """The section whose counters changed since the previous poll (the apply writes binaries first, then
    records in reference order, not in archive order, so the order of the list says nothing)."""
    if job.get("status") != "importing" or previous is None or previous.get("status") != "importing":
        return None
    before = {section["key"]: section for section in previous.get("sections", [])}
    sections: list[dict[str, Any]] = job.get("sections", [])
    return next((section for section in sections if section != before.get(section["key"])), None)


def import_progress_summary(job: dict[str, Any], moving: dict[str, Any] | None = None) -> str:
    progress = job.get("progress")
    if not progress or job.get("dry_run"):  # known once planned; a dry run writes (so progresses) nothing
        return ""
    text = (
        f"{progress['records_done']}/{progress['records_total']} records, "
        f"{progress['binaries_done']}/{progress['binaries_total']} binaries, "
        f"{format_bytes(progress['bytes_done'])} of {format_bytes(progress['bytes_total'])}"
    )
    return text + time_left(progress) + (f"; now {section_progress(moving)}" if moving else "")


class ImportProgressView:
    """Successive polls of an import: a bar redrawn on a terminal, else a line whenever the status, the
    tenth of the work or the section being written changes. Both name the section being written."""

    def __init__(self, display: Display) -> None:
        self.display = display
        self._previous: dict[str, Any] | None = None
        self._moving: dict[str, Any] | None = None
        self._last_line: tuple[str, int, str | None] | None = None

    def update(self, job: dict[str, Any]) -> None:
        percent = job_percent(job)
        moved = moving_section(self._previous, job)
        if moved is not None or job["status"] != "importing":
            self._moving = moved  # a poll where nothing moved keeps naming the section last seen moving
        self._previous = job
        summary = import_progress_summary(job, self._moving)
        if self.display.interactive:
            bar = self.display.bar(percent / 100)
            self.display.status(f"{bar} {percent:5.1f}% {job['status']} {summary}".rstrip())
            return
        key = (job["status"], int(percent // 10), self._moving["key"] if self._moving else None)
        if key != self._last_line:
            self._last_line = key
            self.display.line(job["status"] + (f" {percent:.1f}% {summary}" if summary else ""))


def wait_for_import(
    api: ImportApi,
    organization_id: str,
    job: dict[str, Any],
    view: ImportProgressView,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the import is completed or failed: every 0.5 s while it moves, backing off to every
    5 s while it does not (as the export's wait does)."""
    job = poll_until_settled(
        job,
        lambda current: api.get_import(organization_id, current["import_id"]),
        IMPORT_RUNNING,
        view.update,
        lambda answer: (answer.get("progress"), answer.get("sections"), answer["status"]),
        sleep=sleep,
        shortest=POLL_MIN_SECONDS,
        longest=POLL_MAX_SECONDS,
    )
    view.display.clear()
    return job


# --- the outcome ---------------------------------------------------------------------------------------


def section_outcome(section: dict[str, Any], dry_run: bool) -> str:
    """`products: 4 to create, 0 existing, 0 invalid, 5 binaries` (a dry run) or `... 4 created ...`."""
    if section.get("skipped_reason"):
        return f"{section['key']}: skipped ({section['skipped_reason']})"
    invalid = int(section.get("invalid_count") or len(section.get("invalid", [])))
    if dry_run:
        fields = [f"{section.get('would_create', 0)} to create"]
    else:
        fields = [f"{section.get('created', 0)} created"]
    fields.append(f"{section.get('skipped_existing', 0)} existing")
    if section.get("overwritten"):
        fields.append(f"{section['overwritten']} {'to overwrite' if dry_run else 'overwritten'}")
    fields.append(f"{invalid} invalid")
    binaries = section.get("binaries_would_restore" if dry_run else "binaries_restored", 0)
    fields.append(f"{binaries} binaries")
    if section.get("binaries_skipped_existing"):
        fields.append(f"{section['binaries_skipped_existing']} binaries existing")
    if section.get("merged_fields"):  # a copy fills in the target's empty profile fields
        merged = section["merged_fields"]
        fields.append(f"{len(merged)} fields {'to merge' if dry_run else 'merged'} ({', '.join(merged)})")
    return f"{section['key']}: " + ", ".join(fields)


def invalid_count(job: dict[str, Any]) -> int:
    return sum(
        int(section.get("invalid_count") or len(section.get("invalid", [])))
        for section in job.get("sections", [])
    )


def outcome_lines(job: dict[str, Any]) -> list[str]:
    """The sections' outcome, then the archive's problems and the invalid records (path: reason)."""
    dry_run = bool(job.get("dry_run"))
    lines = [f"  {section_outcome(section, dry_run)}" for section in job.get("sections", [])]
    if job.get("problems"):
        lines.append("archive refused:" if job.get("error_code") == "archive_refused" else "problems:")
        lines += [
            f"  [{problem['code']}] {problem.get('path') or '(archive)'}: {problem['message']}"
            for problem in job["problems"]
        ]
    if invalid_count(job):
        lines.append("invalid records:")
        for section in job.get("sections", []):
            listed = section.get("invalid", [])
            lines += [f"  {record['path']}: {record['reason']}" for record in listed]
            unlisted = int(section.get("invalid_count") or len(listed)) - len(listed)
            if unlisted > 0:
                lines.append(f"  ({unlisted} more invalid {section['key']} not listed)")
    return lines


# --- the command ---------------------------------------------------------------------------------------


@dataclass
class ImportRun:
    """Where an import stands, for what an interrupted run says."""

    job: dict[str, Any] | None = None
    state_file: Path | None = None


def failed_for_good(job: dict[str, Any]) -> bool:
    return job["status"] == "failed" and job.get("error_code") not in RESTARTABLE_ERRORS


def over(job: dict[str, Any]) -> bool:
    """Nothing more can come of this import: applied, or failed beyond a restart. A completed dry run is
    not over: its uploaded archive can still be imported (or dry-run again) without uploading it again."""
    return (job["status"] == "completed" and not job.get("dry_run")) or failed_for_good(job)


def _reusable(
    api: ImportApi, organization_id: str, saved: ImportState, display: Display
) -> dict[str, Any] | None:
    """The saved import when it can be continued; None when it is gone or failed for good."""
    try:
        job = api.get_import(organization_id, saved.import_id)
    except ApiError as error:
        if error.status != 404:
            raise
        display.line(f"import {saved.import_id} no longer exists; starting a new one")
        return None
    if failed_for_good(job):
        display.line(f"import {saved.import_id} failed ({job.get('error_code')}); starting a new one")
        return None
    return job


def import_archive(
    api: ImportApi,
    archive: Path,
    organization_id: str,
    display: Display,
    run: ImportRun,
    *,
    mode: str = "restore",
    dry_run: bool = False,
    overwrite: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Create (or continue) the import, upload, start and follow it; returns its final answer. The state
    file goes once the import is over (see ``over``)."""
    try:
        stat = archive.stat()
    except OSError as error:
        raise ClientError(f"cannot read {archive}: {error.strerror or error}") from error
    if not archive.is_file():
        raise ClientError(f"{archive} is not a file")
    state_file = run.state_file = state_path(archive)
    wanted = ImportState(api.endpoint, organization_id, "", stat.st_size, stat.st_mtime, mode, overwrite)
    saved = load_state(state_file)
    job: dict[str, Any] | None = None
    if saved is not None and saved.same_request(wanted):
        job = _reusable(api, organization_id, saved, display)
        if job is not None:
            done = " dry run" if job["status"] == "completed" else ""
            display.line(f"continuing import {job['import_id']} ({job['status']}{done}), from {state_file}")
    elif saved is not None:
        display.line(f"{state_file} is of another import (or the archive changed): starting a new one")
    if job is None:
        job = api.create_import(organization_id, mode, stat.st_size, overwrite)
        parts = len((job.get("upload") or {}).get("parts", []))
        display.line(
            f"import {job['import_id']} created ({mode} into {organization_id}, "
            f"{format_bytes(stat.st_size)}" + (f" in {parts} parts)" if parts else ")")
        )
        try:
            save_state(state_file, replace(wanted, import_id=job["import_id"]))
        except OSError as error:
            display.line(
                f"warning: cannot write {state_file} ({error}): an interrupted upload will not resume"
            )
    run.job = job

    # Where the import stands decides what is left to do; a running one is only followed.
    how = " (dry run)" if dry_run else ""
    if job["status"] == "pending":
        display.line(f"uploading {archive} ({format_bytes(stat.st_size)})")
        job = run.job = start_uploaded(
            api, organization_id, job, archive, display, dry_run, sleep=sleep, clock=clock
        )
        display.line(f"import {job['import_id']} started{how}: {job['status']}")
    elif job["status"] in ("completed", "failed") and not over(job):
        # A dry run done (its archive is uploaded), or a failure the API resumes where it stopped.
        job = run.job = api.start_import(organization_id, job["import_id"], dry_run)
        display.line(f"import {job['import_id']} started again{how}: {job['status']}")
    job = run.job = wait_for_import(api, organization_id, job, ImportProgressView(display), sleep=sleep)
    if over(job):
        state_file.unlink(missing_ok=True)
    return job


def report(job: dict[str, Any], display: Display) -> int:
    """Print the outcome; the exit code: 0 all well, EXIT_INVALID records (or the archive's content)
    invalid; raises ClientError (exit 1) for any other failure."""
    ran_dry = bool(job.get("dry_run"))
    what = "dry run" if ran_dry else "import"
    status = job["status"]
    heading = f"{what} {job['import_id']} {status}"
    if status == "completed" and ran_dry:
        heading += ": nothing was written; an import would do this (run without --dry-run to import)"
    display.line(heading)
    for line in outcome_lines(job):
        display.line(line)
    problems = job.get("problems") or []
    if status == "failed" and job.get("error_code") != "archive_invalid":
        reason = job.get("error") or "no reason given"
        if problems:
            first = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            reason += f": [{first['code']}] {first.get('path') or '(archive)'}: {first['message']}{more}"
        code = f" [{job['error_code']}]" if job.get("error_code") else ""
        hint = "" if failed_for_good(job) else " (to resume: run the same command again)"
        raise ClientError(f"import {job['import_id']} failed{code}: {reason}{hint}")
    invalid = invalid_count(job)
    if invalid or status == "failed":
        found = [f"{invalid} invalid record(s)"] + ([f"{len(problems)} problem(s)"] if problems else [])
        print(
            f"data-export: error: {what} {job['import_id']}: {' and '.join(found)} in the archive; "
            "nothing was written",
            file=sys.stderr,
        )
        return EXIT_INVALID
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    display = Display(sys.stdout)
    run = ImportRun()
    endpoint, api_key = connection_settings(args)
    api = ImportApi(endpoint, api_key, on_wait=display.line)

    def import_and_report() -> int:
        job = import_archive(
            api,
            Path(args.archive),
            args.organization_id,
            display,
            run,
            mode=args.mode,
            dry_run=args.dry_run,
            overwrite=args.overwrite,
        )
        return report(job, display)

    return interruptible(display, import_and_report, lambda: _resume_hint(run))


def _resume_hint(run: ImportRun) -> str:
    if run.job is None:
        return "No import was created."
    where = f" ({run.state_file} holds import {run.job['import_id']})" if run.state_file else ""
    if run.job["status"] == "pending":
        return f"Run the same command again to resume the upload{where}."
    return f"The import continues on the server. Run the same command again to follow it{where}."


def add_command(
    commands: Any,
    connection: Callable[[argparse.ArgumentParser], None],
    reporting_errors: Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]],
) -> None:
    """`data-export import ARCHIVE ORG_ID`, with the connection options every client command has."""
    parser = commands.add_parser(
        "import",
        help="upload an export archive (resumable) and import it into an organization",
    )
    parser.add_argument("archive", help="a .zip or .tar.gz archive made by `data-export export`")
    connection(parser)
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="restore",
        help="restore: back into the organization it came from, re-creating what is missing (default); "
        "copy: into another organization, with new ids",
    )
    parser.add_argument("--dry-run", action="store_true", help="report what would be done; write nothing")
    parser.add_argument("--overwrite", action="store_true", help="replace records that already exist")
    parser.set_defaults(func=reporting_errors(cmd_import))
