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
from data_export.export.plan import record_weight
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
        if self._is_small(organization_id):
            self.builder.build(organization_id, job_id)
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

    def _is_small(self, organization_id: str) -> bool:
        """Within the fast-path limits? Stops reading as soon as the answer is no."""
        if not self.settings.state_machine_arn:
            return True  # no state machine configured: the worker builds everything itself
        weight = count = 0
        for section in SECTION_KEYS:
            for record in iter_section(
                self.builder.org_data, self.builder.api_keys, organization_id, section
            ):
                weight += record_weight(record, section)
                count += 1
                if weight > self.settings.fast_path_max_bytes or count > self.settings.fast_path_max_records:
                    return False
        return True
