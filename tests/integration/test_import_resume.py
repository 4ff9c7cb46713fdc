"""The apply of an import in many steps, and after a crash: the run's steps driven one by one on the local
stack (IAM enforced), each as its function, with the real archive of the example organization."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from data_export import wiring
from data_export.ids import new_id
from data_export.models import ImportErrorCode, ImportStatus

from tests.archive_checks import ACME, archive_files
from tests.credentials import as_function
from tests.round_trip import (
    ACME_COUNTS,
    ACME_KEY,
    comparable,
    empty_organization,
    staged_import,
    start_import,
    wait_for_import,
)
from tests.security.helpers import export


@pytest.fixture(scope="module")
def acme_zip(api_url: str) -> bytes:
    return export(api_url, ACME, ACME_KEY, "zip")[1]


def test_an_apply_short_of_time_goes_on_in_later_steps(
    stack: Any, api_url: str, tmp_path: Path, acme_zip: bytes
) -> None:
    """With no time to spare, each apply step does one checkpoint's worth and says it is not done; the
    steps together import exactly what one would."""
    target, key = empty_organization(stack, tmp_path, "Resumed")
    import_id, run_id = new_id(), new_id()
    staged_import(stack, target, import_id, run_id, acme_zip, "copy")
    runner = wiring.import_runner()
    with as_function("ImportValidateFunction"):
        assert runner.validate(target, import_id, run_id) is True
    steps, cursors = 0, []
    with as_function("ImportApplyFunction"):
        while not runner.apply(target, import_id, run_id, lambda: 0.0):
            steps += 1
            job = wiring.import_service().get(target, import_id)
            cursors.append(job.cursor)
            assert job.status is ImportStatus.IMPORTING and steps < 50
    # One step per binary (7) and per batch of records (one batch per section: 5), the last one finishing.
    assert steps == 7 + 5 - 1 and cursors == sorted(set(cursors)), cursors
    done = wiring.import_service().get(target, import_id)
    assert done.status is ImportStatus.COMPLETED
    assert {s.key: s.created for s in done.sections if s.key in ACME_COUNTS} == ACME_COUNTS
    _, copied = export(api_url, target, key, "zip")
    assert comparable(archive_files(copied, "zip")) == comparable(archive_files(acme_zip, "zip"))


def test_a_failed_apply_resumes_from_its_checkpoint(
    stack: Any, api_url: str, tmp_path: Path, acme_zip: bytes
) -> None:
    """The store fails for good in the middle of the records: the run fails the import (import_failed), a
    start resumes it without verifying and planning again, and it completes with every record once."""
    target, key = empty_organization(stack, tmp_path, "Resumed")
    import_id, run_id = new_id(), new_id()
    staged_import(stack, target, import_id, run_id, acme_zip, "copy")
    runner = wiring.import_runner()
    with as_function("ImportValidateFunction"):
        assert runner.validate(target, import_id, run_id) is True

    def failing_write(params: dict[str, Any], **_: Any) -> None:
        requests = params.get("RequestItems", {}).get(stack.physical["OrgDataTable"], [])
        if any(r["PutRequest"]["Item"]["partition"]["S"].endswith("#products") for r in requests):
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": "injected"}}, "BatchWriteItem"
            )

    # A copy writes its records 25 at a time: the products' batch fails.
    events = wiring.client("dynamodb").meta.events
    events.register("provide-client-params.dynamodb.BatchWriteItem", failing_write)
    try:
        with as_function("ImportApplyFunction"), pytest.raises(ClientError):
            runner.apply(target, import_id, run_id, lambda: 900.0)
    finally:
        events.unregister("provide-client-params.dynamodb.BatchWriteItem", failing_write)
    stopped = wiring.import_service().get(target, import_id)
    assert stopped.binaries_done == 7 and stopped.records_done == 4  # binaries, locations, brands
    with as_function("ImportFailFunction"):
        runner.fail(target, import_id, run_id, {"Error": "ValidationException", "Cause": "injected"})
    failed = wiring.import_service().get(target, import_id)
    assert (failed.status, failed.error_code) == (ImportStatus.FAILED, ImportErrorCode.IMPORT_FAILED)

    reply = start_import(api_url, target, key, import_id, dry_run=False)
    assert reply.status == 200, reply.body
    resumed = wait_for_import(api_url, target, import_id, key)
    assert resumed["status"] == "completed", resumed
    report = {s["key"]: s for s in resumed["sections"]}
    # Resumed from the checkpoint after brands: nothing before it was written twice or counted again.
    assert {name: report[name]["created"] for name in ACME_COUNTS} == ACME_COUNTS
    assert resumed["progress"]["binaries_done"] == 7 and resumed["progress"]["records_done"] == 12
    _, copied = export(api_url, target, key, "zip")
    assert comparable(archive_files(copied, "zip")) == comparable(archive_files(acme_zip, "zip"))


def test_a_run_that_fails_for_good_fails_its_import_and_a_start_resumes_it(
    stack: Any, api_url: str, tmp_path: Path, acme_zip: bytes
) -> None:
    """Through the state machine: a part of the example's 6 MiB image (uploaded in parts here) refused for
    good. The multipart upload is aborted, the Fail step fails the import (import_failed), and a start
    resumes it to completion."""
    from data_export.settings import get_settings

    from tests.credentials import as_admin
    from tests.round_trip import create_import, upload

    target, key = empty_organization(stack, tmp_path, "Resumed")
    assets = get_settings().assets_bucket
    refused: list[int] = []

    def refuse_part(params: dict[str, Any], **_: Any) -> None:
        if params.get("Bucket") == assets and params.get("Key", "").startswith(f"{target}/"):
            refused.append(params["PartNumber"])
            raise ClientError({"Error": {"Code": "InvalidRequest", "Message": "injected"}}, "UploadPart")

    job = create_import(api_url, target, key, len(acme_zip))
    upload(job, acme_zip)
    events = wiring.client("s3").meta.events
    events.register("provide-client-params.s3.UploadPart", refuse_part)
    try:
        assert start_import(api_url, target, key, job["import_id"], dry_run=False).status == 200
        # Short: without its Fail step (IAM proofs) the run would leave the import importing for good.
        failed = wait_for_import(api_url, target, job["import_id"], key, timeout=60)
    finally:
        events.unregister("provide-client-params.s3.UploadPart", refuse_part)
    assert refused, "the image was not uploaded in parts"
    assert (failed["status"], failed["error_code"]) == ("failed", "import_failed"), failed
    assert "internal error" in failed["error"] and "injected" not in failed["error"]
    with as_admin():
        left = stack.client("s3").list_multipart_uploads(Bucket=assets, Prefix=f"{target}/")
    assert not left.get("Uploads"), left.get("Uploads")

    assert start_import(api_url, target, key, job["import_id"], dry_run=False).status == 200
    resumed = wait_for_import(api_url, target, job["import_id"], key)
    assert resumed["status"] == "completed", resumed
    _, copied = export(api_url, target, key, "zip")
    assert comparable(archive_files(copied, "zip")) == comparable(archive_files(acme_zip, "zip"))
