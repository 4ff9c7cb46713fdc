"""Two guards of the least-privilege proofs, autouse in the integration, end-to-end and security folders
(their conftest.py imports them):

- No function is ever refused a call: a test during which the stack denied a call to a function's role (or
  the state machine's) fails, even where the code goes on without the call (an event not published, a queue
  not counted, a slot not reclaimed). A grant taken out (`make test-iam`) thus fails every test that needs
  it, and a grant missing from the template fails the test that found it. A test that provokes denials on
  purpose asks for the ``denials_expected`` fixture.
- `make iam-proofs` credits each test with the template grants its calls were allowed by (tests/conftest.py)
  and keeps the quickest test that used a grant as its proof. The stack's calls are counted whoever makes
  them, so a test that started while the stack was still busy with an earlier test's work (a build the
  queue poller took, an execution, a request the sweeper queued again) would be credited with that work's
  grants and prove nothing by them. With DATA_EXPORT_IAM_TRACE set, each test starts (its other fixtures
  set up first) once the stack is quiet: no execution running and no call under a template grant for a
  moment; and the queue poller (which the session's first `api_url` started) delivers nothing during a
  test that does not ask for `api_url`, so that a message such a test leaves on a queue (the sweeper's
  re-queued request) is not built on its account. With a grant taken out (DATA_EXPORT_IAM_WITHOUT,
  DATA_EXPORT_IAM_BATCH), each test waits for quiet before its denials are counted, so that work it
  started and did not wait for is counted too."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

QUIET_SECONDS = 0.5  # no call under a template grant for this long
MAX_WAIT_SECONDS = 30.0  # a stack busier than this for long is left to it


def wait_until_quiet(stack: Any) -> bool:
    """Wait (up to MAX_WAIT_SECONDS) until no execution runs and no template grant is used for a moment."""
    sfn = stack.client("stepfunctions")  # as the admin: not a grant of the template
    state_machine = stack.physical["ExportStateMachine"]
    deadline = time.monotonic() + MAX_WAIT_SECONDS
    while time.monotonic() < deadline:
        running = sfn.list_executions(stateMachineArn=state_machine, statusFilter="RUNNING")["executions"]
        if running:
            time.sleep(0.2)
            continue
        stack.grants_used.clear()
        time.sleep(QUIET_SECONDS)
        if not stack.grant_refs(stack.grants_used.copy()):
            return True
    return False


def role_name(principal: str) -> str:
    """The role of an assumed-role session's ARN (or of a role's ARN)."""
    if ":assumed-role/" in principal:
        return principal.split(":assumed-role/", 1)[1].split("/", 1)[0]
    return principal.split(":role/", 1)[-1]


def function_denials(stack: Any, denials: list[Any]) -> list[str]:
    """The denials of these that refused a function's (or the state machine's) role."""
    owners = {name: owner for owner, name in stack.role_of.items()}
    return [
        f"{owners[role]} may not {denial.action} on {denial.resource}"
        for denial in denials
        if (role := role_name(str(denial.principal))) in owners
    ]


def paused_poller(stack: Any) -> Any:
    """The stack's ``reserve`` while the poller should deliver nothing: no free concurrency (it waits)."""

    def reserve(function_id: str, timeout: float) -> None:
        time.sleep(timeout)

    return reserve


@pytest.fixture
def denials_expected() -> None:
    """Asked for by a test that provokes denials of the functions' roles on purpose."""


@pytest.fixture(autouse=True)
def iam_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    if "stack" not in request.fixturenames:
        yield
        return
    stack = request.getfixturevalue("stack")
    tracing = bool(os.environ.get("DATA_EXPORT_IAM_TRACE"))
    pause = tracing and "api_url" not in request.fixturenames
    if tracing:
        # The test's other fixtures first (one may start the queue poller, which then takes what waited).
        for name in request.fixturenames:
            if name not in ("request", "iam_guard"):
                with contextlib.suppress(pytest.FixtureLookupError):
                    request.getfixturevalue(name)
        if pause:
            stack.reserve = paused_poller(stack)
        wait_until_quiet(stack)
    before = list(stack.denials)  # kept, so that no id below is reused meanwhile
    seen = {id(denial) for denial in before}
    try:
        yield
    finally:
        if pause:
            del stack.reserve  # the class's again
    if os.environ.get("DATA_EXPORT_IAM_WITHOUT") or os.environ.get("DATA_EXPORT_IAM_BATCH"):
        wait_until_quiet(stack)
    refused = function_denials(stack, [denial for denial in stack.denials if id(denial) not in seen])
    if refused and "denials_expected" not in request.fixturenames:
        pytest.fail("AccessDenied during the test:\n" + "\n".join(sorted(set(refused))), pytrace=False)
