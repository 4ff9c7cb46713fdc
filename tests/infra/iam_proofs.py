"""The proof of least privilege: for every action the template grants, a test that fails without it.

`make iam-proofs` runs the integration and end-to-end tests with DATA_EXPORT_IAM_TRACE set, so each test
records which granted actions its calls were allowed by (tests/conftest.py), then runs this module, which
keeps, for each grant, the quickest test that used it and writes tests/infra/iam-proofs.json.
tests/infra/test_least_privilege.py then takes each grant out in turn and checks that its test fails with
that action denied. A grant no test uses is reported: remove it, or add the test that needs it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

PROOFS = Path(__file__).with_name("iam-proofs.json")


def template_grants() -> list[str]:
    """Every action of every inline statement of every role the template makes (as SAM translates it),
    as GrantRef strings. Managed policies are SAM's (logs, X-Ray, the SQS poller), not ours to prune."""
    from data_export_cli.iam import translate
    from data_export_cli.stack import REGION, GrantRef
    from data_export_cli.template import load_template

    translated = translate(load_template(), REGION)
    grants = []
    for role_id, role in sorted(translated.roles.items()):
        for policy, document in sorted(role.inline_policies.items()):
            statements = document["Statement"]
            for index, statement in enumerate(statements if isinstance(statements, list) else [statements]):
                actions = (
                    statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                )
                grants += [str(GrantRef(role_id, policy, index, action)) for action in actions]
    return grants


def merge(trace_dir: Path) -> dict[str, Any]:
    tests: dict[str, dict[str, Any]] = {}
    for path in sorted(trace_dir.glob("trace-*.json")):
        tests.update(json.loads(path.read_text(encoding="utf-8")))
    proofs: dict[str, Any] = {}
    for grant in template_grants():
        users = [(entry["seconds"], nodeid) for nodeid, entry in tests.items() if grant in entry["grants"]]
        if users:
            seconds, nodeid = min(users)
            proofs[grant] = {"test": nodeid, "seconds": round(seconds, 2)}
    return proofs


def main(argv: list[str]) -> int:
    proofs = merge(Path(argv[0]))
    unused = [grant for grant in template_grants() if grant not in proofs]
    PROOFS.write_text(json.dumps(proofs, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{len(proofs)} grants proven by a test; written to {PROOFS}")
    for grant in unused:
        print(f"no test uses {grant}: remove it from template.yaml, or add the test that needs it")
    return 1 if unused else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
