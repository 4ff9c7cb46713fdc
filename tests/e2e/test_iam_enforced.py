"""`data-export local serve` enforces IAM as a user runs it: without the template's policies, nothing works.

The positive side is every other end-to-end test (they run with the template's policies enforced); here the
same command with every function's and the state machine's `Policies` taken out of a copy of template.yaml
must not complete an export, and its log must say which function was denied what."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLE_FIXTURE
from tests.serve import local_serve

ORGANIZATION = "eHcFM2wk4RdyYG8yMrTGbQ"
OWNER_KEY = "csb_uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo_b5b88299"


def template_without_policies(path: Path) -> Path:
    from data_export_cli.template import load_template

    body = load_template()
    for resource in body["Resources"].values():
        if resource["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            resource["Properties"].pop("Policies", None)
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def call(method: str, url: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, method=method, headers={"X-API-Key": OWNER_KEY})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.mark.slow
def test_without_the_templates_policies_an_export_does_not_complete(tmp_path: Path) -> None:
    template = template_without_policies(tmp_path / "template.yaml")
    log = tmp_path / "serve.log"
    with local_serve(template, EXAMPLE_FIXTURE, log) as ready:
        api = f"{ready['api_url']}/dashboard/api/v1/data-export/{ORGANIZATION}"
        status, body = call("POST", f"{api}?archive_format=zip")
        if status == 200:  # accepted: then the job must fail, never complete
            deadline = time.monotonic() + 120
            while body.get("status") in ("pending", "processing") and time.monotonic() < deadline:
                time.sleep(1)
                status, body = call("GET", f"{api}/{body['job_id']}")
            assert body.get("status") != "completed", body
        else:
            assert status in (500, 502, 503), (status, body)
            assert "arn:" not in json.dumps(body), body  # the refusal leaks no ARN
    assert "AccessDenied: StartExportFunction may not dynamodb:GetItem" in log.read_text(encoding="utf-8")
