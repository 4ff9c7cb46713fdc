"""Keeps exports from getting stuck: `sweep` runs on a schedule over every open job; `dead_letter`
consumes the export queue's dead-letter queue and fails the jobs whose requests ended there."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from data_export import snapstart, wiring
from data_export.models import ExportRequestMessage

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)
# SnapStart (template parameter): the sweeper and its clients, built before the snapshot.
snapstart.register(wiring.sweeper)


@logger.inject_lambda_context(clear_state=True)
def sweep(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = wiring.sweeper().sweep()
    return {"requeued": report.requeued, "failed": report.failed, "alive": report.alive}


def fail_dead_letter(record: SQSRecord) -> None:
    message = ExportRequestMessage.model_validate_json(record.body)
    failed = wiring.sweeper().fail_dead_letter(message.organization_id, message.job_id)
    logger.warning("Dead-lettered export request", extra={"job_id": message.job_id, "job_failed": failed})


@logger.inject_lambda_context(clear_state=True)
def dead_letter(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=fail_dead_letter, processor=processor, context=context
    )
