"""The platform's own stores: `data-export local serve` with the three store parameters set (a copy of
template.yaml whose defaults name them, as a deploy's parameter overrides would) exports from the stores
of those names, under IAM enforced as AWS enforces it: every grant followed the parameters.

The platform's stores exist on AWS; locally nothing else would create them, so the local stack creates
them under the given names (template.yaml: ``Metadata.LocalStack.ExistingNameParameter`` of the demo
stores, whose Condition is false) and seeds them; the demo stores of the stack's own names do not exist."""

from __future__ import annotations

import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_FIXTURE
from tests.e2e.client import BASE, call, wait_for_job
from tests.serve import local_serve

ORGANIZATION = "eHcFM2wk4RdyYG8yMrTGbQ"
OWNER_KEY = "csb_uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo_b5b88299"
STORES = {
    "OrgDataTableName": "platform-org-data",
    "ApiKeysTableName": "platform-api-keys",
    "AssetsBucketName": "platform-assets",
}


def template_with_the_platforms_stores(path: Path) -> Path:
    from data_export_cli.template import load_template, with_parameters, write_template

    return write_template(with_parameters(load_template(), STORES), path)


def admin_client(service: str, ready: dict[str, Any]) -> Any:
    """A client of the stack's moto as its admin user (the keys `serve` prints)."""
    import boto3

    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=ready["aws_endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id=ready["aws_access_key_id"],
        aws_secret_access_key=ready["aws_secret_access_key"],
    )


@pytest.mark.slow
def test_an_export_reads_the_platforms_stores_named_by_the_parameters(tmp_path: Path) -> None:
    template = template_with_the_platforms_stores(tmp_path / "template.yaml")
    log = tmp_path / "serve.log"
    with local_serve(template, EXAMPLE_FIXTURE, log) as ready:
        # The stores are the platform's names; no demo store of the stack's own names exists.
        tables = admin_client("dynamodb", ready).list_tables()["TableNames"]
        buckets = {bucket["Name"] for bucket in admin_client("s3", ready).list_buckets()["Buckets"]}
        assert {"platform-org-data", "platform-api-keys"} <= set(tables), tables
        assert "platform-assets" in buckets, buckets
        assert not {"data-export-OrgDataTable", "data-export-ApiKeysTable"} & set(tables), tables
        assert "data-export-assetsbucket" not in buckets, buckets
        # The seed went to them: the example's binaries are in the platform's bucket.
        assert admin_client("s3", ready).list_objects_v2(Bucket="platform-assets")["KeyCount"] > 0

        api_url = ready["api_url"]
        started = call("POST", f"{api_url}{BASE}/{ORGANIZATION}?archive_format=zip", OWNER_KEY)
        assert started.status == 200, started.body  # the key was read from platform-api-keys
        job = wait_for_job(api_url, ORGANIZATION, started.json()["job_id"], OWNER_KEY, timeout=240)
        assert job["status"] == "completed", job
        sections = {section["key"]: section for section in job["sections"]}
        assert sections["api_keys"]["record_count"] > 0  # the by_organization index of platform-api-keys
        assert sections["products"]["binary_count"] > 0  # binaries from platform-assets
        download = call("GET", f"{api_url}{BASE}/{ORGANIZATION}/{job['job_id']}/download", OWNER_KEY)
        assert download.status == 200, download.status  # urllib followed the redirect to S3
        names = zipfile.ZipFile(BytesIO(download.body)).namelist()
        assert any("/products/" in name and "/images/" in name for name in names), names
    text = log.read_text(encoding="utf-8")
    assert "AccessDenied" not in text, [line for line in text.splitlines() if "AccessDenied" in line][:5]
