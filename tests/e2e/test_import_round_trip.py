"""Restore over HTTP against the local stack (IAM and limits enforced): export the example organization,
import the archive into an empty organization (dry run, then for real, then again), export that one, and
compare; restore missing records and binaries back into the organization they came from; the API's errors.

The stack uploads archives over 1 MiB in 5 MiB parts (tests/conftest.py), so the example's archive (about
7.8 MB) goes through the multipart path and the hostile ones through the single PUT."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from data_export.models import ImportJobResponse

from tests.archive_checks import ACME, archive_files
from tests.e2e.client import call
from tests.round_trip import (
    ACME_COUNTS,
    ACME_KEY,
    IMPORT_BASE,
    comparable,
    create_import,
    empty_organization,
    import_archive,
    records_of,
    sections,
    start_import,
    upload,
    wait_for_import,
)
from tests.security.helpers import export, new_key, organization, seed

ACME_BINARIES = {"organization": 1, "brands": 1, "products": 5}


@pytest.fixture(scope="module", params=["zip", "tar.gz"])
def acme_archive(request: pytest.FixtureRequest, api_url: str) -> tuple[str, bytes]:
    _, data = export(api_url, ACME, ACME_KEY, request.param)
    return request.param, data


def test_copy_round_trip(stack: Any, api_url: str, tmp_path: Path, acme_archive: tuple[str, bytes]) -> None:
    archive_format, data = acme_archive
    target, key = empty_organization(stack, tmp_path)
    _, before = export(api_url, target, key, archive_format)

    dry = import_archive(api_url, target, key, data, dry_run=True)
    assert dry["status"] == "completed" and dry["dry_run"] is True, dry
    ImportJobResponse.model_validate(dry)
    assert dry["archive_format"] == archive_format and dry["source_organization_id"] == ACME
    report = sections(dry)
    assert {key: report[key]["would_create"] for key in ACME_COUNTS} == ACME_COUNTS
    assert all(report[key]["created"] == 0 for key in ACME_COUNTS)
    assert report["members"]["records"] == 3 and "never imported" in report["members"]["skipped_reason"]
    assert report["api_keys"]["records"] == 4 and "never imported" in report["api_keys"]["skipped_reason"]
    # The profile: the target keeps its name and slug; its empty fields would be filled in.
    assert report["organization"]["merged_fields"] == [
        "country",
        "description",
        "logo",
        "settings",
        "website",
    ]
    _, after_dry_run = export(api_url, target, key, archive_format)
    assert comparable(archive_files(after_dry_run, archive_format)) == comparable(
        archive_files(before, archive_format)
    )

    applied = import_archive(api_url, target, key, data)
    assert applied["status"] == "completed" and applied["dry_run"] is False, applied
    order = ["validating", "importing", "completed"]
    assert applied["_statuses_seen"] == sorted(applied["_statuses_seen"], key=order.index), applied
    report = sections(applied)
    assert {key: report[key]["created"] for key in ACME_COUNTS} == ACME_COUNTS
    assert {key: report[key]["binaries_restored"] for key in ACME_BINARIES} == ACME_BINARIES
    assert applied["progress"]["percent"] == 100
    assert applied["progress"]["binaries_done"] == applied["progress"]["binaries_total"] == 7

    _, copied = export(api_url, target, key, archive_format)
    source_files, copied_files = archive_files(data, archive_format), archive_files(copied, archive_format)
    assert comparable(copied_files) == comparable(source_files)
    source_ids = {rid for section in records_of(source_files).values() for rid in section}
    copied_records = records_of(copied_files)
    assert not source_ids & {rid for key in ACME_COUNTS for rid in copied_records.get(key, {})}
    profile = copied_records["organization"][target]
    assert profile["name"] == "Empty" and profile["website"] == "https://acme-coffee.example"
    top = next(iter(copied_files)).split("/")[0]
    source_top = next(iter(source_files)).split("/")[0]
    logo = hashlib.sha256(copied_files[f"{top}/{profile['logo']['file']}"]).hexdigest()
    source_logo = records_of(source_files)["organization"][ACME]["logo"]["file"]
    assert logo == hashlib.sha256(source_files[f"{source_top}/{source_logo}"]).hexdigest()

    again = import_archive(api_url, target, key, data)
    assert again["status"] == "completed", again
    report = sections(again)
    assert {key: report[key]["created"] for key in ACME_COUNTS} == dict.fromkeys(ACME_COUNTS, 0)
    assert {key: report[key]["skipped_existing"] for key in ACME_COUNTS} == ACME_COUNTS
    assert report["organization"]["skipped_existing"] == 1
    _, copied_again = export(api_url, target, key, archive_format)
    assert comparable(archive_files(copied_again, archive_format)) == comparable(copied_files)


def test_restore_recreates_only_what_is_missing(stack: Any, api_url: str, tmp_path: Path) -> None:
    """An organization exported, then losing a product and an image of another: the restore brings back
    exactly those, and leaves a changed record alone."""
    from data_export.settings import get_settings

    key = new_key()
    brand = {"id": _id(), "name": "Brand", "created_at": "2025-01-01T00:00:00+00:00"}
    image = {"filename": "a.jpg", "content_type": "image/jpeg", "generate": {"size_bytes": 3000, "seed": 7}}
    products = [
        {
            "id": _id(),
            "name": f"Product {n}",
            "gtin": "00628176543215",
            "brand_id": brand["id"],
            "created_at": "2025-01-01T00:00:00+00:00",
            "images": [image],
        }
        for n in range(3)
    ]
    source = organization("Restored", key, brands=[brand], products=products)
    seed(stack, tmp_path, source)
    organization_id = source["organization"]["id"]
    _, data = export(api_url, organization_id, key, "zip")

    settings = get_settings()
    dynamodb, s3 = stack.client("dynamodb"), stack.client("s3")
    gone, changed, lost_image = products[0]["id"], products[1]["id"], products[2]["id"]
    dynamodb.delete_item(
        TableName=settings.org_data_table,
        Key={"partition": {"S": f"{organization_id}#products"}, "record_id": {"S": gone}},
    )
    stored = f"{organization_id}/products/{lost_image}/images/0"
    s3.delete_object(Bucket=settings.assets_bucket, Key=stored)
    changed_item = dynamodb.get_item(
        TableName=settings.org_data_table,
        Key={"partition": {"S": f"{organization_id}#products"}, "record_id": {"S": changed}},
    )["Item"]
    changed_item["record"]["S"] = changed_item["record"]["S"].replace("Product 1", "Renamed")
    dynamodb.put_item(TableName=settings.org_data_table, Item=changed_item)

    restored = import_archive(api_url, organization_id, key, data, mode="restore")
    assert restored["status"] == "completed", restored
    report = sections(restored)["products"]
    assert (report["created"], report["skipped_existing"]) == (1, 2), report
    assert report["binaries_restored"] == 2  # the deleted product's image, and the lost one
    _, after = export(api_url, organization_id, key, "zip")
    records = records_of(archive_files(after, "zip"))["products"]
    assert records[gone]["name"] == "Product 0" and records[changed]["name"] == "Renamed"
    assert "missing" not in records[lost_image]["images"][0]
    assert s3.head_object(Bucket=settings.assets_bucket, Key=stored)["ContentLength"] == 3000


def test_restore_into_another_organization_is_refused(
    stack: Any, api_url: str, tmp_path: Path, acme_archive: tuple[str, bytes]
) -> None:
    target, key = empty_organization(stack, tmp_path)
    job = import_archive(api_url, target, key, acme_archive[1], mode="restore")
    assert job["status"] == "failed" and job["error_code"] == "archive_refused", job
    assert [problem["code"] for problem in job["problems"]] == ["wrong_organization"]


def test_upload_resumes_with_only_the_missing_parts(api_url: str, acme_archive: tuple[str, bytes]) -> None:
    """A multipart upload interrupted after its first part: /upload answers URLs of the others only, and a
    start before they are there is refused with the parts missing."""
    _, data = acme_archive
    job = create_import(api_url, ACME, ACME_KEY, len(data), mode="restore")
    target = job["upload"]
    assert target["url"] is None and len(target["parts"]) == 2, target
    upload(job, data, parts=[1])
    early = start_import(api_url, ACME, ACME_KEY, job["import_id"], dry_run=True)
    assert early.status == 409 and early.json()["error"] == "upload_incomplete", early.body
    renewed = call("POST", f"{api_url}{IMPORT_BASE}/{ACME}/{job['import_id']}/upload", ACME_KEY).json()
    assert renewed["upload"]["parts_uploaded"] == [1]
    assert [part["part_number"] for part in renewed["upload"]["parts"]] == [2]
    upload(renewed, data)
    assert start_import(api_url, ACME, ACME_KEY, job["import_id"], dry_run=True).status == 200
    done = wait_for_import(api_url, ACME, job["import_id"], ACME_KEY)
    assert done["status"] == "completed" and sections(done)["products"]["skipped_existing"] == 4, done


def test_import_api_refusals(stack: Any, api_url: str) -> None:
    from data_export.settings import get_settings

    from tests.credentials import as_admin

    cpk = "cpk_pfEwTjhlN8oFsHWVeOJDnKYSxw9YD6zk_c2b4a42f"
    assert call("POST", f"{api_url}{IMPORT_BASE}/{ACME}?size_bytes=10", cpk).status == 403
    assert call("POST", f"{api_url}{IMPORT_BASE}/{ACME}?size_bytes=10").status == 401
    bad_mode = call("POST", f"{api_url}{IMPORT_BASE}/{ACME}?size_bytes=10&mode=merge", ACME_KEY)
    assert bad_mode.status == 422 and bad_mode.json()["error"] == "validation_error"
    assert call("POST", f"{api_url}{IMPORT_BASE}/{ACME}?size_bytes=0", ACME_KEY).status == 422
    overwrite_copy = call("POST", f"{api_url}{IMPORT_BASE}/{ACME}?size_bytes=10&overwrite=true", ACME_KEY)
    assert overwrite_copy.status == 400 and "restore" in overwrite_copy.json()["message"]
    unknown = call("GET", f"{api_url}{IMPORT_BASE}/{ACME}/{_id()}", ACME_KEY)
    assert unknown.status == 404 and unknown.json()["error"] == "not_found"
    job = create_import(api_url, ACME, ACME_KEY, 10)
    not_uploaded = start_import(api_url, ACME, ACME_KEY, job["import_id"], dry_run=True)
    assert not_uploaded.status == 409 and not_uploaded.json()["error"] == "not_uploaded"
    canceled = call("DELETE", f"{api_url}{IMPORT_BASE}/{ACME}/{job['import_id']}", ACME_KEY).json()
    assert canceled["status"] == "failed" and canceled["error_code"] == "canceled"
    # A multipart upload canceled before it was completed: aborted, its parts gone.
    multipart = create_import(api_url, ACME, ACME_KEY, 2 * 1024 * 1024)
    assert multipart["upload"]["parts"], multipart["upload"]
    call("DELETE", f"{api_url}{IMPORT_BASE}/{ACME}/{multipart['import_id']}", ACME_KEY)
    with as_admin():
        uploads = stack.client("s3").list_multipart_uploads(
            Bucket=get_settings().exports_bucket, Prefix=f"imports/{ACME}/{multipart['import_id']}/"
        )
    assert not uploads.get("Uploads"), uploads
    listed = call("GET", f"{api_url}{IMPORT_BASE}/{ACME}?limit=100", ACME_KEY).json()
    assert job["import_id"] in [item["import_id"] for item in listed["imports"]]


def _id() -> str:
    from data_export.ids import new_id

    return new_id()


def test_finished_imports_are_announced_on_the_event_bus(
    stack: Any, api_url: str, tmp_path: Path, acme_archive: tuple[str, bytes]
) -> None:
    import json
    import time

    target, key = empty_organization(stack, tmp_path)
    events, sqs = stack.client("events"), stack.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"import-events-{_id()}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    bus, rule = stack.physical["ExportEventBus"], f"imports-{_id()}"
    pattern = {"source": ["data-export"], "detail": {"organization_id": [target]}}
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])

    dry = import_archive(api_url, target, key, acme_archive[1], dry_run=True)
    canceled = create_import(api_url, target, key, 10)
    call("DELETE", f"{api_url}{IMPORT_BASE}/{target}/{canceled['import_id']}", key)

    received: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 30
    while len(received) < 2 and time.monotonic() < deadline:
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in reply.get("Messages", []):
            event = json.loads(message["Body"])
            received[event["detail"]["import_id"]] = event
    assert set(received) == {dry["import_id"], canceled["import_id"]}
    done = received[dry["import_id"]]
    assert done["detail-type"] == "Import Completed" and done["detail"]["dry_run"] is True
    assert done["detail"]["source_organization_id"] == ACME
    failed = received[canceled["import_id"]]
    assert failed["detail-type"] == "Import Failed" and failed["detail"]["error_code"] == "canceled"
