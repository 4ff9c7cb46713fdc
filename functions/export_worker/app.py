"""SQS consumer: builds each requested small export, or hands a big one to Step Functions.

Failed messages are reported individually (partial batch response) so that only they come back; a job's
own failures end as a `failed` job, not as a retry."""

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
# SnapStart (template parameter): the dispatcher and its clients, built before the snapshot.
snapstart.register(wiring.dispatcher)


def build_export(record: SQSRecord) -> None:
    message = ExportRequestMessage.model_validate_json(record.body)
    logger.append_keys(organization_id=message.organization_id, job_id=message.job_id)
    outcome = wiring.dispatcher().dispatch(message.organization_id, message.job_id)
    logger.info("Export request handled", extra={"outcome": outcome.value})


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=build_export, processor=processor, context=context
    )
