"""SnapStart priming: the hooks Lambda's runtime calls build the clients before the snapshot and rebuild them,
with the restored environment's credentials, after each restore; without the runtime's library, nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "data-export",
    "EXPORT_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
    **{
        name: "t"
        for name in (
            "JOBS_TABLE_NAME",
            "ORG_DATA_TABLE_NAME",
            "API_KEYS_TABLE_NAME",
            "RATE_LIMITS_TABLE_NAME",
            "ASSETS_BUCKET_NAME",
            "EXPORTS_BUCKET_NAME",
        )
    },
}
# A stand-in for the runtime's snapshot_restore_py: records the hooks; the test calls them as Lambda would
# (before the snapshot in reverse order of registration, after a restore in order).
FAKE_RUNTIME = """
import sys, types
hooks = {"before": [], "after": []}
runtime = types.ModuleType("snapshot_restore_py")
def _register(kind):
    def register(function, *args, **kwargs):
        hooks[kind].append((function, args, kwargs))
        return function
    return register
runtime.register_before_snapshot = _register("before")
runtime.register_after_restore = _register("after")
sys.modules["snapshot_restore_py"] = runtime
"""
PROBE = """
import os
{fake}
import {module} as function
from data_export import wiring
assert {registered}, "no hooks registered"
os.environ.update(AWS_ACCESS_KEY_ID="SNAPSHOT", AWS_SECRET_ACCESS_KEY="s1")
for hook, args, kwargs in reversed(hooks["before"]):
    hook(*args, **kwargs)
import sys
assert "boto3" in sys.modules
before = wiring.client("dynamodb")
assert before.meta.region_name == "us-east-1"
assert before._request_signer._credentials.access_key == "SNAPSHOT"
os.environ.update(AWS_ACCESS_KEY_ID="RESTORED", AWS_SECRET_ACCESS_KEY="s2")
for hook, args, kwargs in hooks["after"]:
    hook(*args, **kwargs)
after = wiring.client("dynamodb")
assert after is not before, "the snapshot's client survived the restore"
assert after._request_signer._credentials.access_key == "RESTORED"
print("ok", len(hooks["before"]), len(hooks["after"]))
"""
MODULES = [
    "functions.start_export.app",
    "functions.get_export.app",
    "functions.cancel_export.app",
    "functions.export_worker.app",
    "functions.export_sweeper.app",
    "functions.export_steps.app",
]


def run(code: str) -> str:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "DATA_EXPORT_"))
    }
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={
            **environment,
            **ENVIRONMENT,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("module", MODULES)
def test_clients_are_primed_before_the_snapshot_and_rebuilt_after_a_restore(module: str) -> None:
    code = PROBE.format(fake=FAKE_RUNTIME, module=module, registered='hooks["before"] and hooks["after"]')
    assert run(code) == "ok 1 1"


def test_without_the_runtime_library_nothing_is_registered_and_nothing_is_built() -> None:
    code = (
        "import sys\n"
        "import functions.get_export.app\n"
        "from data_export import snapstart\n"
        "print(snapstart.register(lambda: None), 'boto3' in sys.modules)\n"
    )
    assert run(code) == "False False"


def test_every_contract_model_is_built_before_the_snapshot() -> None:
    code = (
        "from data_export import snapstart, models\n"
        "from pydantic import BaseModel\n"
        "built = snapstart.build_models()\n"
        "deferred = [v for v in vars(models).values() if isinstance(v, type) and issubclass(v, BaseModel)"
        " and v.__module__ == models.__name__ and v.model_config.get('defer_build')]\n"
        "print(built == len(deferred) > 0,"
        " all(type(v.__pydantic_validator__).__name__ == 'SchemaValidator' for v in deferred))\n"
    )
    assert run(code) == "True True"
