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


def proofs() -> dict[str, Any]:
    return dict(json.loads(PROOFS.read_text(encoding="utf-8"))) if PROOFS.exists() else {}


@pytest.mark.iam_proof
def test_every_granted_action_has_a_proof() -> None:
    granted = set(template_grants())
    proven = set(proofs())
    assert granted - proven == set(), "granted, but no test needs it: remove the grant or add the test"
    assert proven - granted == set(), "stale proofs: run `make iam-proofs`"


@pytest.mark.iam_proof
@pytest.mark.parametrize("grant", sorted(proofs()))
def test_the_proof_fails_without_its_grant(grant: str, tmp_path: Path) -> None:
    from data_export_cli.stack import GrantRef

    ref = GrantRef.parse(grant)
    test = proofs()[grant]["test"]
    denial_log = tmp_path / "denials.jsonl"
    environment = {
        **os.environ,
        "DATA_EXPORT_IAM_WITHOUT": grant,
        "DATA_EXPORT_IAM_DENIAL_LOG": str(denial_log),
    }
    environment.pop("DATA_EXPORT_IAM_TRACE", None)
    environment.pop("PYTEST_XDIST_WORKER", None)
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
        failed, output = result.returncode != 0, result.stdout[-3000:]
    except subprocess.TimeoutExpired:
        failed, output = True, "timed out"
    lines = denial_log.read_text().splitlines() if denial_log.exists() else []
    denials = [json.loads(line) for line in lines]
    denied = [
        d for d in denials if d["role"].endswith(f"-{ref.role}") and d["action"].lower() == ref.action.lower()
    ]
    assert failed, f"{test} passed without {grant}:\n{output}"
    assert denied, f"{test} failed without {grant}, but not on that action being denied: {denials}\n{output}"
