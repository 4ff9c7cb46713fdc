"""Cold start: how long each function's handler module takes to import, in fresh interpreters.

Each sample is a new ``python -c`` process timing ``import <module>`` alone (interpreter start-up excluded),
with the handlers' environment. Modules are sampled round-robin; medians and paired ratios are reported.
The peer is the naive handler the issue names: boto3 + pydantic + Powertools' event handler.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import Comparison, Contender

REPO = Path(__file__).resolve().parents[1]
HANDLERS = {
    "StartExportFunction": "functions.start_export.app",
    "GetExportFunction": "functions.get_export.app",
    "ExportWorkerFunction": "functions.export_worker.app",
}
NAIVE = "boto3, pydantic, aws_lambda_powertools.event_handler"
# What the handlers would import with the changes proposed in docs/performance.md: the API functions
# without the OpenAPI validation machinery and without building pydantic models at import, the worker
# without the batch utility and without pydantic. Import sets only, to size the gain before anyone
# rewrites a handler.
PROPOSED = {
    "StartExportFunction": "aws_lambda_powertools.event_handler.api_gateway, aws_lambda_powertools.logging, "
    "data_export.auth, data_export.errors, data_export.ids, data_export.wiring",
    "ExportWorkerFunction": "json, aws_lambda_powertools.logging, data_export.ids, data_export.wiring",
}
PROPOSED["GetExportFunction"] = PROPOSED["StartExportFunction"]
# What the template gives every function (the values do not matter for an import).
ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "data-export",
    "POWERTOOLS_METRICS_NAMESPACE": "DataExport",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "AWS_DEFAULT_REGION": "us-east-1",
}
NAIVE_LABEL = "naive: import boto3 + pydantic + event_handler"
TIMER = "import time; start = time.perf_counter(); import {module}; print(time.perf_counter() - start)"


def import_seconds(module: str) -> float:
    completed = subprocess.run(
        [sys.executable, "-c", TIMER.format(module=module)],
        cwd=REPO,
        env={**os.environ, **ENVIRONMENT},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return float(completed.stdout.strip().splitlines()[-1])


def run(*, rounds: int) -> list[Comparison]:
    modules = {**HANDLERS, "naive": NAIVE, "proposed api": PROPOSED["GetExportFunction"]}
    modules["proposed worker"] = PROPOSED["ExportWorkerFunction"]
    seconds: dict[str, list[float]] = {name: [] for name in modules}
    for round_index in range(rounds + 1):
        names = list(modules) if round_index % 2 == 0 else list(reversed(modules))
        for name in names:
            sample = import_seconds(modules[name])
            if round_index:  # the first round only warms the page cache and the .pyc files
                seconds[name].append(sample)
    comparisons = []
    for function, module in HANDLERS.items():
        proposed = "proposed worker" if function == "ExportWorkerFunction" else "proposed api"
        contenders = [
            Contender(f"ours: import {module}", "ours", rates=[1 / s for s in seconds[function]]),
            Contender(NAIVE_LABEL, "peer", rates=[1 / s for s in seconds["naive"]]),
            Contender(f"{proposed} (import set only)", "variant", rates=[1 / s for s in seconds[proposed]]),
        ]
        comparisons.append(
            Comparison(
                f"Cold start: {function}",
                "imports",
                contenders,
                notes="fresh interpreter per sample; import time only",
                show_time=True,
            )
        )
    return comparisons
