"""Issue 11, checked from outside: a big organization exports completely, in both formats, through
`data-export local serve`, byte for byte.

    .venv/bin/python -m benchmarks.big_org                      # 22,000 products x 3 images (make big-export)
    .venv/bin/python -m benchmarks.big_org --shape products=2000 --env FAST_PATH_MAX_RECORDS=1000

What a user would do, each step a command or an HTTP request: `data-export local make-fixture` writes the
fixture (deterministic), `data-export validate-fixture` checks it, `data-export local serve --port P --seed F`
runs as a subprocess until it prints its ready line; then, for zip and tar.gz one after the other, an
owner's key (a `csu` key of the owner member, from the fixture) requests the export over HTTP, polls it to
completion and downloads it through `/download`. The archive's SHA-256 is checked against the API's, every
file against the manifest (the client's checks), then every record and every binary against the fixture
(`data_export_cli.demo.verify_archive`), and the archive must hold exactly the fixture's files plus the
manifest. Figures (seconds to seed, per format the export's and download's seconds and the archive's size,
the serve process's peak RSS) go to stdout as JSON and, with --results, to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
# The command a user runs: the virtualenv's console script (else python -m data_export_cli.main).
_SCRIPT = Path(sys.executable).with_name("data-export")
DATA_EXPORT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "data_export_cli.main"]
FORMATS = ("zip", "tar.gz")


class CheckFailed(AssertionError):
    """The big export did not do what issue 11 asks; the message says what and where."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def _lines(stream: IO[str], into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


@contextmanager
def serving(
    fixture: Path, work: Path, env: dict[str, str], timeout: float
) -> Iterator[tuple[dict[str, Any], subprocess.Popen[str], Path]]:
    """`data-export local serve --port P --seed F` until its ready line; yields (ready line, process, log)."""
    log_path = work / "serve.log"
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*DATA_EXPORT, "local", "serve", "--port", str(port), "--seed", str(fixture)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, **env},
            cwd=REPO,
        )
        assert process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True).start()
        try:
            deadline = time.monotonic() + timeout
            ready: dict[str, Any] | None = None
            while ready is None:
                try:
                    line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    raise CheckFailed(
                        f"local serve not ready after {timeout:.0f} s (log: {log_path})"
                    ) from None
                if line is None:
                    raise CheckFailed(
                        f"local serve exited ({process.wait()}) before it was ready: {log_path}"
                    )
                if line.startswith("{"):
                    ready = json.loads(line)
            yield ready, process, log_path
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def seeding_seconds(log_path: Path) -> float | None:
    """The seconds `local serve` printed for its seeding ("seeded F: ... in 12.3 s")."""
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("seeded ") and line.endswith(" s") and " in " in line:
            return float(line.rsplit(" in ", 1)[1].removesuffix(" s"))
    return None


def denials(log_path: Path) -> list[str]:
    return [line for line in log_path.read_text(errors="replace").splitlines() if "AccessDenied" in line]


def export_one(
    api_url: str, api_key: str, fixture: Any, archive_format: str, out: Path, timeout: float
) -> Any:
    """Request, poll, download and verify one export; returns its figures."""
    from data_export_cli.client import (
        ClientError,
        Display,
        ExportApi,
        JobProgress,
        download_archive,
        part_path,
        top_folder,
        verify_archive,
        wait_for_job,
    )
    from data_export_cli.demo import read_archive
    from data_export_cli.demo import verify_archive as verify_against_fixture

    organization = fixture.organizations[0]
    api = ExportApi(api_url, api_key)
    quiet = Display(open(os.devnull, "w"), interactive=False)  # noqa: SIM115 - closed with the process
    started = time.monotonic()
    job = api.start_export(organization.id, archive_format)
    try:
        job = wait_for_job(api, organization.id, job, JobProgress(quiet), timeout=timeout)
    except ClientError as error:
        raise CheckFailed(f"{archive_format}: {error}") from error
    export_seconds = time.monotonic() - started
    if job["status"] != "completed":
        raise CheckFailed(f"{archive_format}: export {job['job_id']} {job['status']}: {job.get('error')}")
    target = out / job["output_filename"]
    started = time.monotonic()
    sha256 = download_archive(api, organization.id, job, target, quiet)
    download_seconds = time.monotonic() - started
    part = part_path(target)
    if job.get("archive_sha256") != sha256:
        raise CheckFailed(f"{archive_format}: SHA-256 {sha256}, the API says {job.get('archive_sha256')}")
    started = time.monotonic()
    try:
        verified = verify_archive(part, archive_format, top_folder(job["output_filename"]))
    except ClientError as error:
        raise CheckFailed(f"{archive_format}: {error}") from error
    part.replace(target)
    problems = verify_against_fixture(target, fixture, organization)
    files = read_archive(target)
    names, count = _expected_files(fixture, organization)
    if len(files) != count or not names <= set(files):
        missing = sorted(names - set(files))[:5]
        problems.append(f"{len(files)} files in the archive, {count} expected; missing: {missing}")
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise CheckFailed(f"{archive_format}: " + "; ".join(problems[:10]) + more)
    return {
        "job_id": job["job_id"],
        "export_seconds": round(export_seconds, 1),
        "download_seconds": round(download_seconds, 1),
        "verify_seconds": round(time.monotonic() - started, 1),
        "archive_bytes": target.stat().st_size,
        "files": verified.files + 1,  # + the manifest
        "records": sum(section.get("record_count", 0) for section in job.get("sections", [])),
        "sha256": sha256,
    }


def built_by(ready: dict[str, Any], job_id: str) -> str:
    """How the stack built the job, asked as the local admin: Step Functions (the execution is named after
    the job) or the worker's fast path."""
    import boto3

    client = boto3.client(
        "stepfunctions",
        endpoint_url=ready["aws_endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id=ready.get("aws_access_key_id", "testing"),
        aws_secret_access_key=ready.get("aws_secret_access_key", "testing"),
    )
    for machine in client.list_state_machines()["stateMachines"]:
        arn = machine["stateMachineArn"].replace(":stateMachine:", ":execution:") + f":{job_id}"
        try:
            return f"step functions ({client.describe_execution(executionArn=arn)['status']})"
        except client.exceptions.ExecutionDoesNotExist:
            continue
    return "fast path"


def _expected_files(fixture: Any, organization: Any) -> tuple[set[str], int]:
    """Archive paths of the manifest and of every record's YAML, and how many files the archive holds in
    all (those plus one per binary that is not missing; their paths are the exporter's to choose, and
    ``verify_against_fixture`` finds each one at the path its record names)."""
    names = {"manifest.yaml", "organization/organization.yaml"}
    binaries = 0
    for section in ("organization", "members", "api_keys", "brands", "products", "offers", "locations"):
        for record in organization.records(section) if section != "api_keys" else organization.api_keys:
            if section != "organization":
                names.add(f"{section}/{record.id}.yaml")
            for field in ("logo", "images", "documents"):
                value = getattr(record, field, None)
                for binary in value if isinstance(value, list) else [value] if value else []:
                    binaries += fixture.binary_size(binary) is not None
    return names, len(names) + binaries


def run_check(
    shape_text: str,
    *,
    work: Path,
    env: dict[str, str] | None = None,
    ready_timeout: float = 1800,
    export_timeout: float = 3600,
) -> dict[str, Any]:
    """The whole check; raises CheckFailed (what failed, and the serve log's denials) or returns figures."""
    from data_export_cli.seed import load_fixture
    from data_export_cli.synthetic import Shape

    shape = Shape.parse(shape_text)
    fixture_path = work / "big-org.yaml"
    figures: dict[str, Any] = {"shape": shape_text or "default", "products": shape.products}
    started = time.monotonic()
    subprocess.run(
        [*DATA_EXPORT, "local", "make-fixture", str(fixture_path), "--shape", shape_text],
        check=True,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    figures["make_fixture_seconds"] = round(time.monotonic() - started, 1)
    figures["fixture_bytes"] = fixture_path.stat().st_size
    started = time.monotonic()
    subprocess.run(
        [*DATA_EXPORT, "validate-fixture", str(fixture_path)], check=True, cwd=REPO, stdout=subprocess.DEVNULL
    )
    figures["validate_seconds"] = round(time.monotonic() - started, 1)
    fixture = load_fixture(fixture_path)
    organization = fixture.organizations[0]
    owner = next(member.id for member in organization.members if member.role == "owner")
    owner_key = next(key.key for key in organization.api_keys if key.member_id == owner and key.is_active)
    started = time.monotonic()
    with serving(fixture_path, work, env or {}, ready_timeout) as (ready, process, log_path):
        figures["serve_ready_seconds"] = round(time.monotonic() - started, 1)
        figures["seed_seconds"] = seeding_seconds(log_path)
        figures["serve_rss_after_seed_mib"] = round(_status_kib(process.pid, "VmRSS") / 1024)
        for archive_format in FORMATS:
            out = work / archive_format.replace(".", "-")
            out.mkdir()
            try:
                figures[archive_format] = export_one(
                    ready["api_url"], owner_key, fixture, archive_format, out, export_timeout
                )
                figures[archive_format]["built_by"] = built_by(ready, figures[archive_format]["job_id"])
            except CheckFailed as error:
                denied = denials(log_path)
                raise CheckFailed(
                    f"{error}\n  serve log: {log_path}"
                    + ("\n  denials:\n    " + "\n    ".join(denied[:10]) if denied else "")
                ) from error
            finally:
                figures["serve_peak_rss_mib"] = round(_status_kib(process.pid, "VmHWM") / 1024)
            for archive in out.iterdir():
                archive.unlink()  # hundreds of MB each: keep the disk for the next one
        figures["denials"] = len(denials(log_path))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", default="products=22000,images=3", help="make-fixture's --shape")
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE for the serve process (repeatable)"
    )
    parser.add_argument("--work", type=Path, help="folder for the fixture, logs and archives (default: temp)")
    parser.add_argument("--results", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory(prefix="big-org-") as temporary:
        work = args.work or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        try:
            figures = run_check(args.shape, work=work, env=env)
        except CheckFailed as error:
            print(f"BIG EXPORT FAILED: {error}", file=sys.stderr)
            return 1
    text = json.dumps(figures, indent=2)
    print(text)
    if args.results:
        args.results.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
