"""Admission control of big exports: at most `limit` executions hold a slot; a job holding one takes it again
idempotently; a slot whose execution no longer runs is reclaimed (not one just taken, whose StartExecution
may be under way), and a reclaim never frees a slot its job took again meanwhile."""

from __future__ import annotations

from data_export.export.admission import START_GRACE_SECONDS, Admission
from data_export.settings import UNITS_AT_ONCE, Settings

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:data-export-export"
T0 = 1_800_000_000


class DictSlots:
    """storage.slots.ExecutionSlots' contract in a dict."""

    def __init__(self) -> None:
        self.held: dict[str, int] = {}

    def take(self, job_id: str, *, limit: int, now: int) -> bool:
        if job_id not in self.held and len(self.held) >= limit:
            return False
        self.held.setdefault(job_id, now)
        return True

    def release(self, job_id: str, *, since: int | None = None) -> bool:
        if job_id not in self.held or (since is not None and self.held[job_id] != since):
            return False
        del self.held[job_id]
        return True

    def holders(self, *, create: bool = False) -> dict[str, int]:
        return dict(self.held)


class FakeStepFunctions:
    class exceptions:
        class ExecutionDoesNotExist(Exception):
            pass

    def __init__(self) -> None:
        self.statuses: dict[str, str] = {}

    def describe_execution(self, executionArn: str) -> dict[str, str]:
        name = executionArn.rsplit(":", 1)[-1]
        if name not in self.statuses:
            raise self.exceptions.ExecutionDoesNotExist(name)
        return {"status": self.statuses[name]}


def admission() -> tuple[Admission, DictSlots, FakeStepFunctions]:
    slots, sfn = DictSlots(), FakeStepFunctions()
    return Admission(slots=slots, stepfunctions=sfn, state_machine_arn=ARN), slots, sfn  # type: ignore[arg-type]


def test_no_more_than_the_limit_and_a_holder_takes_its_slot_again() -> None:
    gate, slots, sfn = admission()
    assert gate.admit("a", limit=2, now=T0) and gate.admit("b", limit=2, now=T0)
    sfn.statuses.update(a="RUNNING", b="RUNNING")
    assert not gate.admit("c", limit=2, now=T0 + 600)
    assert gate.admit("a", limit=2, now=T0 + 600)  # a duplicate message of a running export
    assert slots.held == {"a": T0, "b": T0}
    gate.release("a")
    assert gate.admit("c", limit=2, now=T0 + 601)


def test_slots_of_ended_executions_are_reclaimed_not_those_just_taken() -> None:
    gate, slots, sfn = admission()
    gate.admit("stopped", limit=2, now=T0)
    gate.admit("starting", limit=2, now=T0 + 1000)
    sfn.statuses["stopped"] = "ABORTED"  # a cancel stops an execution: its Fail step never runs
    # "starting" has no execution yet: its worker is between taking the slot and StartExecution.
    assert gate.admit("next", limit=2, now=T0 + 1000 + START_GRACE_SECONDS - 1)
    assert slots.held == {"starting": T0 + 1000, "next": T0 + 1000 + START_GRACE_SECONDS - 1}
    # A worker died between taking its slot and StartExecution: reclaimed once the grace is over.
    assert gate.reclaim(T0 + 1000 + START_GRACE_SECONDS) == ["starting"]


def test_a_reclaim_never_frees_a_slot_taken_again_meanwhile() -> None:
    _, slots, _ = admission()
    slots.take("a", limit=1, now=T0)
    slots.release("a")
    slots.take("a", limit=1, now=T0 + 5)
    assert not slots.release("a", since=T0) and slots.held == {"a": T0 + 5}


def test_zero_slots_turns_admission_off() -> None:
    gate, slots, _ = admission()
    assert all(gate.admit(str(i), limit=0, now=T0) for i in range(100)) and slots.held == {}


def test_slots_never_let_units_exceed_the_builders_concurrency() -> None:
    base = {
        "jobs_table": "j",
        "org_data_table": "o",
        "api_keys_table": "k",
        "assets_bucket": "a",
        "exports_bucket": "e",
        "export_queue_url": "q",
    }
    for builders in (16, 17, 31, 32, 33, 64, 100):
        slots = Settings(**base, max_concurrent_unit_builds=builders).execution_slots  # type: ignore[arg-type]
        assert slots >= 1 and slots * UNITS_AT_ONCE <= builders
    assert Settings(**base).execution_slots == 2  # type: ignore[arg-type]


def test_the_map_builds_as_many_units_at_once_as_settings_count_per_slot() -> None:
    from data_export_cli.template import load_template

    template = load_template()
    states = template["Resources"]["ExportStateMachine"]["Properties"]["Definition"]["States"]
    assert states["BuildUnits"]["MaxConcurrency"] == UNITS_AT_ONCE
    builders = template["Parameters"]["MaxConcurrentUnitBuilds"]
    assert builders["MinValue"] >= UNITS_AT_ONCE  # one slot at least, never more units than builders
    worker = template["Resources"]["ExportWorkerFunction"]["Properties"]["Environment"]["Variables"]
    assert worker["MAX_CONCURRENT_UNIT_BUILDS"] == {"Ref": "MaxConcurrentUnitBuilds"}
    unit_builder = template["Resources"]["ExportBuildUnitFunction"]["Properties"]
    assert unit_builder["ReservedConcurrentExecutions"] == {"Ref": "MaxConcurrentUnitBuilds"}


def test_the_slots_item_is_no_organizations() -> None:
    from data_export.storage.slots import SLOTS_KEY

    assert SLOTS_KEY["organization_id"]["S"].startswith("#")  # no organization id does
