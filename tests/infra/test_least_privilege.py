"""Least privilege, proven on the local stack with IAM enforced: every action the template grants is needed.

For each granted action (tests/infra/iam-proofs.json, made by `make iam-proofs`), the test that used it runs
in a pytest of its own on a local stack whose policy lacks that one action: it must fail, and the stack must
have denied exactly that action to that role. A grant without a proof fails the first test below."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra.iam_proofs import PROOFS, template_grants

REPO = Path(__file__).resolve().parents[2]
# A proof that has not failed by then is counted by what its stack denied so far.
PROOF_TIMEOUT_SECONDS = 240
# What the proof's pytest must not inherit from this one (it gets its own).
CONTROLS = frozenset(
    {
        "DATA_EXPORT_IAM_TRACE",
        "DATA_EXPORT_IAM_WITHOUT",
        "DATA_EXPORT_IAM_DENIAL_LOG",
        "DATA_EXPORT_IAM_BATCH",
        "DATA_EXPORT_IAM_RESULTS",
        "PYTEST_XDIST_WORKER",
    }
)


def proofs() -> dict[str, Any]:
    return dict(json.loads(PROOFS.read_text(encoding="utf-8"))) if PROOFS.exists() else {}


@pytest.mark.iam_proof
def test_every_granted_action_has_a_proof() -> None:
    granted = set(template_grants())
    proven = set(proofs())
    assert granted - proven == set(), "granted, but no test needs it: remove the grant or add the test"
    assert proven - granted == set(), "stale proofs: run `make iam-proofs`"


def by_test() -> dict[str, list[str]]:
    """The grants each proof test proves."""
    grants: dict[str, list[str]] = {}
    for grant, proof in sorted(proofs().items()):
        grants.setdefault(proof["test"], []).append(grant)
    return grants


def denied(grant: str, denials: list[dict[str, Any]]) -> bool:
    from data_export_cli.stack import GrantRef

    ref = GrantRef.parse(grant)
    return any(
        (d.get("role_id") == ref.role or d["role"].endswith(f"-{ref.role}"))
        and d["action"].lower() == ref.action.lower()
        for d in denials
    )


def run_proof(test: str, environment: dict[str, str]) -> tuple[bool, str]:
    """Runs one test in a pytest of its own: (failed, the end of its output)."""
    inherited = {name: value for name, value in os.environ.items() if name not in CONTROLS}
    environment = {**inherited, **environment}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:xdist", test],
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
            timeout=PROOF_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return True, "timed out"
    return result.returncode != 0, (result.stdout + result.stderr)[-3000:]


def fails_alone_without(grant: str, test: str, tmp_path: Path) -> tuple[bool, str]:
    """The proof run alone on a stack created without the grant: fails, on that grant's denial."""
    denial_log = tmp_path / f"denials-{abs(hash(grant))}.jsonl"
    failed, output = run_proof(
        test, {"DATA_EXPORT_IAM_WITHOUT": grant, "DATA_EXPORT_IAM_DENIAL_LOG": str(denial_log)}
    )
    lines = denial_log.read_text().splitlines() if denial_log.exists() else []
    return failed and denied(grant, [json.loads(line) for line in lines]), output


@pytest.mark.iam_proof
@pytest.mark.parametrize("test", sorted(by_test()))
def test_each_grant_fails_its_proof_when_taken_out(test: str, tmp_path: Path) -> None:
    """One pytest runs the proof once per grant it proves, each grant taken out of the running stack in
    turn; a grant whose run did not fail on its own denial (the runs share one stack, so an earlier run
    may have left state behind) is tried again alone, on a stack created without it."""
    grants = by_test()[test]
    results_file = tmp_path / "results.json"
    run_proof(test, {"DATA_EXPORT_IAM_BATCH": ";".join(grants), "DATA_EXPORT_IAM_RESULTS": str(results_file)})
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    runs = next(iter(results.values()), {})
    unproven = []
    for grant in grants:
        run = runs.get(grant)
        if run and run["failed"] and denied(grant, run["denials"]):
            continue
        proven, output = fails_alone_without(grant, test, tmp_path)
        if not proven:
            unproven.append(f"{grant}:\n{output}")
    assert not unproven, "\n\n".join(unproven)
