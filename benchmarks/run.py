"""Run the benchmark suite: our code, its peers and ceilings side by side; print a table, write results.json.

    python -m benchmarks.run              # everything (~30 min on 2 cores, most of it whole exports)
    python -m benchmarks.run --quick      # a short pass (~2 min): smaller inputs, fewer rounds
    python -m benchmarks.run --only records,binaries
    python -m benchmarks.run --only export --s3-latency-ms 20 --merge   # as if the assets were on real S3

Sections: records, binaries, coldstart, poll, export. Ratios are medians of per-round ratios (see harness).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("records", "binaries", "levels", "coldstart", "poll", "export")
MIB = 1 << 20


def make_importable() -> None:
    """Let ``python -m benchmarks.run`` work without installing the package, here and in child processes."""
    paths = [str(REPO / "layers" / "shared"), str(REPO / "cli"), str(REPO)]
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    existing = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, *([existing] if existing else [])])


make_importable()

from benchmarks import binaries, coldstart, export, levels, poll, records  # noqa: E402
from benchmarks.harness import Comparison, other_core, pin_to_one_core  # noqa: E402


@dataclass(frozen=True)
class Target:
    comparison: str
    contender: str  # a role ("peer", "ceiling") or a contender's name; ratio ours/it must be >= minimum
    minimum: float
    label: str


TARGETS = [
    Target("Records -> zip", "peer", 5.0, "records zip >= 5x peer"),
    Target("Records -> zip", "ceiling", 0.5, "records zip >= 50% of ceiling"),
    Target("Records -> tar.gz", "peer", 5.0, "records tar.gz >= 5x peer (reference)"),
    Target("Records -> tar.gz", "ceiling", 0.5, "records tar.gz >= 50% of ceiling (reference)"),
    Target("Binaries -> zip", "ceiling", 0.8, "binaries zip >= 80% of ceiling"),
    Target("Binaries -> tar.gz", "peer", 6.0, "binaries tar.gz >= 6x tarfile w|gz"),
    Target("Binaries -> tar.gz", "ceiling", 0.7, "binaries tar.gz >= 70% of ceiling"),
    *(
        Target(f"Cold start: {function}", "peer", 2.0, f"cold start {function} <= 50% of naive")
        for function in coldstart.FUNCTIONS
    ),
    *(
        Target(
            f"Cold start, import + first event: {function}",
            "peer",
            2.0,
            f"import + first event {function} <= 50% of naive (reference)",
        )
        for function in coldstart.FUNCTIONS
    ),
]


def export_targets(comparisons: list[Comparison]) -> list[Target]:
    """The whole export's 3x target, for each variant run (with or without a GET latency)."""
    return [
        Target(comparison.name, export.DESIGNS["naive"][0], 3.0, f"{comparison.name} >= 3x naive")
        for comparison in comparisons
        if comparison.name.startswith("Whole export")
    ]


def contender_named(comparison: Comparison, key: str) -> str:
    names = [c.name for c in comparison.contenders if key in (c.name, c.role)]
    if len(names) != 1:
        raise LookupError(f"{comparison.name}: no single contender {key!r}")
    return names[0]


def human_rate(rate: float, unit: str) -> str:
    if unit == "bytes":
        return f"{rate / 1e9:.2f} GB/s" if rate >= 1e9 else f"{rate / 1e6:.1f} MB/s"
    return f"{rate:,.0f} {unit}/s"


def print_comparison(comparison: Comparison) -> None:
    print(f"\n{comparison.name}  ({comparison.notes})")
    for contender in comparison.contenders:
        if comparison.show_time:
            figure = f"{1000 / contender.median:9.1f} ms"
        else:
            figure = f"{human_rate(contender.median, comparison.unit):>16}"
        ratio = "" if contender.role == "ours" else f"ours x{comparison.ratio(contender.name):.2f}"
        print(f"  {contender.role:8} {contender.name:56} {figure}  {ratio}")
    for design, figures in comparison.extra.items():
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
        verdicts.append(
            {
                "target": target.label,
                "ratio": ratio,
                "minimum": target.minimum,
                "met": ratio >= target.minimum,
            }
        )
    return verdicts + extra_checks


def memory_and_disk_checks(comparisons: list[Comparison]) -> list[dict[str, Any]]:
    checks = []
    for comparison in comparisons:
        ours = comparison.extra.get("ours")
        if ours is None:
            continue
        peak = ours["peak_rss_bytes"] / MIB
        checks.append({"target": f"{comparison.name}: peak RSS < 256 MiB", "value": peak, "met": peak < 256})
        temp = ours["temp_disk_peak_bytes"] + max(ours["disk_write_bytes"], 0)
        checks.append({"target": f"{comparison.name}: no temp disk", "value": temp, "met": temp == 0})
    return checks


def run_stack_sections(
    selected: set[str], args: argparse.Namespace, cpu: int | None
) -> tuple[list[Any], Any]:
    from data_export import wiring
    from data_export.settings import get_settings
    from data_export_cli.seed import seed_file
    from data_export_cli.stack import LocalStack

    from benchmarks.synthetic import write_fixture

    comparisons: list[Comparison] = []
    poll_results = None
    stack = LocalStack().start()
    try:
        if "poll" in selected:
            poll_results = poll.run(stack, calls=args.poll_calls)
        if "export" in selected:
            with tempfile.TemporaryDirectory() as folder:
                org = write_fixture(Path(folder), products=args.products)
                print(
                    f"seeding {org.products} products, {org.image_bytes / 1e6:.0f} MB of images...",
                    flush=True,
                )
                summary = seed_file(
                    org.path,
                    dynamodb_client=wiring.client("dynamodb"),
                    s3_client=wiring.client("s3"),
                    settings=get_settings(),
                )
            formats = tuple(args.formats.split(","))
            comparisons += export.run(
                stack,
                org,
                summary.asset_bytes,
                rounds=args.export_rounds,
                formats=formats,
                cpu=other_core(cpu),
                latency_ms=args.s3_latency_ms,
            )
    finally:
        stack.stop()
    return comparisons, poll_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small inputs and few rounds")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results.json")
    parser.add_argument("--rounds", type=int, help="rounds of the in-process benchmarks (default 9, quick 3)")
    parser.add_argument(
        "--products", type=int, help="products of the exported organization (2,000; quick 100)"
    )
    parser.add_argument("--export-rounds", type=int, help="rounds of each whole export (default 2, quick 1)")
    parser.add_argument("--formats", default="zip,tar.gz", help="archive formats of the whole export")
    parser.add_argument(
        "--s3-latency-ms",
        type=float,
        default=0,
        help="whole export: delay every S3 GetObject of every design by this much, as real S3's first byte",
    )
    parser.add_argument(
        "--merge", action="store_true", help="keep the earlier figures of the sections not run from --output"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (3 if quick else 9)
    args.records = 1_000 if quick else 5_000
    args.binary_bytes = (16 if quick else 96) * MIB
    args.coldstart_rounds = 5 if quick else 21
    args.poll_calls = 50 if quick else 500
    args.products = args.products or (100 if quick else 2_000)
    args.export_rounds = args.export_rounds or (1 if quick else 2)
    selected = set(args.only.split(","))
    unknown = selected - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")

    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "data-export")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    cpu = pin_to_one_core()
    started = time.time()
    comparisons: list[Comparison] = []
    errors: dict[str, str] = {}
    poll_results = None
    level_rows: list[dict[str, Any]] = []

    def attempt(section: str, step: Callable[[], None]) -> None:
        # A failing section (e.g. code changing under a long run) must not lose the others' figures.
        try:
            step()
        except Exception as exc:
            errors[section] = f"{type(exc).__name__}: {exc}"
            print(f"\n{section} FAILED: {errors[section][:2000]}", file=sys.stderr)

    def stack_sections() -> None:
        nonlocal poll_results
        stack_comparisons, poll_results = run_stack_sections(selected, args, cpu)
        comparisons.extend(stack_comparisons)

    if "records" in selected:
        attempt("records", lambda: comparisons.extend(records.run(count=args.records, rounds=args.rounds)))
    if "binaries" in selected:
        attempt(
            "binaries",
            lambda: comparisons.extend(binaries.run(total_bytes=args.binary_bytes, rounds=args.rounds)),
        )
    if "levels" in selected:
        attempt(
            "levels",
            lambda: level_rows.extend(
                levels.run(records=args.records, binary_bytes=args.binary_bytes // 2, repeats=args.rounds)
            ),
        )
    if "coldstart" in selected:
        attempt("coldstart", lambda: comparisons.extend(coldstart.run(rounds=args.coldstart_rounds)))
    if selected & {"poll", "export"}:
        attempt("poll/export", stack_sections)

    merged_from = None
    if args.merge and args.output.exists():
        previous = json.loads(args.output.read_text())
        produced = {comparison.name for comparison in comparisons}
        kept = [Comparison.from_json(c) for c in previous["comparisons"] if c["name"] not in produced]
        comparisons = kept + comparisons
        poll_results = poll_results or previous.get("poll_latency")
        level_rows = level_rows or previous.get("compression_levels", [])
        merged_from = previous["meta"]

    for comparison in comparisons:
        print_comparison(comparison)
    if level_rows:
        levels.print_rows(level_rows)
    if poll_results:
        print(f"\nPoll latency, GET handler warm against moto ({poll_results['calls']} calls per state)")
        for state in ("pending", "completed"):
            figures = poll_results[state]
            print(
                f"  {state:10} p50 {figures['p50_ms']:6.1f} ms   p90 {figures['p90_ms']:6.1f} ms"
                f"   p99 {figures['p99_ms']:6.1f} ms   max {figures['max_ms']:6.1f} ms"
            )
    verdicts = evaluate(comparisons, memory_and_disk_checks(comparisons))
    print("\nTargets (ratios measured in this run)")
    for verdict in verdicts:
        figure = f"x{verdict['ratio']:.2f} (>= {verdict['minimum']})" if "ratio" in verdict else ""
        print(f"  {'met   ' if verdict['met'] else 'NOT met'} {verdict['target']:58} {figure}")

    from data_export.archive.compression import backend_name

    document = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "pinned_cpu": cpu,
            "deflate_backend": backend_name(),
            "quick": quick,
            "rounds": args.rounds,
            "seconds": round(time.time() - started, 1),
            "sections": sorted(selected),
            **({"merged_with": merged_from} if merged_from else {}),
        },
        "comparisons": [comparison.to_json() for comparison in comparisons],
        "poll_latency": poll_results,
        "compression_levels": level_rows,
        "targets": verdicts,
        "errors": errors,
    }
    args.output.write_text(json.dumps(document, indent=1) + "\n")
    print(f"\nwritten: {args.output}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
