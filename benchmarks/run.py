"""Run the benchmark suite: our code, its peers and ceilings side by side; print a table, write results.json.

    python -m benchmarks.run              # everything, full sizes (~35 min on 2 cores): results.json
    python -m benchmarks.run --quick      # a short pass: smaller inputs, fewer rounds (results-quick.json)
    python -m benchmarks.run --only records,binaries --output /tmp/partial.json

Sections: records, binaries, levels, coldstart, poll, export, memory. One run writes one file: the commit it
ran on (``git rev-parse HEAD``), the machine, the mode and the time are recorded, and results are never
merged across runs. Ratios are medians of per-round ratios (see harness); every timed output is verified
and sized (``verified``, ``output_bytes``), and ``check_results`` refuses a file where one is not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("records", "binaries", "levels", "coldstart", "poll", "export", "memory")
MIB = 1 << 20
GIB = 1 << 30
RSS_LIMIT_MIB = 256


def make_importable() -> None:
    """Let ``python -m benchmarks.run`` work without installing the package, here and in child processes."""
    paths = [str(REPO / "layers" / "shared"), str(REPO / "cli"), str(REPO)]
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    existing = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, *([existing] if existing else [])])


make_importable()

from benchmarks import binaries, coldstart, export, inputs, levels, poll, records  # noqa: E402
from benchmarks.harness import Comparison, other_core, pin_to_one_core  # noqa: E402

TUNED = export.DESIGNS["naive-tuned"][0]
NAIVE = export.DESIGNS["naive"][0]


@dataclass(frozen=True)
class Target:
    comparison: str
    contender: str  # a role ("peer", "ceiling") or a contender's name; ratio ours/it must be >= minimum
    minimum: float
    label: str
    size_against: str | None = None  # ours' output at most (1 + size_within) x this contender's
    size_within: float = 0.0
    goal: bool = True  # False: a reference figure, reported against an earlier target


CORPUS_ZIP = "Binaries -> zip (realistic corpus)"
CORPUS_TAR = "Binaries -> tar.gz (realistic corpus)"
TARGETS = [
    Target(
        "Records -> zip",
        "peer",
        5.0,
        "records -> zip >= 5x CSafeDumper + zipfile, archive within 2% of its size",
        size_against="peer",
        size_within=0.02,
    ),
    Target("Records -> zip", "ceiling", 0.5, "records -> zip >= 0.5 of orjson + deflate", goal=False),
    Target("Records -> tar.gz", "peer", 5.0, "records -> tar.gz >= 5x CSafeDumper + tarfile", goal=False),
    Target(
        CORPUS_ZIP,
        "ceiling",
        0.8,
        "binaries -> zip >= 0.8 of the same-work ceiling, within 1% of zipfile deflate's size",
        size_against="zipfile deflate (level 6, every file)",
        size_within=0.01,
    ),
    Target(CORPUS_TAR, "ceiling", 0.8, "binaries -> tar.gz >= 0.8 of the same-work ceiling"),
    Target(CORPUS_TAR, "tarfile w:gz level 1", 5.0, "binaries -> tar.gz >= 5x tarfile at the same level (1)"),
    *(
        Target(
            f"Cold start: {function}",
            "peer",
            2.0,
            f"cold start {function} (import + first event + client) <= 0.5 of naive",
            goal=False,
        )
        for function in coldstart.FUNCTIONS
    ),
]


def export_targets(comparisons: list[Comparison]) -> list[Target]:
    """Whole export: >= 2x the naive design against moto, >= 1.5x the tuned one with a GET latency."""
    targets = []
    for comparison in comparisons:
        if not comparison.name.startswith("Whole export"):
            continue
        if "per S3 GET" in comparison.name:
            targets.append(Target(comparison.name, TUNED, 1.5, f"{comparison.name} >= 1.5x tuned naive"))
        else:
            targets.append(Target(comparison.name, NAIVE, 2.0, f"{comparison.name} >= 2x naive"))
    return targets


def contender_named(comparison: Comparison, key: str) -> str:
    names = [c.name for c in comparison.contenders if key in (c.name, c.role)]
    if len(names) != 1:
        raise LookupError(f"{comparison.name}: no single contender {key!r}")
    return names[0]


def human_rate(rate: float, unit: str) -> str:
    if unit == "bytes":
        return f"{rate / 1e9:.2f} GB/s" if rate >= 1e9 else f"{rate / 1e6:.1f} MB/s"
    return f"{rate:,.0f} {unit}/s"


def human_size(size: float) -> str:
    return f"{size / 1e6:,.2f} MB" if size >= 1e5 else f"{size:,.0f} B"


def print_comparison(comparison: Comparison) -> None:
    print(f"\n{comparison.name}  ({comparison.notes})")
    for contender in comparison.contenders:
        if comparison.show_time:
            figure = f"{1000 / contender.median:9.1f} ms"
        else:
            figure = f"{human_rate(contender.median, comparison.unit):>16}"
        size = human_size(statistics.median(contender.output_bytes))
        ratio = "" if contender.role == "ours" else f"ours x{comparison.ratio(contender.name):.2f}"
        mark = "ok" if contender.verified else "NOT VERIFIED"
        print(f"  {contender.role:8} {contender.name[:72]:72} {figure} {size:>13} {mark:3} {ratio}")
    for design, figures in comparison.extra.items():
        if not isinstance(figures, dict):
            continue
        print(
            f"  {design:12} peak RSS {figures['peak_rss_bytes'] / MIB:6.0f} MiB"
            f"  temp disk {figures['temp_disk_peak_bytes'] / MIB:7.1f} MiB"
            f"  disk writes {figures['disk_write_bytes'] / MIB:7.1f} MiB"
            f"  {figures['median_seconds']:6.2f} s ({figures['median_cpu_seconds']:5.2f} s CPU)"
        )


def evaluate(comparisons: list[Comparison], extra_checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name = {comparison.name: comparison for comparison in comparisons}
    verdicts = []
    for target in TARGETS + export_targets(comparisons):
        comparison = by_name.get(target.comparison)
        if comparison is None:
            continue
        ratio = comparison.ratio(contender_named(comparison, target.contender))
        verdict: dict[str, Any] = {
            "target": target.label,
            "goal": target.goal,
            "ratio": ratio,
            "minimum": target.minimum,
            "met": ratio >= target.minimum,
        }
        if target.size_against is not None:
            size_ratio = comparison.size_ratio(contender_named(comparison, target.size_against))
            verdict.update(size_ratio=size_ratio, size_maximum=1 + target.size_within)
            verdict["met"] = verdict["met"] and size_ratio <= 1 + target.size_within
        verdicts.append(verdict)
    return verdicts + extra_checks


def memory_and_disk_checks(comparisons: list[Comparison], big: dict[str, Any] | None) -> list[dict[str, Any]]:
    checks = []
    for comparison in comparisons:
        ours = comparison.extra.get("ours")
        if not isinstance(ours, dict):
            continue
        peak = ours["peak_rss_bytes"] / MIB
        checks.append(
            {
                "target": f"{comparison.name}: peak RSS < {RSS_LIMIT_MIB} MiB",
                "goal": False,
                "value": peak,
                "met": peak < RSS_LIMIT_MIB,
            }
        )
        temp = ours["temp_disk_peak_bytes"] + max(ours["disk_write_bytes"], 0)
        checks.append(
            {"target": f"{comparison.name}: no temp disk", "goal": False, "value": temp, "met": temp == 0}
        )
    if big and not big.get("skipped"):
        peak = big["peak_rss_bytes"] / MIB
        checks.append(
            {
                "target": f"peak RSS < {RSS_LIMIT_MIB} MiB exporting {big['content_bytes'] / 1e9:.1f} GB "
                f"({big['format']}, read-ahead {big['asset_read_ahead']})",
                "goal": True,
                "value": peak,
                "met": peak < RSS_LIMIT_MIB,
            }
        )
    return checks


# --- the run's identity -----------------------------------------------------------------------------------


def git(*arguments: str) -> str:
    completed = subprocess.run(
        ["git", *arguments], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    )
    return completed.stdout.strip()


def uncommitted(paths: tuple[str, ...] = ("benchmarks", "layers", "functions", "cli")) -> list[str]:
    """Files that the measured code or the benchmarks depend on and that differ from the commit."""
    return sorted(git("diff", "--name-only", "HEAD", "--", *paths).splitlines())


def memory_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "architecture": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "memory_available_bytes": memory_available(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# --- the schema every results file must meet ----------------------------------------------------------------


def check_results(document: dict[str, Any]) -> list[str]:
    """What is wrong with a results document (empty: nothing). Checked by every run and by the unit tests."""
    problems: list[str] = []
    meta = document.get("meta", {})
    if not re.fullmatch(r"[0-9a-f]{40}", str(meta.get("commit", ""))):
        problems.append("meta.commit is not a commit id")
    if meta.get("mode") not in ("quick", "full") or meta.get("quick") != (meta.get("mode") == "quick"):
        problems.append("meta.mode is not quick or full")
    if "merged_with" in meta:
        problems.append("results merged from several runs")
    try:
        datetime.fromisoformat(str(meta.get("date")))
    except ValueError:
        problems.append("meta.date is not a time")
    host = meta.get("machine", {})
    if not isinstance(host.get("cpus"), int) or not host.get("python"):
        problems.append("meta.machine lacks the cores or the Python version")
    full = meta.get("mode") == "full"
    for comparison in document.get("comparisons", []):
        name = comparison.get("name", "?")
        if comparison.get("verified") is not True:
            problems.append(f"{name}: not verified")
        for contender, figures in comparison.get("contenders", {}).items():
            size = figures.get("output_bytes")
            if not isinstance(size, int) or size <= 0:
                problems.append(f"{name}: {contender} has no output_bytes")
            if figures.get("verified") is not True:
                problems.append(f"{name}: {contender} not verified")
            if not figures.get("rounds"):
                problems.append(f"{name}: {contender} has no rounds")
            if full and name.startswith("Whole export") and len(figures.get("rounds", [])) < 3:
                problems.append(f"{name}: {contender} has fewer than 3 rounds")
        if name.startswith("Whole export") and "warmup_seconds" not in comparison.get("extra", {}):
            problems.append(f"{name}: no warm-up export")
    polls = document.get("poll_latency") or {}
    for state in ("pending", "completed") if polls else ():
        figures = polls.get(state) or {}
        if figures.get("verified") is not True or not isinstance(figures.get("output_bytes"), int):
            problems.append(f"poll {state}: not verified and sized")
        if figures.get("p99_ms") is not None and figures.get("samples", 0) < poll.P99_MIN_SAMPLES:
            problems.append(f"poll {state}: a p99 from {figures.get('samples')} samples")
        if full and figures.get("samples", 0) < poll.P99_MIN_SAMPLES:
            problems.append(f"poll {state}: fewer than {poll.P99_MIN_SAMPLES} samples in a full run")
    for function, figures in (document.get("snapstart") or {}).items():
        if figures.get("verified") is not True or not isinstance(figures.get("output_bytes"), int):
            problems.append(f"snapstart {function}: not verified and sized")
    big = document.get("export_memory")
    if big and not big.get("skipped") and (big.get("verified") is not True or not big.get("archive_bytes")):
        problems.append("export_memory: not verified and sized")
    if document.get("errors"):
        problems.append(f"sections failed: {', '.join(document['errors'])}")
    return problems


# --- the run ------------------------------------------------------------------------------------------------


def run_stack_sections(
    selected: set[str], args: argparse.Namespace, cpu: int | None, pool: Any
) -> tuple[list[Comparison], Any, Any]:
    from data_export import wiring
    from data_export.settings import get_settings
    from data_export_cli.seed import seed_file
    from data_export_cli.stack import LocalStack

    from benchmarks.synthetic import write_corpus_fixture

    comparisons: list[Comparison] = []
    poll_results = big = None

    def seed(path: Path) -> None:
        seed_file(
            path,
            dynamodb_client=wiring.client("dynamodb"),
            s3_client=wiring.client("s3"),
            settings=get_settings(),
        )

    stack = LocalStack().start()
    try:
        if "poll" in selected:
            print(f"\npoll: {args.poll_calls} calls per state...", flush=True)
            poll_results = poll.run(stack, calls=args.poll_calls)
        if "export" in selected:
            with tempfile.TemporaryDirectory() as folder:
                org = write_corpus_fixture(
                    Path(folder), products=args.products, pool=pool().files, target_bytes=args.export_bytes
                )
                print(
                    f"\nexport: seeding {org.products} products, {org.images} binaries, "
                    f"{org.image_bytes / 1e6:.0f} MB...",
                    flush=True,
                )
                seed(org.path)
            for latency in args.latencies:
                designs = tuple(export.DESIGNS) if latency == 0 else args.latency_designs
                print(f"export, {latency:g} ms per GET: {', '.join(designs)}", flush=True)
                comparisons += export.run(
                    stack,
                    org,
                    rounds=args.export_rounds,
                    formats=args.formats,
                    cpu=other_core(cpu),
                    latency_ms=latency,
                    designs=designs,
                )
        if "memory" in selected:
            big = memory_section(stack, args, cpu, seed)
    finally:
        stack.stop()
    return comparisons, poll_results, big


def memory_section(stack: Any, args: argparse.Namespace, cpu: int | None, seed: Any) -> dict[str, Any]:
    """Ours exporting a big organization (``--memory-bytes``), for its peak RSS with read-ahead on. Its
    binaries come from the corpus with its two files over 16 MiB (``big``): both streamed paths run."""
    from benchmarks.synthetic import write_corpus_fixture

    # moto (in this process) holds the assets, the upload's parts and, while completing it, the whole archive
    # twice: ask for that much memory to spare, else skip (and say so) rather than push the machine over.
    needed = args.memory_bytes * 2 + 4 * GIB
    if memory_available() < needed:
        reason = f"{memory_available() / GIB:.1f} GiB available, {needed / GIB:.1f} GiB needed"
        print(f"\nmemory: skipped ({reason})", flush=True)
        return {"skipped": reason}
    buffer = os.environ.get("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE")
    os.environ["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = str(64 << 10)  # these assets go to moto's temp files
    try:
        with tempfile.TemporaryDirectory() as folder:
            big_pool = inputs.binary_set("corpus", args.binary_bytes, big=True)
            org = write_corpus_fixture(
                Path(folder), products=1, pool=big_pool.files, seed=2, target_bytes=args.memory_bytes
            )
            print(
                f"\nmemory: seeding {org.products} products, {org.images} binaries,"
                f" {org.image_bytes / 1e9:.2f} GB...",
                flush=True,
            )
            seed(org.path)
    finally:
        if buffer is None:
            os.environ.pop("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", None)
        else:
            os.environ["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = buffer
    try:
        result = export.run_big(stack, org, archive_format=args.memory_format, cpu=other_core(cpu))
        result["pool"] = big_pool.describe()
    finally:
        delete_organization_assets(stack, org.organization_id)
    print(
        f"memory: {result['seconds']:.0f} s, peak RSS {result['peak_rss_bytes'] / MIB:.0f} MiB, "
        f"{result['archive_bytes'] / 1e9:.2f} GB archive, verified",
        flush=True,
    )
    return result


def delete_organization_assets(stack: Any, organization_id: str) -> None:
    from data_export.storage.layout import asset_prefix

    s3, bucket = stack.client("s3"), stack.physical["AssetsBucket"]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=asset_prefix(organization_id))
    for page in pages:
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small inputs and few rounds")
    parser.add_argument(
        "--only", help=f"comma-separated subset of {SECTIONS} (default: all; quick: all but memory)"
    )
    parser.add_argument("--output", type=Path, help="results file (results.json; quick: results-quick.json)")
    parser.add_argument("--rounds", type=int, help="rounds of the in-process benchmarks (9; quick 3)")
    parser.add_argument("--records", type=int, help="records of the records benchmarks (5,000; quick 1,000)")
    parser.add_argument("--binary-mib", type=int, help="MiB of each binary set (64; quick 16)")
    parser.add_argument(
        "--products", type=int, help="products of the exported organization at least (400; quick 40)"
    )
    parser.add_argument(
        "--export-mb", type=int, help="MB of binaries of the exported organization (300; quick 30)"
    )
    parser.add_argument(
        "--export-rounds", type=int, help="rounds of each whole export after its warm-up (3; quick 1)"
    )
    parser.add_argument("--formats", default="zip,tar.gz", help="archive formats of the whole export")
    parser.add_argument(
        "--s3-latency-ms",
        default="0,20",
        help="whole export variants: every S3 GetObject of every design delayed this much (0: moto's own)",
    )
    parser.add_argument(
        "--latency-designs",
        default="ours,naive-tuned,floor",
        help="designs of the whole-export variants with a GET latency",
    )
    parser.add_argument(
        "--memory-gb", type=float, default=4.0, help="GB of binaries of the memory section's export"
    )
    parser.add_argument(
        "--memory-format", default="zip", help="archive format of the memory section's export"
    )
    parser.add_argument("--poll-calls", type=int, help="calls per job state (1,000; quick 50)")
    parser.add_argument(
        "--coldstart-rounds", type=int, help="fresh interpreters per function and side (11; quick 3)"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.mode = "quick" if quick else "full"
    args.output = args.output or REPO / "benchmarks" / ("results-quick.json" if quick else "results.json")
    args.rounds = args.rounds or (3 if quick else 9)
    args.records = args.records or (1_000 if quick else 5_000)
    args.binary_bytes = (args.binary_mib or (16 if quick else 64)) * MIB
    args.products = args.products or (40 if quick else 400)
    args.export_bytes = (args.export_mb or (30 if quick else 300)) * 1_000_000
    args.export_rounds = args.export_rounds or (1 if quick else 3)
    args.formats = tuple(args.formats.split(","))
    args.latencies = [float(value) for value in args.s3_latency_ms.split(",") if value != ""]
    args.latency_designs = tuple(args.latency_designs.split(","))
    args.memory_bytes = int(args.memory_gb * 1e9)
    args.poll_calls = args.poll_calls or (50 if quick else 1_000)
    args.coldstart_rounds = args.coldstart_rounds or (3 if quick else 11)
    # A 4 GB export is not quick: a quick run leaves it out unless named.
    default = [s for s in SECTIONS if not (quick and s == "memory")]
    args.selected = set(args.only.split(",")) if args.only else set(default)
    unknown = args.selected - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    for design in args.latency_designs:
        if design not in export.DESIGNS:
            parser.error(f"unknown design {design!r}")
    if "ours" not in args.latency_designs:
        parser.error("--latency-designs must include ours")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    selected, quick = args.selected, args.quick
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "data-export")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    commit, dirty = git("rev-parse", "HEAD"), uncommitted()
    if dirty:
        print(f"note: {len(dirty)} files differ from {commit[:12]}: {', '.join(dirty[:8])}", file=sys.stderr)
    host = machine()
    cpu = pin_to_one_core()
    started = time.time()
    comparisons: list[Comparison] = []
    errors: dict[str, str] = {}
    results: dict[str, Any] = {"poll_latency": None, "export_memory": None, "snapstart": None, "levels": []}
    pools: dict[str, Any] = {}
    inputs_meta: dict[str, Any] = {}

    def pool() -> Any:
        """The realistic corpus (built once, cached on disk): the binaries benchmark's and the export's."""
        if "corpus" not in pools:
            print(f"building the corpus ({args.binary_bytes / MIB:.0f} MiB; cached)...", flush=True)
            pools["corpus"] = inputs.binary_set("corpus", args.binary_bytes)
            inputs_meta["corpus"] = pools["corpus"].describe()
        return pools["corpus"]

    def attempt(section: str, step: Callable[[], None]) -> None:
        # A failing section (e.g. code changing under a long run) must not lose the others' figures.
        try:
            step()
        except Exception as exc:
            errors[section] = f"{type(exc).__name__}: {exc}"
            print(f"\n{section} FAILED: {errors[section][:2000]}", file=sys.stderr)

    def records_section() -> None:
        items = inputs.record_set("corpus", args.records)
        label = f"{args.records:,} corpus records ({inputs.repetition(items)})"
        inputs_meta["records"] = label
        comparisons.extend(records.run(items, rounds=args.rounds, label=label))

    def binaries_section() -> None:
        comparisons.extend(binaries.run(pool(), rounds=args.rounds))
        random_set = inputs.binary_set("random", args.binary_bytes)
        inputs_meta["random"] = random_set.describe()
        comparisons.extend(binaries.run(random_set, rounds=args.rounds))

    def levels_section() -> None:
        random_set = inputs.binary_set("random", args.binary_bytes // 2)
        results["levels"] = levels.run(
            records=inputs.record_set("corpus", args.records),
            binaries=[file.data for file in random_set.files],
            repeats=args.rounds,
        )

    def coldstart_section() -> None:
        found, results["snapstart"] = coldstart.run(rounds=args.coldstart_rounds)
        comparisons.extend(found)

    def stack_sections() -> None:
        found, results["poll_latency"], results["export_memory"] = run_stack_sections(
            selected, args, cpu, pool
        )
        comparisons.extend(found)

    for section, step in (
        ("records", records_section),
        ("binaries", binaries_section),
        ("levels", levels_section),
        ("coldstart", coldstart_section),
    ):
        if section in selected:
            print(f"\n{section}...", flush=True)
            attempt(section, step)
    if selected & {"poll", "export", "memory"}:
        attempt("poll/export/memory", stack_sections)

    for comparison in comparisons:
        print_comparison(comparison)
    if results["levels"]:
        levels.print_rows(results["levels"])
    print_other_sections(results)
    verdicts = evaluate(comparisons, memory_and_disk_checks(comparisons, results["export_memory"]))
    print("\nTargets (ratios measured in this run; * a goal of issue 13)")
    for verdict in verdicts:
        figure = f"x{verdict['ratio']:.2f} (>= {verdict['minimum']})" if "ratio" in verdict else ""
        if "size_ratio" in verdict:
            figure += f", size x{verdict['size_ratio']:.4f} (<= {verdict['size_maximum']})"
        star = "*" if verdict.get("goal") else " "
        print(f"  {'met   ' if verdict['met'] else 'NOT met'}{star} {verdict['target']:78} {figure}")

    from data_export.archive.compression import backend_name

    document = {
        "meta": {
            "commit": commit,
            "commit_subject": git("log", "-1", "--format=%s", commit)[:200],
            "uncommitted_files": dirty,
            "date": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
            "mode": args.mode,
            "quick": quick,
            "machine": {
                **host,
                "load_average_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            },
            "pinned_cpu": cpu,
            "deflate_backend": backend_name(),
            "rounds": args.rounds,
            "export_rounds": args.export_rounds,
            "seconds": round(time.time() - started, 1),
            "sections": sorted(selected),
            "inputs": inputs_meta,
            "argv": sys.argv[1:] if argv is None else argv,
        },
        "comparisons": [comparison.to_json() for comparison in comparisons],
        "poll_latency": results["poll_latency"],
        "snapstart": results["snapstart"],
        "export_memory": results["export_memory"],
        "compression_levels": results["levels"],
        "targets": verdicts,
        "errors": errors,
    }
    problems = check_results(document)
    document["problems"] = problems
    args.output.write_text(json.dumps(document, indent=1) + "\n")
    print(f"\nwritten: {args.output} (commit {commit[:12]}, {document['meta']['seconds']:.0f} s)")
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


def print_other_sections(results: dict[str, Any]) -> None:
    polls = results["poll_latency"]
    if polls:
        print("\nPoll latency, GET handler warm against moto")
        for state in ("pending", "completed"):
            figures = polls[state]
            p99 = "n/a (< 1,000 calls)" if figures["p99_ms"] is None else f"{figures['p99_ms']:6.1f} ms"
            print(
                f"  {state:10} {figures['samples']:5} calls  p50 {figures['p50_ms']:6.1f} ms"
                f"   p90 {figures['p90_ms']:6.1f} ms   p99 {p99}   max {figures['max_ms']:6.1f} ms"
                f"   {figures['output_bytes']} B"
            )
    if results["snapstart"]:
        print(
            "\nSnapStart (CPU ms, medians): moved before the snapshot / after restore + first event + client"
        )
        for function, figures in results["snapstart"].items():
            print(
                f"  {function:40} {figures['moved_before_snapshot_ms']:6.0f}  /"
                f" {figures['cold_path_after_restore_ms']:5.1f}"
                f"   (without SnapStart {figures['without_snapstart_ms']:5.0f},"
                f" naive {figures['naive_ms']:5.0f})"
            )
    big = results["export_memory"]
    if big and not big.get("skipped"):
        print(
            f"\nBig export ({big['format']}): {big['content_bytes'] / 1e9:.2f} GB"
            f" in {big['binaries']} binaries,"
            f" {big['seconds']:.0f} s, peak RSS {big['peak_rss_bytes'] / MIB:.0f} MiB, archive"
            f" {big['archive_bytes'] / 1e9:.2f} GB (verified)"
        )


if __name__ == "__main__":
    sys.exit(main())
