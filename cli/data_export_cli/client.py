"""The API client: `data-export export | status | list | cancel` (and `import`: importer.py).

HTTP goes through the standard library only (urllib), so the client adds no dependency to the project.
`export` requests an export, polls it with live progress, downloads the archive with resume (HTTP Range,
a `.part` file, a freshly signed URL for every attempt), checks the archive's SHA-256 and then every file
against the manifest's `files` list.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import http.client
import json
import os
import random
import shlex
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TextIO

import yaml

BASE_PATH = "/dashboard/api/v1/data-export"
DEFAULT_ENDPOINT = "http://127.0.0.1:8080"  # `data-export local serve`
API_KEY_ENV = "DATA_EXPORT_API_KEY"
ENDPOINT_ENV = "DATA_EXPORT_ENDPOINT"
USER_AGENT = "data-export-client/1"
FORMATS = ("zip", "tar.gz")
RUNNING = ("pending", "processing")

CHUNK_BYTES = 256 * 1024
POLL_MIN_SECONDS = 0.5
POLL_MAX_SECONDS = 5.0
REQUEST_ATTEMPTS = 6  # per API call, for 429/503 and dropped connections
DOWNLOAD_ATTEMPTS = 6  # per download, each with a fresh URL and a Range from where the .part ends
LONGEST_RETRY_AFTER = 120.0  # a longer wait (a used-up daily quota) is reported instead of waited out
REDIRECTS = (301, 302, 303, 307, 308)
REDRAW_SECONDS = 0.1  # at most ten redraws a second of the download bar


class ClientError(Exception):
    """A failure the command reports in one line before exiting non-zero."""


class ApiError(ClientError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status} {code})")
        self.status = status
        self.code = code


# --- HTTP ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    url: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The /download answer is a 302 to S3: the client follows it itself, without the API key."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_seconds(attempt: int) -> float:
    return float(min(POLL_MAX_SECONDS * 2, 0.5 * 2 ** (attempt - 1)))


def error_message(reply: Reply) -> ApiError:
    """The API's own sentence when the body is its JSON error, else the start of whatever came back."""
    try:
        body = json.loads(reply.body)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return ApiError(reply.status, str(body.get("error", "error")), body["message"])
    text = " ".join(reply.body.decode("utf-8", "replace").split())[:200] or "no body"
    return ApiError(reply.status, "error", f"{reply.url.split('?')[0]} answered: {text}")


class ExportApi:
    """The export endpoints, with retries on 429/503 (honouring Retry-After) and on dropped connections.

    A 429 or 503 without Retry-After (API Gateway's own throttle sends none) is retried after a jittered
    backoff, between half and all of ``backoff_seconds``: clients throttled at the same moment then do not
    come back at the same moment."""

    def __init__(
        self,
        endpoint: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        on_wait: Callable[[str], None] | None = None,
        jitter: Callable[[], float] = random.random,
        base_path: str = BASE_PATH,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.base = self.endpoint + base_path
        self._api_key = api_key
        self._timeout = timeout
        self._sleep = sleep
        self._on_wait = on_wait
        self._jitter = jitter
        self._opener = urllib.request.build_opener(_NoRedirect)

    def _url(self, path: str, query: dict[str, str] | None = None) -> str:
        quoted = "/".join(urllib.parse.quote(part, safe="") for part in path.split("/"))
        return f"{self.base}/{quoted}" + (f"?{urllib.parse.urlencode(query)}" if query else "")

    def send(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        url = self._url(path, query)
        request = urllib.request.Request(  # noqa: S310 - the endpoint is the user's choice
            url,
            method=method,
            headers={
                "X-API-Key": self._api_key,
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
                **(headers or {}),
            },
        )
        for attempt in range(1, REQUEST_ATTEMPTS + 1):
            try:
                with self._opener.open(request, timeout=self._timeout) as response:
                    reply = Reply(response.status, _lower(response.headers.items()), response.read(), url)
            except urllib.error.HTTPError as error:
                reply = Reply(error.code, _lower(error.headers.items()), error.read(), url)
            except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
                reason = getattr(error, "reason", error)
                # Nobody listening is not going to change; anything else may be a blip worth a retry, but a
                # POST or DELETE is not repeated blindly.
                if (
                    isinstance(reason, ConnectionRefusedError)
                    or method != "GET"
                    or attempt == REQUEST_ATTEMPTS
                ):
                    raise ClientError(f"cannot reach {self.base}: {reason}") from error
                self._wait(backoff_seconds(attempt), f"connection problem ({reason})")
                continue
            if reply.status in (429, 503) and attempt < REQUEST_ATTEMPTS:
                delay = retry_after_seconds(reply.headers.get("retry-after"))
                if delay is None:
                    delay = backoff_seconds(attempt) * (0.5 + 0.5 * self._jitter())
                if delay <= LONGEST_RETRY_AFTER:
                    self._wait(delay, f"HTTP {reply.status} ({error_message(reply)})")
                    continue
            return reply
        raise AssertionError("unreachable")

    def _wait(self, seconds: float, why: str) -> None:
        if self._on_wait is not None:
            self._on_wait(f"{why}; retrying in {seconds:.0f} s")
        self._sleep(seconds)

    def _json(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        reply = self.send(method, path, query, headers)
        if reply.status != 200:
            raise error_message(reply)
        try:
            body = json.loads(reply.body)
        except ValueError as error:
            raise ClientError(f"{method} {reply.url}: HTTP 200 with a body that is not JSON") from error
        if not isinstance(body, dict):
            raise ClientError(f"{method} {reply.url}: expected a JSON object")
        return body

    def start_export(
        self, organization_id: str, archive_format: str, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._json("POST", organization_id, {"archive_format": archive_format}, headers)

    def get_export(self, organization_id: str, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"{organization_id}/{job_id}")

    def cancel_export(self, organization_id: str, job_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"{organization_id}/{job_id}")

    def list_exports(
        self, organization_id: str, limit: int | None = None, next_token: str | None = None
    ) -> dict[str, Any]:
        query = {"limit": str(limit)} if limit else {}
        if next_token:
            query["next_token"] = next_token
        return self._json("GET", organization_id, query or None)

    def download_location(self, organization_id: str, job_id: str) -> str:
        """A freshly signed URL of the archive (the Location of the /download redirect)."""
        reply = self.send("GET", f"{organization_id}/{job_id}/download")
        location = reply.headers.get("location")
        if reply.status in REDIRECTS and location:
            return urllib.parse.urljoin(reply.url, location)
        if reply.status == 200:
            raise ClientError(f"{reply.url} answered 200 instead of redirecting to the archive")
        raise error_message(reply)


def _lower(items: Any) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in items}


# --- progress display ------------------------------------------------------------------------------------


def render_bar(fraction: float, width: int) -> str:
    """`[#####-----]`, `width` characters in all."""
    inner = max(0, width - 2)
    filled = round(inner * min(1.0, max(0.0, fraction)))
    return "[" + "#" * filled + "-" * (inner - filled) + "]"


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


class Display:
    """Progress on a terminal: one line redrawn in place (carriage return). Anywhere else (a pipe, a file,
    a CI log): plain lines, one per change, no control characters at all."""

    def __init__(self, stream: TextIO, interactive: bool | None = None) -> None:
        self.stream = stream
        self.interactive = stream.isatty() if interactive is None else interactive
        self._status_shown = False

    def width(self) -> int:
        return shutil.get_terminal_size((80, 24)).columns

    def bar(self, fraction: float) -> str:
        """A progress bar for the status line: a third of the terminal wide, 10 to 40 characters."""
        return render_bar(fraction, min(40, max(10, (self.width() - 1) // 3)))

    def line(self, text: str) -> None:
        """A lasting line (above the live status on a terminal)."""
        self.clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def status(self, text: str) -> None:
        """The live status line: redrawn on a terminal, ignored elsewhere (callers print lines instead)."""
        if not self.interactive:
            return
        width = self.width() - 1  # writing the last column would wrap on some terminals
        self.stream.write("\r" + text[:width].ljust(width))
        self.stream.flush()
        self._status_shown = True

    def clear(self) -> None:
        if self._status_shown:
            self.stream.write("\r" + " " * (self.width() - 1) + "\r")
            self._status_shown = False


class JobProgress:
    """Renders successive polls of one job: a line per section as it finishes (or fails) and the overall
    progress, as a bar on a terminal, else as a line whenever the status or the tenth of the work changes."""

    def __init__(self, display: Display) -> None:
        self.display = display
        self._sections: dict[str, str] = {}
        self._last_line: tuple[str, int] | None = None

    def update(self, job: dict[str, Any]) -> None:
        for section in job.get("sections", []):
            key, status = section["key"], section["status"]
            if self._sections.get(key) != status:
                self._sections[key] = status
                if status in ("completed", "failed"):
                    self.display.line(section_line(section))
        percent = job_percent(job)
        summary = progress_summary(job)
        if self.display.interactive:
            self.display.status(f"{self.display.bar(percent / 100)} {percent:5.1f}% {summary}")
        else:
            key = (job["status"], int(percent // 10))
            if key != self._last_line:
                self._last_line = key
                self.display.line(f"{job['status']} {percent:.1f}% {summary}")


def job_percent(job: dict[str, Any]) -> float:
    """How far the job is, by its progress (0 until it reports any, 100 once completed without)."""
    progress = job.get("progress") or {}
    return float(progress.get("percent", 100.0 if job["status"] == "completed" else 0.0))


def section_line(section: dict[str, Any]) -> str:
    line = (
        f"  {section['key']:<13} {section['status']:<10} {section.get('record_count', 0)} records, "
        f"{section.get('binary_count', 0)} binaries"
    )
    return line + (f" ({section['error']})" if section.get("error") else "")


def progress_summary(job: dict[str, Any]) -> str:
    progress = job.get("progress")
    if not progress:
        done = sum(1 for s in job.get("sections", []) if s["status"] == "completed")
        return f"{done}/{len(job.get('sections', []))} sections"
    text = (
        f"{progress['sections_done']}/{progress['sections_total']} sections, "
        f"{progress['records_written']} records, {progress['binaries_written']} binaries, "
        f"{format_bytes(progress['bytes_written'])}"
    )
    return text + time_left(progress)


def time_left(progress: dict[str, Any]) -> str:
    """`, about 0:03 left` when the progress has an estimate, else nothing."""
    if progress.get("eta_seconds") is None:
        return ""
    return f", about {format_duration(progress['eta_seconds'])} left"


class ByteProgress:
    """Transfer progress: a bar with bytes and speed on a terminal, else a line per quarter."""

    def __init__(
        self,
        display: Display,
        total: int,
        clock: Callable[[], float] = time.monotonic,
        verb: str = "downloaded",
    ) -> None:
        self.display = display
        self.total = total
        self.verb = verb
        self._clock = clock
        self._started: tuple[float, int] | None = None
        self._last_quarter = -1
        self._drawn_at = -float("inf")

    def update(self, done: int) -> None:
        now = self._clock()
        if self._started is None:
            self._started = (now, done)
        fraction = done / self.total if self.total else 1.0
        if self.display.interactive:
            if done < self.total and now - self._drawn_at < REDRAW_SECONDS:
                return  # a fast download would otherwise redraw thousands of times a second
            self._drawn_at = now
            since, from_bytes = self._started
            speed = (done - from_bytes) / (now - since) if now > since else 0.0
            self.display.status(
                f"{self.display.bar(fraction)} {100 * fraction:5.1f}% "
                f"{format_bytes(done)} of {format_bytes(self.total)}"
                + (f", {format_bytes(speed)}/s" if speed else "")
            )
        else:
            quarter = int(fraction * 4)
            if quarter != self._last_quarter:
                self._last_quarter = quarter
                self.display.line(f"{self.verb} {100 * fraction:.0f}% ({done} of {self.total} bytes)")


# --- waiting, downloading ------------------------------------------------------------------------------


def wait_for_job(
    api: ExportApi,
    organization_id: str,
    job: dict[str, Any],
    progress: JobProgress,
    *,
    timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll until the job is completed or failed: quickly while it moves, backing off while it does not."""
    deadline = clock() + timeout if timeout else None

    def in_time(current: dict[str, Any]) -> None:
        if deadline is not None and clock() >= deadline:
            raise ClientError(f"export {current['job_id']} still {current['status']} after {timeout:g} s")

    return poll_until_settled(
        job,
        lambda current: api.get_export(organization_id, current["job_id"]),
        RUNNING,
        progress.update,
        lambda answer: (answer.get("progress"), answer["sections"]),
        sleep=sleep,
        shortest=POLL_MIN_SECONDS,
        longest=POLL_MAX_SECONDS,
        before_wait=in_time,
    )


def poll_until_settled(
    job: dict[str, Any],
    fetch: Callable[[dict[str, Any]], dict[str, Any]],
    running: tuple[str, ...],
    update: Callable[[dict[str, Any]], None],
    signature: Callable[[dict[str, Any]], Any],
    *,
    sleep: Callable[[float], None],
    shortest: float,
    longest: float,
    before_wait: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Poll a job (an export, an import) until its status is none of ``running``: ``fetch`` is given the
    last answer and returns the next; ``update`` is given the job and every answer. Every ``shortest``
    seconds while it moves (its ``signature`` changes), else backing off by half again each time, up to
    ``longest``. ``before_wait`` may raise to stop waiting (a deadline)."""
    interval = shortest
    update(job)
    while job["status"] in running:
        if before_wait is not None:
            before_wait(job)
        sleep(interval)
        previous, job = job, fetch(job)
        update(job)
        moved = signature(job) != signature(previous)
        interval = shortest if moved else min(longest, interval * 1.5)
    return job


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def download_archive(
    api: ExportApi,
    organization_id: str,
    job: dict[str, Any],
    target: Path,
    display: Display,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Download the archive into `<target>.part`, resuming what a previous attempt or run left there;
    returns the SHA-256 (hex) of the whole file. Every attempt asks /download for a fresh URL."""
    part = part_path(target)
    total = int(job["file_size_bytes"])
    part.parent.mkdir(parents=True, exist_ok=True)
    bytes_bar = ByteProgress(display, total)
    digest, hashed = hashlib.sha256(), 0
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        offset = part.stat().st_size if part.exists() else 0
        if offset > total:
            part.unlink()
            offset = 0
        if hashed != offset:  # a .part left by an earlier run: its bytes count toward the checksum
            digest, hashed = _hash_file(part, offset), offset
        if offset == total:
            break
        if attempt == 1 and offset:
            display.line(f"resuming the download of {part} at byte {offset} of {total}")
        url = api.download_location(organization_id, job["job_id"])
        # No API key here: the URL is signed for S3 and the key is none of S3's business.
        request = urllib.request.Request(  # noqa: S310 - the URL is the API's redirect
            url, headers={"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                if response.status == 206:
                    start = _content_range_start(response.headers.get("Content-Range"))
                    if start != offset:
                        raise ClientError(f"asked for bytes from {offset}, the server sent from {start}")
                    mode = "ab"
                else:  # 200: the whole file, whatever we asked for
                    mode, offset = "wb", 0
                    digest, hashed = hashlib.sha256(), 0
                with part.open(mode) as out:
                    bytes_bar.update(offset)
                    while chunk := response.read(CHUNK_BYTES):
                        out.write(chunk)
                        digest.update(chunk)
                        hashed += len(chunk)
                        bytes_bar.update(hashed)
        except urllib.error.HTTPError as error:
            if error.code == 416:  # the .part does not fit the object: start over
                part.unlink(missing_ok=True)
                digest, hashed = hashlib.sha256(), 0
            elif error.code not in (403, 500, 502, 503, 504):  # 403: the signature expired meanwhile
                raise ClientError(f"download failed: HTTP {error.code} from storage") from error
            problem = f"HTTP {error.code}"
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            problem = str(getattr(error, "reason", error)) or type(error).__name__
        else:
            if hashed == total:
                break
            problem = f"connection closed at byte {hashed} of {total}"
        if attempt == DOWNLOAD_ATTEMPTS:
            raise ClientError(
                f"download interrupted ({problem}) after {DOWNLOAD_ATTEMPTS} attempts; "
                f"{part} is kept: run the command again to resume"
            )
        display.line(f"download interrupted ({problem}); resuming from byte {hashed} with a fresh URL")
        sleep(backoff_seconds(attempt))
    display.clear()
    if hashed != total:
        raise ClientError(f"{part} has {hashed} bytes, the API says the archive has {total}")
    return digest.hexdigest()


def _hash_file(path: Path, length: int) -> Any:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        remaining = length
        while remaining and (chunk := source.read(min(CHUNK_BYTES, remaining))):
            digest.update(chunk)
            remaining -= len(chunk)
    return digest


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200"
    if not value or not value.startswith("bytes "):
        return None
    first = value[6:].split("-", 1)[0]
    return int(first) if first.isdigit() else None


# --- verification --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileDigest:
    size: int
    sha256: str


@dataclass(frozen=True)
class Verified:
    files: int
    warning: str | None = None


MANIFEST = "manifest.yaml"


def top_folder(output_filename: str) -> str:
    for extension in (".tar.gz", ".zip"):
        if output_filename.endswith(extension):
            return output_filename[: -len(extension)]
    return output_filename


def archive_digests(path: Path, archive_format: str) -> tuple[dict[str, FileDigest], dict[str, bytes]]:
    """Size and SHA-256 of every regular file, by full name, and the content of any manifest.yaml found
    (for the caller to pick the top-level one). Raises ClientError naming the first unreadable entry."""
    digests: dict[str, FileDigest] = {}
    manifests: dict[str, bytes] = {}

    def take(name: str, stream: IO[bytes]) -> None:
        if name in digests:
            raise ClientError(f"{path}: {name} appears twice in the archive")
        digest, size, content = hashlib.sha256(), 0, bytearray()
        keep = name.rsplit("/", 1)[-1] == MANIFEST
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
            if keep:
                content += chunk
        digests[name] = FileDigest(size, digest.hexdigest())
        if keep:
            manifests[name] = bytes(content)

    current = "(archive header)"
    try:
        if archive_format == "zip":
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    current = info.filename
                    if not info.is_dir():
                        with archive.open(info) as stream:
                            take(info.filename, stream)
        else:
            # A stream read: one pass over the file, whatever its size.
            with tarfile.open(path, mode="r|gz") as stream_archive:
                for member in stream_archive:
                    current = member.name
                    if member.isdir():
                        continue
                    if not member.isfile():
                        raise ClientError(f"{path}: {member.name} is not a regular file")
                    extracted = stream_archive.extractfile(member)
                    if extracted is None:
                        raise ClientError(f"{path}: cannot read {member.name}")
                    take(member.name, extracted)
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, OSError) as error:
        raise ClientError(f"{path}: cannot read {current}: {error}") from error
    return digests, manifests


def manifest_files(manifest: Any) -> dict[str, FileDigest] | None:
    """The manifest's `files` list by path; None when the manifest has no `files` key (an older format)."""
    if not isinstance(manifest, dict):
        raise ClientError("the manifest is not a YAML mapping")
    if "files" not in manifest:
        return None
    entries = manifest["files"]
    if not isinstance(entries, list):
        raise ClientError("the manifest's files is not a list")
    files: dict[str, FileDigest] = {}
    for entry in entries:
        try:
            path, size, sha256 = str(entry["path"]), int(entry["size"]), str(entry["sha256"]).lower()
        except (KeyError, TypeError, ValueError) as error:
            raise ClientError(f"the manifest's files has a malformed entry: {entry!r}") from error
        if path in files:
            raise ClientError(f"the manifest lists {path} twice")
        files[path] = FileDigest(size, sha256)
    return files


def compare_with_manifest(expected: dict[str, FileDigest], actual: dict[str, FileDigest]) -> list[str]:
    """Every difference between the manifest's list and the archive's files (paths relative to the top
    folder, the manifest itself excluded), in path order."""
    problems: list[str] = []
    for path in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(path), actual.get(path)
        if got is None:
            problems.append(f"{path}: listed in the manifest but missing from the archive")
        elif want is None:
            problems.append(f"{path}: in the archive but not listed in the manifest")
        elif got.size != want.size:
            problems.append(f"{path}: {got.size} bytes, the manifest says {want.size}")
        elif got.sha256 != want.sha256:
            problems.append(f"{path}: SHA-256 {got.sha256}, the manifest says {want.sha256}")
    return problems


def verify_archive(path: Path, archive_format: str, top: str) -> Verified:
    """Check every file of the archive against `<top>/manifest.yaml`; raises ClientError on a difference."""
    digests, manifests = archive_digests(path, archive_format)
    outside = sorted(name for name in digests if not name.startswith(top + "/"))
    if outside:
        raise ClientError(f"{path}: {outside[0]} is outside the archive's folder {top}/")
    manifest_name = f"{top}/{MANIFEST}"
    if manifest_name not in manifests:
        raise ClientError(f"{path}: no {manifest_name} in the archive")
    try:
        manifest = yaml.safe_load(manifests[manifest_name])
    except yaml.YAMLError as error:
        raise ClientError(f"{path}: {manifest_name} is not valid YAML: {error}") from error
    expected = manifest_files(manifest)
    actual = {name[len(top) + 1 :]: digest for name, digest in digests.items() if name != manifest_name}
    if expected is None:
        return Verified(
            len(actual),
            f"warning: {manifest_name} has no files list (an older format): "
            "only the archive's SHA-256 was checked, not each file",
        )
    problems = compare_with_manifest(expected, actual)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ClientError(f"{path}: {problems[0]}{more}")
    return Verified(len(actual))


# --- commands ------------------------------------------------------------------------------------------


def resolve_target(output: str | None, output_filename: str) -> Path:
    """`-o` names the file, or a folder (existing, or written with a trailing slash) to put it in."""
    if not output:
        return Path(output_filename)
    if output.endswith(("/", os.sep)) or Path(output).is_dir():
        return Path(output) / output_filename
    return Path(output)


def connection_settings(args: argparse.Namespace) -> tuple[str, str]:
    """(endpoint, API key): a flag wins over its environment variable."""
    api_key = args.api_key or os.environ.get(API_KEY_ENV)
    if not api_key:
        raise ClientError(f"no API key: pass --api-key or set {API_KEY_ENV}")
    return args.endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT, api_key


def _api(args: argparse.Namespace, display: Display | None = None) -> ExportApi:
    endpoint, api_key = connection_settings(args)
    return ExportApi(endpoint, api_key, on_wait=display.line if display else None)


@dataclass
class ExportRun:
    """Where an export stands, for the resume hint of an interrupted run."""

    job: dict[str, Any] | None = None
    target: Path | None = None


def export_archive(
    api: ExportApi,
    organization_id: str,
    display: Display,
    run: ExportRun,
    *,
    archive_format: str = "zip",
    idempotency_key: str | None = None,
    job_id: str | None = None,
    timeout: float | None = None,
    output: str | None = None,
) -> Path:
    """Request (or continue) an export, wait for it, download it and verify it; returns the archive's path.
    Raises ClientError on any failure."""
    if job_id:
        run.job = api.get_export(organization_id, job_id)
        display.line(f"export {run.job['job_id']} ({run.job['archive_format']}): {run.job['status']}")
    else:
        run.job = api.start_export(organization_id, archive_format, idempotency_key)
        display.line(
            f"export {run.job['job_id']} requested ({run.job['archive_format']}): {run.job['status']}"
        )
    job = run.job = wait_for_job(api, organization_id, run.job, JobProgress(display), timeout=timeout)
    display.clear()
    if job["status"] != "completed":
        reason = job.get("error") or "no reason given"
        what = "was canceled" if job.get("error_code") == "canceled" else "failed"
        raise ClientError(f"export {job['job_id']} {what}: {reason}")
    if job.get("error_code") in ("archive_deleted", "archive_expired"):
        raise ClientError(f"export {job['job_id']}: {job.get('error') or job['error_code']}")
    target = run.target = resolve_target(output, job["output_filename"])
    display.line(f"downloading {job['output_filename']} ({format_bytes(job['file_size_bytes'])})")
    sha256 = download_archive(api, organization_id, job, target, display)
    part = part_path(target)
    expected_sha256 = job.get("archive_sha256")
    if expected_sha256 and sha256 != expected_sha256.lower():
        part.unlink()  # resuming a corrupt file could never succeed: the next run starts over
        raise ClientError(
            f"checksum mismatch: {part} has SHA-256 {sha256}, the API says {expected_sha256} "
            "(the partial file was deleted; run again to download it afresh)"
        )
    verified = verify_archive(part, job["archive_format"], top_folder(job["output_filename"]))
    part.replace(target)
    if not expected_sha256:
        display.line("warning: the API gave no archive_sha256; the archive's own checksum is unchecked")
    if verified.warning:
        display.line(verified.warning)
    display.line(
        f"verified {target}: SHA-256 {sha256}"
        + ("" if verified.warning else f", {verified.files} files match the manifest")
    )
    return target


def interruptible(display: Display, work: Callable[[], int], resume_hint: Callable[[], str]) -> int:
    """``work``'s exit code; on Ctrl-C, 130 and the resume hint (as things stand then) on stderr. The live
    status line is cleared either way."""
    try:
        return work()
    except KeyboardInterrupt:
        display.clear()
        print(f"\ninterrupted. {resume_hint()}", file=sys.stderr)
        return 130
    finally:
        display.clear()


def cmd_export(args: argparse.Namespace) -> int:
    display = Display(sys.stdout)
    run = ExportRun()

    def export() -> int:
        export_archive(
            _api(args, display),
            args.organization_id,
            display,
            run,
            archive_format=args.format,
            idempotency_key=args.idempotency_key,
            job_id=args.job,
            timeout=args.timeout,
            output=args.output,
        )
        return 0

    return interruptible(display, export, lambda: _resume_hint(args, run.job, run.target))


def _resume_hint(args: argparse.Namespace, job: dict[str, Any] | None, target: Path | None) -> str:
    if job is None:
        return "No export was started."
    command = ["data-export", "export", args.organization_id, "--job", job["job_id"]]
    if args.output:
        command += ["-o", args.output]
    if args.endpoint:
        command += ["--endpoint", args.endpoint]
    kept = ""
    if target is not None and part_path(target).exists():
        kept = f" {part_path(target)} is kept and the download will continue where it stopped."
    running = "The export continues on the server. " if job["status"] in RUNNING else ""
    return f"{running}Resume with: {shlex.join(command)}.{kept}"


def cmd_status(args: argparse.Namespace) -> int:
    job = _api(args).get_export(args.organization_id, args.job_id)
    if args.json:
        print(json.dumps(job, indent=2))
    else:
        print(job_summary(job))
    return 0


def job_summary(job: dict[str, Any]) -> str:
    progress = job.get("progress") or {}
    lines = [
        f"job       {job['job_id']} ({job['archive_format']}, format {job.get('format_version', '?')})",
        f"status    {job['status']}"
        + (f" {progress['percent']:.1f}%" if "percent" in progress else "")
        + f", {progress_summary(job)}",
    ]
    times = [
        f"{name} {job[f'{name}_at']}" for name in ("created", "started", "completed") if job.get(f"{name}_at")
    ]
    if times:
        lines.append("times     " + ", ".join(times))
    if job["status"] == "completed":
        lines.append(f"archive   {job['output_filename']}, {job['file_size_bytes']} bytes")
        if job.get("archive_sha256"):
            lines.append(f"sha256    {job['archive_sha256']}")
        if job.get("archive_expires_at"):
            lines.append(f"kept      until {job['archive_expires_at']}")
    if job.get("error"):
        code = f" [{job['error_code']}]" if job.get("error_code") else ""
        lines.append(f"error     {job['error']}{code}")
    lines.append("sections")
    lines += [section_line(section) for section in job.get("sections", [])]
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    api = _api(args)
    exports: list[dict[str, Any]] = []
    next_token: str | None = None
    while True:
        page = api.list_exports(args.organization_id, args.limit, next_token)
        exports += page.get("exports", [])
        next_token = page.get("next_token")
        if not (args.all and next_token):
            break
    if args.json:
        print(json.dumps({"exports": exports, "next_token": next_token}, indent=2))
        return 0
    for job in exports:
        print(export_row(job))
    if not exports:
        print("no exports")
    if next_token and not args.all:
        print(f"(more: --all, or --limit higher than {args.limit or 'the default'})")
    return 0


def export_row(job: dict[str, Any]) -> str:
    detail = job.get("error_code") or ""
    size = format_bytes(job["file_size_bytes"]) if job["status"] == "completed" else ""
    return (
        f"{job['job_id']}  {job['status']:<10} {job['archive_format']:<6} "
        f"{job.get('created_at') or '':<32} {size:>10}  {detail}"
    ).rstrip()


def cmd_cancel(args: argparse.Namespace) -> int:
    job = _api(args).cancel_export(args.organization_id, args.job_id)
    if job.get("error_code") == "canceled":
        print(f"export {job['job_id']} canceled")
    elif job.get("error_code") == "archive_deleted":
        print(f"export {job['job_id']}: archive deleted")
    else:
        print(f"export {job['job_id']} is {job['status']}: nothing to cancel")
    return 0


def _reporting_errors(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ClientError as error:
            one_line = " ".join(str(error).split())  # e.g. a YAML parser's message spans lines
            print(f"data-export: error: {one_line}", file=sys.stderr)
            return 1

    return run


def add_commands(commands: Any) -> None:
    """Register export, status, list, cancel and import on the `data-export` parser's subcommands."""
    from data_export_cli import importer  # imports this module: not at the top

    def connection(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("organization_id")
        parser.add_argument("--api-key", help=f"API key (default: ${API_KEY_ENV})")
        parser.add_argument(
            "--endpoint",
            help=f"API root URL (default: ${ENDPOINT_ENV}, else {DEFAULT_ENDPOINT})",
        )

    export = commands.add_parser(
        "export", help="request an export, watch it, download it (resumable) and verify it"
    )
    connection(export)
    export.add_argument("--format", choices=FORMATS, default="zip")
    export.add_argument("-o", "--output", help="file, or folder to put it in (default: ./<output_filename>)")
    export.add_argument("--idempotency-key", help="the same key again returns the same export")
    export.add_argument("--job", help="continue with this existing export instead of requesting one")
    export.add_argument("--timeout", type=float, default=None, help="give up waiting after SECONDS")
    export.set_defaults(func=_reporting_errors(cmd_export))

    status = commands.add_parser("status", help="show one export")
    connection(status)
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true", help="the API's JSON as is")
    status.set_defaults(func=_reporting_errors(cmd_status))

    listing = commands.add_parser("list", help="the organization's recent exports, newest first")
    connection(listing)
    listing.add_argument("--limit", type=int, default=None, help="exports per page (1-100)")
    listing.add_argument("--all", action="store_true", help="follow next_token to the last page")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_reporting_errors(cmd_list))

    cancel = commands.add_parser("cancel", help="cancel a running export, or delete a finished one's archive")
    connection(cancel)
    cancel.add_argument("job_id")
    cancel.set_defaults(func=_reporting_errors(cmd_cancel))

    importer.add_command(commands, connection, _reporting_errors)
