"""Supply chain and configuration scanners: checkov on template.yaml, pip-audit on the layer's locked deps.

checkov pins its own boto3, which conflicts with the project's, so it lives in a virtualenv of its own
(``.venv/checkov``, or ``$CHECKOV``, or on PATH). pip-audit asks a vulnerability service over the network;
where none answers, its audit is blind, which a known-vulnerable canary reveals, and the test skips.
A missing scanner skips the test on a developer's machine and fails it in CI (CI=true)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
CHECKOV_CONFIG = ROOT / ".checkov.yaml"
LAYER_REQUIREMENTS = ROOT / "layers" / "shared" / "requirements.txt"
# checkov otherwise fetches check metadata from its vendor's API at every run.
CHECKOV_ENV = {"BC_SKIP_MAPPING": "TRUE", "CHECKOV_SKIP_DOWNLOAD": "TRUE"}
_SKIP_LINE = re.compile(r"^\s*-\s*(CKV2?_[A-Z0-9_]+)\s*#\s*on:\s*(.+?)\s*$")
# Known vulnerable (CVE-2015-2296 and more): a service that reports nothing for it is not answering.
VULNERABLE_CANARY = "requests==2.5.0"


def _missing_tool(name: str, how: str) -> None:
    message = f"{name} is not installed ({how})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _checkov() -> str:
    for candidate in (os.environ.get("CHECKOV"), str(ROOT / ".venv" / "checkov" / "bin" / "checkov")):
        if candidate and Path(candidate).is_file():
            return candidate
    found = shutil.which("checkov")
    if found is None:
        _missing_tool("checkov", "python -m venv .venv/checkov && .venv/checkov/bin/pip install checkov")
    assert found is not None
    return found


def _run_checkov(*args: str, cwd: Path) -> dict[str, Any]:
    result = subprocess.run(
        [_checkov(), "-f", str(TEMPLATE), "--framework", "cloudformation", "--output", "json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, **CHECKOV_ENV},
        check=False,
    )
    assert result.returncode in (0, 1), (result.returncode, result.stderr[-3000:])
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report.get("check_type") == "cloudformation", result.stdout[:2000]
    return dict(report)


def template_resources() -> dict[str, Any]:
    return dict(yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CfnLoader)["Resources"])


def documented_skips() -> dict[str, set[str]]:
    """check id -> logical ids it is skipped on, from .checkov.yaml's ``- CKV_... # on: A, B`` lines;
    ``every <type>`` stands for every resource of that type in template.yaml."""
    resources = template_resources()
    lines = CHECKOV_CONFIG.read_text(encoding="utf-8").splitlines()
    skips: dict[str, set[str]] = {}
    for index, line in enumerate(lines):
        match = _SKIP_LINE.match(line)
        if match is None:
            continue
        reason = []
        for above in reversed(lines[:index]):
            if not above.strip().startswith("#"):
                break
            reason.append(above)
        assert reason, f"{match[1]}: a skip needs its reason in the comment lines right above it"
        names: set[str] = set()
        for item in (part.strip() for part in match[2].split(",") if part.strip()):
            if item.startswith("every "):
                of_type = {name for name, resource in resources.items() if resource["Type"] == item[6:]}
                assert of_type, f"{match[1]}: template.yaml has no {item[6:]}"
                names |= of_type
            else:
                names.add(item)
        skips[match[1]] = names
    return skips


def test_every_skip_names_its_resources_and_reason() -> None:
    config = yaml.safe_load(CHECKOV_CONFIG.read_text(encoding="utf-8"))
    skipped = config.get("skip-check") or []
    documented = documented_skips()
    assert sorted(skipped) == sorted(documented), "every skip-check entry needs '# on: <logical ids>'"
    resources = template_resources()
    unknown = {check: names - set(resources) for check, names in documented.items() if names - set(resources)}
    assert not unknown, f"skips name resources template.yaml does not have: {unknown}"


def test_checkov_passes_with_the_documented_skips() -> None:
    report = _run_checkov("--config-file", str(CHECKOV_CONFIG), cwd=ROOT)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["parsing_errors"] == 0
    # It really read the template: every resource, and dozens of checks passing.
    resources = template_resources()
    assert summary["resource_count"] >= len(resources)
    assert summary["passed"] >= 30, summary


def test_skipped_checks_fail_exactly_where_documented(tmp_path: Path) -> None:
    """Run only the skipped checks, without the config: each must fail on its listed resources, and only
    there. A new resource caught by a global skip, or a fix that makes a skip unnecessary, fails here."""
    documented = documented_skips()
    report = _run_checkov("--check", ",".join(sorted(documented)), cwd=tmp_path)
    failing: dict[str, set[str]] = {}
    for check in report["results"]["failed_checks"]:
        failing.setdefault(check["check_id"], set()).add(check["resource"].rsplit(".", 1)[-1])
    assert failing == documented


def test_checkov_catches_a_bad_resource(tmp_path: Path) -> None:
    """The scanner is not blind: a public bucket fails with the project's own configuration."""
    bad = tmp_path / "template.yaml"
    bad.write_text(
        "Resources:\n  Open:\n    Type: AWS::S3::Bucket\n    Properties:\n      AccessControl: PublicRead\n"
    )
    result = subprocess.run(
        [_checkov(), "--config-file", str(CHECKOV_CONFIG), "-f", str(bad), "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, **CHECKOV_ENV},
        check=False,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    failed = {check["check_id"] for check in json.loads(result.stdout)["results"]["failed_checks"]}
    assert {"CKV_AWS_20", "CKV_AWS_53"} <= failed, failed  # public-read ACL; public ACLs not blocked


def _pip_audit(requirements: Path, *args: str) -> dict[str, Any] | None:
    """pip-audit's JSON report, or None when it could not run (e.g. its service's host does not resolve)."""
    command = [sys.executable, "-m", "pip_audit", "--requirement", str(requirements), "--format", "json"]
    result = subprocess.run(
        [*command, "--progress-spinner", "off", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        return dict(json.loads(result.stdout))
    except ValueError:
        return None


def _answering_service(tmp_path: Path) -> str | None:
    canary = tmp_path / "canary.txt"
    canary.write_text(VULNERABLE_CANARY + "\n")
    for service in ("pypi", "osv"):
        report = _pip_audit(canary, "--no-deps", "--disable-pip", "--vulnerability-service", service)
        if report and any(dependency.get("vulns") for dependency in report["dependencies"]):
            return service
    return None


def test_locked_layer_dependencies_have_no_known_vulnerability(tmp_path: Path) -> None:
    if importlib.util.find_spec("pip_audit") is None:
        _missing_tool("pip-audit", "pip install pip-audit")
    service = _answering_service(tmp_path)
    if service is None:
        pytest.skip(
            "no vulnerability service answers from this machine: pip-audit reports nothing for the known-"
            f"vulnerable canary {VULNERABLE_CANARY} (the PyPI JSON API and OSV are unreachable)"
        )
    # Transitive dependencies too: pip resolves the pinned requirements as the layer build does.
    report = _pip_audit(LAYER_REQUIREMENTS, "--vulnerability-service", service)
    assert report is not None, "pip-audit failed on the layer's requirements"
    unaudited = {d["name"]: d["skip_reason"] for d in report["dependencies"] if "skip_reason" in d}
    assert not unaudited, unaudited
    vulnerable = {
        f"{d['name']}=={d['version']}": [v["id"] for v in d["vulns"]]
        for d in report["dependencies"]
        if d["vulns"]
    }
    assert not vulnerable, vulnerable


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short tags (!Ref, !GetAtt, !Sub, ...) as plain values."""


def _any_tag(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    assert isinstance(node, yaml.MappingNode)
    return loader.construct_mapping(node)


_CfnLoader.add_multi_constructor("!", _any_tag)
