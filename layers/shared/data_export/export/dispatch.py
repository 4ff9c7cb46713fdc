"""What the queue worker does with an export request: build a small export at once, or start the Step
Functions execution that builds a big one in parallel units. The execution is named after the job, so a
duplicate message can never start a second build."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from data_export.export.builder import ExportBuilder
from data_export.export.plan import WorkTotals, measure
from data_export.models import SECTION_KEYS
from data_export.settings import Settings
from data_export.storage.org_data import iter_section

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

logger = Logger(child=True)


class Dispatch(StrEnum):
    BUILT = "built"  # small: built by the worker itself
    STARTED = "started"  # big: handed to Step Functions
    ALREADY_STARTED = "already-started"  # a duplicate message; the execution exists
    SKIPPED = "skipped"  # unknown or finished job


@dataclass
class ExportDispatcher:
    builder: ExportBuilder
    stepfunctions: SFNClient
    settings: Settings

    def dispatch(self, organization_id: str, job_id: str) -> Dispatch:
        job = self.builder.jobs.get(organization_id, job_id)
        if job is None or job.is_finished:
            return Dispatch.SKIPPED
        if not self.settings.state_machine_arn:
            # No state machine configured: the worker builds everything itself (and measures it).
            self.builder.build(organization_id, job_id)
            return Dispatch.BUILT
        totals = self._small_totals(organization_id)
        if totals is not None:
            self.builder.build(organization_id, job_id, totals)
            return Dispatch.BUILT
        execution_input = {
            "organization_id": organization_id,
            "job_id": job_id,
            "chunk_target_bytes": self.settings.chunk_target_bytes,
            "chunk_max_records": self.settings.chunk_max_records,
        }
        try:
            self.stepfunctions.start_execution(
                stateMachineArn=self.settings.state_machine_arn,
                name=job_id,
                input=json.dumps(execution_input),
            )
        except self.stepfunctions.exceptions.ExecutionAlreadyExists:
            logger.info("Export execution already exists; duplicate message", extra={"job_id": job_id})
            return Dispatch.ALREADY_STARTED
        logger.info("Export handed to Step Functions", extra={"job_id": job_id})
        return Dispatch.STARTED

    def _small_totals(self, organization_id: str) -> WorkTotals | None:
        """The export's totals when it is within the fast-path limits (the build's progress is measured
        against them), else None. Stops reading as soon as the answer is no."""
        sections = {
            section: iter_section(self.builder.org_data, self.builder.api_keys, organization_id, section)
            for section in SECTION_KEYS
        }
        return measure(
            sections,
            max_weight=self.settings.fast_path_max_bytes,
            max_records=self.settings.fast_path_max_records,
        )
