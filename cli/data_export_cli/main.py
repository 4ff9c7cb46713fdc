"""The `data-export` command: the local stack, the demo and developer tools."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from data_export_cli.client import add_commands as add_client_commands
from data_export_cli.template import REPO_ROOT

EXAMPLE_FIXTURE = REPO_ROOT.parent / "shared" / "spec" / "example-org.yaml"


def _start_stack(
    seeds: list[Path],
    host: str = "127.0.0.1",
    moto_port: int = 0,
    template: Path | None = None,
    seed_in_subprocess: bool = False,
) -> Any:
    from data_export.settings import get_settings

    from data_export_cli.seed import seed_file, seed_file_in_subprocess, seeding_clients
    from data_export_cli.stack import LocalStack
    from data_export_cli.template import TEMPLATE_PATH

    stack = LocalStack(host=host, moto_port=moto_port, template_path=template or TEMPLATE_PATH).start()
    # As the local admin (outside any function), with a connection for each of the seeder's threads.
    clients = seeding_clients(stack.endpoint_url)
    for fixture in seeds:
        started = time.monotonic()
        if seed_in_subprocess:  # the seeder on the other core, moto's server alone on this one
            summary = seed_file_in_subprocess(fixture)
        else:
            summary = seed_file(
                fixture, dynamodb_client=clients["dynamodb"], s3_client=clients["s3"], settings=get_settings()
            )
        print(
            f"seeded {fixture}: organizations {', '.join(summary.organization_ids)}; "
            f"{sum(summary.records.values())} records, {summary.assets} assets "
            f"in {time.monotonic() - started:.1f} s",
            file=sys.stderr,
        )
    return stack


def admin_environment(stack: Any) -> list[str]:
    """Shell-ready ``NAME=value`` lines for the local admin identity."""
    values = {
        "AWS_ENDPOINT_URL": stack.endpoint_url,
        **stack.admin_credentials,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return [f"{name}={shlex.quote(value)}" for name, value in values.items()]


def cmd_serve(args: argparse.Namespace) -> int:
    from data_export_cli.gateway import ApiGateway
    from data_export_cli.worker import QueuePoller, Scheduler

    stack = _start_stack(
        args.seed, host=args.host, moto_port=args.moto_port, template=args.template, seed_in_subprocess=True
    )
    gateway = ApiGateway(stack, args.host, args.port).start()
    poller = QueuePoller(stack).start()
    scheduler = Scheduler(stack).start()
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    print(f"API:  {gateway.url}/dashboard/api/v1/data-export/{{organization_id}}", file=sys.stderr)
    print(f'Page: {gateway.url}/  (the "Export your data" page)', file=sys.stderr)
    print(f"AWS (moto): {stack.endpoint_url}", file=sys.stderr)
    print(f"{stack.limits.describe()}; DATA_EXPORT_LOCAL_* lower them (docs/scaling.md)", file=sys.stderr)
    if stack.admin_credentials:
        # IAM is enforced: the functions have their roles; people inspect the stack as the admin user.
        print("AWS CLI and boto3 as the local admin (paste into a shell):", file=sys.stderr)
        for line in admin_environment(stack):
            print(f"  export {line}", file=sys.stderr)
    ready = {"api_url": gateway.url, "aws_endpoint_url": stack.endpoint_url}
    ready.update({name.lower(): value for name, value in stack.admin_credentials.items()})
    print(json.dumps(ready), flush=True)
    stopped.wait()
    print("stopping", file=sys.stderr)
    scheduler.stop()
    poller.stop()
    gateway.stop()
    stack.stop()
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    seeds = args.seed or ([EXAMPLE_FIXTURE] if EXAMPLE_FIXTURE.exists() else [])
    stack = _start_stack(seeds)
    try:
        function_id = resolve_function(stack.functions, args.function)
        event = json.loads(Path(args.event).read_text(encoding="utf-8"))
        response = stack.invoke(function_id, event)
        print(json.dumps(response, indent=2))
    finally:
        stack.stop()
    return 0


def resolve_function(functions: dict[str, Any], name: str) -> str:
    """Accept a logical id (StartExportFunction) or a function folder name (start_export)."""
    for logical_id, spec in functions.items():
        if name in (logical_id, spec.module.split(".")[-2]):
            return logical_id
    raise SystemExit(f"unknown function '{name}'; known: {', '.join(functions)}")


def cmd_make_fixture(args: argparse.Namespace) -> int:
    from data_export_cli.synthetic import Shape, write_fixture

    try:
        shape = Shape.parse(args.shape)
    except ValueError as error:
        print(f"--shape: {error}", file=sys.stderr)
        return 2
    write_fixture(args.output, shape)
    print(
        f"wrote {args.output}: organization {shape.organization_id}, {shape.products} products with "
        f"{shape.images} images each ({shape.image_total_bytes / 1e6:.1f} MB of images), "
        f"{shape.archive_entries} archive entries; owner key {shape.owner_key}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from data_export_cli.demo import run_demo

    return run_demo(fixture=args.seed or EXAMPLE_FIXTURE, archive_format=args.format, out_dir=args.out)


def cmd_openapi(args: argparse.Namespace) -> int:
    from data_export_cli.openapi import openapi_document

    text = json.dumps(openapi_document(), indent=2) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


def cmd_validate_fixture(args: argparse.Namespace) -> int:
    from data_export_cli.seed import FixtureError, load_fixture

    try:
        fixture = load_fixture(Path(args.fixture))
    except FixtureError as error:
        print(f"invalid fixture {args.fixture}:\n{error}", file=sys.stderr)
        return 1
    print(f"valid: {len(fixture.organizations)} organization(s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="data-export", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="the local stack (moto as AWS, functions in-process)")
    local_commands = local.add_subparsers(dest="local_command", required=True)
    serve = local_commands.add_parser("serve", help="serve the API and run the worker until Ctrl-C/SIGTERM")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--moto-port", type=int, default=0, help="port of the moto server (default: any free)")
    serve.add_argument(
        "--seed", type=Path, action="append", default=[], help="seed fixture to load (repeatable)"
    )
    serve.add_argument(
        "--template", type=Path, default=None, help="SAM template to run (default: the checkout's)"
    )
    serve.set_defaults(func=cmd_serve)
    make_fixture = local_commands.add_parser(
        "make-fixture", help="write a big synthetic organization as a seed fixture (the same for a shape)"
    )
    make_fixture.add_argument("output", type=Path, help="fixture file to write, e.g. big-org.yaml")
    make_fixture.add_argument(
        "--shape",
        default="",
        help="NAME=VALUE,... of products (22000), images (3 a product), image_bytes (4096 on average), "
        "offers (0), brands (10), locations (3), label (synthetic)",
    )
    make_fixture.set_defaults(func=cmd_make_fixture)
    invoke = local_commands.add_parser("invoke", help="invoke one function with an event file")
    invoke.add_argument("function", help="logical id (StartExportFunction) or folder name (start_export)")
    invoke.add_argument("event", help="event JSON file, e.g. events/start_export.json")
    invoke.add_argument(
        "--seed",
        type=Path,
        action="append",
        default=[],
        help="fixture(s) to load first (default: the shared example organization)",
    )
    invoke.set_defaults(func=cmd_invoke)

    demo = commands.add_parser("demo", help="end to end: seed, request an export, poll, download, verify")
    demo.add_argument("--format", choices=["zip", "tar.gz"], default="zip")
    demo.add_argument("--seed", type=Path, default=None, help="fixture (default: the shared example)")
    demo.add_argument("--out", type=Path, default=Path("out"), help="where the archive is downloaded")
    demo.set_defaults(func=cmd_demo)

    openapi = commands.add_parser("openapi", help="write the OpenAPI 3.1 document generated from the code")
    openapi.add_argument("--output", "-o", default="-")
    openapi.set_defaults(func=cmd_openapi)

    validate = commands.add_parser("validate-fixture", help="check a seed fixture without loading it")
    validate.add_argument("fixture")
    validate.set_defaults(func=cmd_validate_fixture)

    add_client_commands(commands)  # export, status, list, cancel: the API's client
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
