"""One organization's export never carries another's files, on the local stack and by both build paths.

Organization A's product names, as its images, B's object and keys that climb from A's prefix into B's
(records and objects written straight into the stores, as storage/layout.py lays them out). A's archive
holds its own image and not one byte of B's; the others are refused: never read, marked ``refused: true`` in
the record, listed in the manifest with their reason and named in the section's error."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
import urllib.request
from typing import Any

import jsonschema
import pytest
import yaml
from data_export import wiring
from data_export.export.dispatch import Dispatch
from data_export.ids import new_id
from data_export.jobs import Job
from data_export.models import ArchiveFormat, JobStatus
from data_export.settings import get_settings
from data_export.storage.layout import asset_key, asset_ref, partition_key
from data_export.storage.objects import Asset

from tests.archive_checks import MANIFEST_SCHEMA, archive_files
from tests.credentials import as_function
from tests.jobs import MIB, chunking_dispatcher, create_job


class RecordingAssets:
    """The real asset store, every key it is asked for recorded."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.keys: list[str] = []
        self._lock = threading.Lock()  # reads run ahead on several threads

    def open(self, key: str) -> Asset | None:
        with self._lock:
            self.keys.append(key)
        return self.real.open(key)  # type: ignore[no-any-return]


def put_record(organization_id: str, section: str, record: dict[str, Any]) -> None:
    wiring.client("dynamodb").put_item(
        TableName=get_settings().org_data_table,
        Item={
            "partition": {"S": partition_key(organization_id, section)},
            "record_id": {"S": record["id"]},
            "record": {"S": json.dumps(record)},
        },
    )


def put_asset(key: str, body: bytes) -> None:
    wiring.client("s3").put_object(Bucket=get_settings().assets_bucket, Key=key, Body=body)


@pytest.fixture(scope="module")
def organizations(stack: Any) -> dict[str, Any]:
    a, b = new_id(), new_id()
    a_product, b_product = new_id(), new_id()
    own_key = asset_key(a, "products", a_product, "images", 0)
    b_key = asset_key(b, "products", b_product, "images", 0)
    secret = b"B's confidential drawing " + hashlib.sha256(b.encode()).hexdigest().encode() * 2000
    own = b"A's own image " + hashlib.sha256(a.encode()).hexdigest().encode() * 100
    climbs = [
        f"{a}/products/{a_product}/images/../../../../{b_key}",
        f"{a}/../{b_key}",
        f"{a}/%2e%2e/{b_key}",
        f"{a}\\..\\{b_key}",
    ]
    put_asset(own_key, own)
    put_asset(b_key, secret)
    for key in climbs:  # S3 keeps such keys literally: objects under them exist too, with B's bytes
        put_asset(key, secret)
    for organization_id, name in ((a, "Org A"), (b, "Org B")):
        put_record(organization_id, "organization", {"id": organization_id, "name": name, "slug": name})
    b_image = asset_ref("b.png", "image/png", b_key, len(secret))
    put_record(b, "products", {"id": b_product, "name": "B's product", "images": [b_image]})
    images = [
        asset_ref("own.png", "image/png", own_key, len(own)),
        asset_ref("borrowed.png", "image/png", b_key, len(secret)),
        *(asset_ref(f"climb-{i}.png", "image/png", key, len(secret)) for i, key in enumerate(climbs)),
    ]
    put_record(a, "products", {"id": a_product, "name": "A's product", "images": images})
    put_record(
        a,
        "brands",
        {"id": new_id(), "name": "A's brand", "logo": asset_ref("logo.png", "image/png", b_key, len(secret))},
    )
    return {
        "a": a,
        "b": b,
        "a_product": a_product,
        "own": own,
        "secret": secret,
        "b_keys": {b_key, *climbs},
        "climbs": len(climbs),
    }


def download(job: Job) -> bytes:
    with as_function("GetExportFunction"):
        url = wiring.export_service().describe(job).download_url
    assert url is not None
    with urllib.request.urlopen(url, timeout=60) as response:
        return bytes(response.read())


def build_fast(organization_id: str, archive_format: ArchiveFormat) -> tuple[Job, list[str]]:
    recording = RecordingAssets(wiring.export_builder().assets)
    builder = dataclasses.replace(wiring.export_builder(), assets=recording)
    job_id = create_job(organization_id, archive_format).job_id
    with as_function("ExportWorkerFunction"):
        job = builder.build(organization_id, job_id)
    assert job is not None
    return job, recording.keys


def build_chunked(
    stack: Any, organization_id: str, archive_format: ArchiveFormat, monkeypatch: pytest.MonkeyPatch
) -> tuple[Job, list[str]]:
    chunked = wiring.chunked_export()
    recording = RecordingAssets(chunked.assets)
    monkeypatch.setattr(chunked, "assets", recording)
    job = create_job(organization_id, archive_format)
    dispatcher = chunking_dispatcher(chunk_target_bytes=1 * MIB, chunk_max_records=1)
    with as_function("ExportWorkerFunction"):
        assert dispatcher.dispatch(organization_id, job.job_id) is Dispatch.STARTED
    sfn = stack.client("stepfunctions")
    arn = f"{stack.physical['ExportStateMachine'].replace(':stateMachine:', ':execution:')}:{job.job_id}"
    deadline = time.monotonic() + 180
    while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution still running"
        time.sleep(0.2)
    assert execution["status"] == "SUCCEEDED", execution
    stored = wiring.export_service().get(organization_id, job.job_id)
    assert stored.units_total >= 2  # brands and products in units of their own
    return stored, recording.keys


@pytest.mark.parametrize("archive_format", list(ArchiveFormat))
@pytest.mark.parametrize("path", ["fast", "chunked"])
def test_an_export_never_carries_another_organizations_asset(
    stack: Any,
    organizations: dict[str, Any],
    path: str,
    archive_format: ArchiveFormat,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = organizations["a"]
    if path == "fast":
        job, reads = build_fast(a, archive_format)
    else:
        job, reads = build_chunked(stack, a, archive_format, monkeypatch)
    assert job.status is JobStatus.COMPLETED, job.error

    # Never read, not even ahead: the store was not asked for any of B's keys.
    assert not set(reads) & organizations["b_keys"]
    files = archive_files(download(job), archive_format.value)
    blob = b"".join(files.values())
    secret = organizations["secret"]
    assert secret[:40] not in blob and secret[-40:] not in blob
    assert organizations["b"].encode() not in blob  # not even the key that named it

    top = job.output_filename.removesuffix("." + archive_format.extension)
    product_id = organizations["a_product"]
    images = yaml.safe_load(files[f"{top}/products/{product_id}.yaml"])["images"]
    assert files[f"{top}/{images[0]['file']}"] == organizations["own"]
    assert images[1:] == [
        {"filename": name, "content_type": "image/png", "missing": True, "refused": True}
        for name in ["borrowed.png", *(f"climb-{i}.png" for i in range(organizations["climbs"]))]
    ]

    manifest = yaml.safe_load(files[f"{top}/manifest.yaml"])
    jsonschema.Draft202012Validator(json.loads(MANIFEST_SCHEMA.read_text())).validate(manifest)
    refused = [m for m in manifest["missing_assets"] if m.get("refused")]
    reasons = {(m["section"], m["filename"]): m["reason"] for m in refused}
    assert reasons == {
        ("brands", "logo.png"): "outside_organization",
        ("products", "borrowed.png"): "outside_organization",
        **{("products", f"climb-{i}.png"): "unsafe_key" for i in range(organizations["climbs"])},
    }
    errors = {section["key"]: section["error"] for section in manifest["sections"]}
    assert errors["products"] is not None and "5 asset reference(s) refused" in errors["products"]
    assert errors["brands"] is not None and "1 asset reference(s) refused" in errors["brands"]
    counts = {section["key"]: section["binary_count"] for section in manifest["sections"]}
    assert counts["products"] == 1 and counts["brands"] == 0
