"""Admission control of big exports. Every execution builds up to UNITS_AT_ONCE units at once, and all of them
share the unit builder's reserved concurrency; so an execution starts only with a slot (``storage.slots``),
and there are ``settings.execution_slots`` of them: UNITS_AT_ONCE x slots never exceeds the builders'
concurrency, and no unit is throttled for long, however many big exports are requested at once. A request
that finds every slot taken waits in the queue (the worker sends it again with a delay) and its job stays
``pending``.

A slot is given back when the execution's units are done (Assemble starts, or Fail runs); one whose
execution ended otherwise (stopped by a cancel, timed out, aborted) is reclaimed by the next request that
finds no free slot, and by the sweeper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from data_export.storage.slots import ExecutionSlots

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

logger = Logger(child=True)

# A slot younger than this is never reclaimed: its worker may be between taking it and StartExecution.
START_GRACE_SECONDS = 120


@dataclass
class Admission:
    slots: ExecutionSlots
    stepfunctions: SFNClient
    state_machine_arn: str

    def admit(self, job_id: str, *, limit: int, now: int) -> bool:
        """Take one of ``limit`` slots (settings.execution_slots; 0: no admission control) for the job's
        execution; when none is free, reclaim the slots of executions that ended and try once more."""
        if limit <= 0:
            return True
        if self.slots.take(job_id, limit=limit, now=now):
            return True
        try:
            freed = self.reclaim(now)
        except self.stepfunctions.exceptions.ClientError:  # the sweeper reclaims them too: wait meanwhile
            logger.warning("Could not check the executions holding slots", exc_info=True)
            return False
        return bool(freed) and self.slots.take(job_id, limit=limit, now=now)

    def release(self, job_id: str) -> None:
        """Give the job's slot back (a no-op when it holds none)."""
        self.slots.release(job_id)

    def reclaim(self, now: int) -> list[str]:
        """Free the slots whose executions no longer run (or never started); returns their jobs."""
        freed = []
        for job_id, since in (self.slots.holders() or {}).items():
            if now - since < START_GRACE_SECONDS or self.execution_status(job_id) == "RUNNING":
                continue
            if self.slots.release(job_id, since=since):
                freed.append(job_id)
        if freed:
            logger.warning("Execution slots reclaimed", extra={"jobs": freed})
        return freed

    def execution_status(self, name: str) -> str | None:
        """The status of the execution of that name (RUNNING, SUCCEEDED, ...), None when there is none."""
        arn = f"{self.state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"
        try:
            return self.stepfunctions.describe_execution(executionArn=arn)["status"]
        except self.stepfunctions.exceptions.ExecutionDoesNotExist:
            return None
