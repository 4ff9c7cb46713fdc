"""Seeding fixtures into the stores (the session's moto server), read back with raw calls and read side."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from botocore.exceptions import ClientError
from data_export.auth import authenticate
from data_export.settings import Settings
from data_export.storage.layout import API_KEYS_BY_ORGANIZATION_INDEX, JOBS_BY_CREATED_AT_INDEX, asset_key
from data_export.storage.org_data import ApiKeyRepository, OrgDataRepository
from data_export_cli.seed import (
    FixtureError,
    generate_bytes,
    load_fixture,
    parse_fixture,
    seed_file,
    seed_file_in_subprocess,
    seed_stores,
)
from mypy_boto3_dynamodb import DynamoDBClient
from mypy_boto3_dynamodb.type_defs import (
    AttributeDefinitionTypeDef,
    KeySchemaElementTypeDef,
    WriteRequestUnionTypeDef,
)
from mypy_boto3_s3 import S3Client

EXAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "example-org.yaml"
ACME, OTHER = "eHcFM2wk4RdyYG8yMrTGbQ", "TpR7vWk3Qx9mHc2NbY5sLe"
KETTLE, YIRGACHEFFE = "3xQmTqPZcRk7YhFw2VbNsd", "ZUF6rFErzk2LMU4DvbtjDA"
SAM_LAPTOP_KEY = "csu_3rMBavmzbbadyYbqjs182nmOWm9KnPIr_4dfd0780"
SETTINGS = Settings(
    jobs_table="jobs",
    org_data_table="org-data",
    api_keys_table="api-keys",
    assets_bucket="assets",
    exports_bucket="exports",
    export_queue_url="",
)


@dataclass(frozen=True)
class Stores:
    dynamodb: DynamoDBClient
    s3: S3Client

    def seed(self, path: Path) -> Any:
        return seed_file(path, dynamodb_client=self.dynamodb, s3_client=self.s3, settings=SETTINGS)

    def items(self, table: str) -> list[dict[str, Any]]:
        pages = self.dynamodb.get_paginator("scan").paginate(TableName=table)
        return [dict(item) for page in pages for item in page["Items"]]

    def objects(self) -> dict[str, tuple[int, str]]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=SETTINGS.assets_bucket)
        return {obj["Key"]: (obj["Size"], obj["ETag"]) for page in pages for obj in page.get("Contents", [])}

    def snapshot(self) -> tuple[Any, ...]:
        def ordered(items: list[dict[str, Any]]) -> list[str]:
            return sorted(json.dumps(item, sort_keys=True) for item in items)

        return (
            ordered(self.items(SETTINGS.org_data_table)),
            ordered(self.items(SETTINGS.api_keys_table)),
            self.objects(),
        )

    def record(self, organization_id: str, section: str, record_id: str) -> dict[str, Any]:
        record = OrgDataRepository(self.dynamodb, SETTINGS.org_data_table).get_record(
            organization_id, section, record_id
        )
        assert record is not None
        return record


def _strings(*names: str) -> list[AttributeDefinitionTypeDef]:
    return [{"AttributeName": name, "AttributeType": "S"} for name in names]


def _key(hash_key: str, range_key: str | None = None) -> list[KeySchemaElementTypeDef]:
    schema: list[KeySchemaElementTypeDef] = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key is not None:
        schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return schema


def _create_stores(dynamodb: DynamoDBClient, s3: S3Client) -> None:
    """The tables and bucket as template.yaml and layout.py describe them."""
    dynamodb.create_table(
        TableName=SETTINGS.jobs_table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=_strings("organization_id", "job_id", "created_at"),
        KeySchema=_key("organization_id", "job_id"),
        LocalSecondaryIndexes=[
            {
                "IndexName": JOBS_BY_CREATED_AT_INDEX,
                "KeySchema": _key("organization_id", "created_at"),
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    dynamodb.create_table(
        TableName=SETTINGS.org_data_table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=_strings("partition", "record_id"),
        KeySchema=_key("partition", "record_id"),
    )
    dynamodb.create_table(
        TableName=SETTINGS.api_keys_table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=_strings("key_hash", "organization_id", "key_id"),
        KeySchema=_key("key_hash"),
        GlobalSecondaryIndexes=[
            {
                "IndexName": API_KEYS_BY_ORGANIZATION_INDEX,
                "KeySchema": _key("organization_id", "key_id"),
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    s3.create_bucket(Bucket=SETTINGS.assets_bucket)


@pytest.fixture
def stores(stack: Any) -> Iterator[Stores]:
    """Empty stores of this test's own on the session's moto server (an in-process ``mock_aws`` would
    reset that server's state for every other test on leaving)."""
    dynamodb, s3 = stack.client("dynamodb"), stack.client("s3")
    _create_stores(dynamodb, s3)
    yield Stores(dynamodb, s3)
    for table in (SETTINGS.jobs_table, SETTINGS.org_data_table, SETTINGS.api_keys_table):
        dynamodb.delete_table(TableName=table)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=SETTINGS.assets_bucket):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=SETTINGS.assets_bucket, Key=item["Key"])
    s3.delete_bucket(Bucket=SETTINGS.assets_bucket)


@pytest.fixture
def example_data() -> dict[str, Any]:
    data: dict[str, Any] = parse_fixture(EXAMPLE.read_bytes())
    return data


def write_fixture(folder: Path, data: dict[str, Any]) -> Path:
    path = folder / "fixture.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_seeding_the_example_writes_every_record_and_asset(stores: Stores) -> None:
    summary = stores.seed(EXAMPLE)

    assert summary.organization_ids == (ACME, OTHER)
    assert summary.records == dict(
        organization=2, members=4, brands=2, products=5, offers=3, locations=2, api_keys=5
    )
    sizes = [48213, 2048, 734003, 512000, 91234, 6291456, 120000]
    assert (summary.assets, summary.asset_bytes, summary.missing_assets) == (7, sum(sizes), 1)
    assert len(stores.items(SETTINGS.org_data_table)) == 18
    assert sorted(size for size, _ in stores.objects().values()) == sorted(sizes)

    org_data = OrgDataRepository(stores.dynamodb, SETTINGS.org_data_table)
    assert [p["id"] for p in org_data.iter_records(OTHER, "products")] == ["Wd2Nq7Hs4KcX9mTb6VpRgL"]
    assert len(list(org_data.iter_records(ACME, "products"))) == 4


def test_a_product_with_images_has_asset_refs_and_objects(stores: Stores) -> None:
    stores.seed(EXAMPLE)

    kettle = stores.record(ACME, "products", KETTLE)
    present_key = f"{ACME}/products/{KETTLE}/images/0"
    missing_key = f"{ACME}/products/{KETTLE}/images/1"
    assert kettle["images"] == [
        {
            "filename": "kettle.png",
            "content_type": "image/png",
            "asset_key": present_key,
            "size_bytes": 120000,
        },
        {"filename": "kettle-side.png", "content_type": "image/png", "asset_key": missing_key},
    ]
    assert kettle["attributes"] == {"capacity_l": 1.0, "material": "steel"}
    assert "documents" not in kettle

    obj = stores.s3.get_object(Bucket=SETTINGS.assets_bucket, Key=present_key)
    assert obj["ContentType"] == "image/png"
    assert obj["Body"].read() == generate_bytes(120000, 30)
    with pytest.raises(ClientError) as missing:
        stores.s3.head_object(Bucket=SETTINGS.assets_bucket, Key=missing_key)
    assert missing.value.response["Error"]["Code"] == "404"

    yirgacheffe = stores.record(ACME, "products", YIRGACHEFFE)
    assert [image["size_bytes"] for image in yirgacheffe["images"]] == [734003, 512000]
    assert yirgacheffe["documents"] == [
        {
            "filename": "spec sheet (2024).pdf",
            "content_type": "application/pdf",
            "asset_key": f"{ACME}/products/{YIRGACHEFFE}/documents/0",
            "size_bytes": 91234,
        }
    ]
    assert yirgacheffe["price"] == {"amount": "21.50", "currency": "CAD"}


def test_the_organization_profile_is_its_own_record(stores: Stores) -> None:
    stores.seed(EXAMPLE)

    profile = stores.record(ACME, "organization", ACME)
    assert profile["created_at"] == "2024-03-02T09:15:00+00:00"
    assert profile["settings"] == {"default_currency": "CAD", "locale": "en-CA"}
    assert profile["logo"] == {
        "filename": "acme-logo.png",
        "content_type": "image/png",
        "asset_key": f"{ACME}/organization/{ACME}/logo/0",
        "size_bytes": 48213,
    }
    assert stores.record(OTHER, "organization", OTHER)["name"] == "Other Org Ltd"


def test_api_keys_are_stored_by_hash_with_their_metadata(stores: Stores) -> None:
    stores.seed(EXAMPLE)

    keys = ApiKeyRepository(stores.dynamodb, SETTINGS.api_keys_table)
    key_hash = hashlib.sha256(SAM_LAPTOP_KEY.encode()).hexdigest()
    response = stores.dynamodb.get_item(TableName=SETTINGS.api_keys_table, Key={"key_hash": {"S": key_hash}})
    item = response["Item"]
    auth_attributes = ("organization_id", "key_id", "prefix", "member_id", "is_active")
    assert {name: item[name] for name in auth_attributes} == {
        "organization_id": {"S": ACME},
        "key_id": {"S": "aP8N8QqE5fkN7bWVpvADMK"},
        "prefix": {"S": "csu"},
        "member_id": {"S": "zvfGEbias66aDjznrZTGk7"},
        "is_active": {"BOOL": True},
    }
    assert json.loads(item["record"]["S"]) == {
        "id": "aP8N8QqE5fkN7bWVpvADMK",
        "name": "sam laptop",
        "member_id": "zvfGEbias66aDjznrZTGk7",
        "created_at": "2025-02-11T08:00:00+00:00",
        "is_active": True,
    }

    metadata = {record["id"]: record for record in keys.iter_metadata(ACME)}
    assert len(metadata) == 4
    assert metadata["6qj4TkYorGtXVGNupZgCY5"]["is_active"] is False
    assert metadata["naHAdwQ5fi9ejH2jpfnCJ8"]["rate_limit_per_minute"] == 60

    # The export's auth reads what the seed wrote: the csu key acts with its member's role.
    members = OrgDataRepository(stores.dynamodb, SETTINGS.org_data_table)
    principal = authenticate(SAM_LAPTOP_KEY, keys, members, datetime.now(UTC))
    assert (principal.organization_id, principal.member_id, principal.role) == (
        ACME,
        "zvfGEbias66aDjznrZTGk7",
        "manager",
    )


def test_raw_keys_appear_nowhere_in_the_tables(stores: Stores) -> None:
    stores.seed(EXAMPLE)

    raw_keys = [key.key for org in load_fixture(EXAMPLE).organizations for key in org.api_keys]
    stored = json.dumps([stores.items(SETTINGS.org_data_table), stores.items(SETTINGS.api_keys_table)])
    assert len(raw_keys) == 5
    for raw_key in raw_keys:
        body = raw_key.split("_")[1]
        assert body not in stored
        assert hashlib.sha256(raw_key.encode()).hexdigest() in stored  # the hash, as the table key only
    for item in stores.items(SETTINGS.api_keys_table):
        assert item["key_hash"]["S"] not in item["record"]["S"]


def test_seeding_twice_gives_the_same_state(stores: Stores) -> None:
    first = stores.seed(EXAMPLE)
    state = stores.snapshot()
    second = stores.seed(EXAMPLE)
    assert second == first
    assert stores.snapshot() == state


def test_extra_keys_and_file_binaries_are_stored_verbatim(
    stores: Stores, tmp_path: Path, example_data: dict[str, Any]
) -> None:
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "logo.svg").write_bytes(b"<svg/>")
    brand = example_data["organizations"][0]["brands"][1]
    logo_name = "Gear & Co « logo ».svg"
    brand["logo"] = {"filename": logo_name, "content_type": "image/svg+xml", "file": "art/logo.svg"}
    brand["loyalty"] = {"tier": "gold", "points": [1, 2.5, None], "since": "2020-01-01"}

    summary = stores.seed(write_fixture(tmp_path, example_data))

    stored = stores.record(ACME, "brands", brand["id"])
    key = f"{ACME}/brands/{brand['id']}/logo/0"
    assert stored["loyalty"] == brand["loyalty"]
    assert stored["logo"] == {
        "filename": logo_name,
        "content_type": "image/svg+xml",
        "asset_key": key,
        "size_bytes": 6,
    }
    assert stores.s3.get_object(Bucket=SETTINGS.assets_bucket, Key=key)["Body"].read() == b"<svg/>"
    assert summary.assets == 8


def test_a_missing_asset_deletes_an_object_left_by_an_earlier_seed(
    stores: Stores, tmp_path: Path, example_data: dict[str, Any]
) -> None:
    stores.seed(EXAMPLE)
    side_image = example_data["organizations"][0]["products"][2]["images"][1]
    del side_image["missing"]
    side_image["generate"] = {"size_bytes": 10, "seed": 31}
    stores.seed(write_fixture(tmp_path, example_data))
    assert f"{ACME}/products/{KETTLE}/images/1" in stores.objects()

    stores.seed(EXAMPLE)
    assert f"{ACME}/products/{KETTLE}/images/1" not in stores.objects()


def test_an_invalid_fixture_raises_before_any_write(
    stores: Stores, tmp_path: Path, example_data: dict[str, Any]
) -> None:
    broken = copy.deepcopy(example_data)
    broken["organizations"][1]["products"][0]["gtin"] = "00012345678906"

    with pytest.raises(FixtureError, match=r"organizations\[1\]\.products\[0\]\.gtin"):
        stores.seed(write_fixture(tmp_path, broken))

    assert stores.items(SETTINGS.org_data_table) == []
    assert stores.items(SETTINGS.api_keys_table) == []
    assert stores.objects() == {}


class ThrottledDynamoDB:
    """The real (moto) client, except that its first batch writes process one request and return the rest."""

    def __init__(self, client: DynamoDBClient, throttled_calls: int) -> None:
        self.client = client
        self.throttled_calls = throttled_calls
        self.calls = 0

    def batch_write_item(
        self, *, RequestItems: dict[str, list[WriteRequestUnionTypeDef]]
    ) -> Mapping[str, Any]:
        self.calls += 1
        if self.throttled_calls == 0:
            return self.client.batch_write_item(RequestItems=RequestItems)
        self.throttled_calls -= 1
        [(table, requests)] = RequestItems.items()
        self.client.batch_write_item(RequestItems={table: requests[:1]})
        return {"UnprocessedItems": {table: requests[1:]}}


def test_unprocessed_items_are_retried_until_written(stores: Stores) -> None:
    throttled = ThrottledDynamoDB(stores.dynamodb, throttled_calls=3)

    seed_stores(
        load_fixture(EXAMPLE),
        dynamodb_client=cast(DynamoDBClient, throttled),
        s3_client=stores.s3,
        settings=SETTINGS,
    )

    assert throttled.throttled_calls == 0
    assert throttled.calls == 2 + 3  # one batch per table, plus a retry per throttled call
    assert len(stores.items(SETTINGS.org_data_table)) == 18
    assert len(stores.items(SETTINGS.api_keys_table)) == 5


def test_seeding_in_parallel_writes_every_object_and_item_once(stores: Stores, tmp_path: Path) -> None:
    from data_export_cli.synthetic import Shape, write_fixture

    shape = Shape(products=120, images=3, offers=30, label="parallel")
    fixture = load_fixture(write_fixture(tmp_path / "parallel.yaml", shape))
    assert getattr(stores.s3.meta.config, "max_pool_connections", 0) >= 8  # so that 8 threads run

    summary = seed_stores(
        fixture, dynamodb_client=stores.dynamodb, s3_client=stores.s3, settings=SETTINGS, threads=8
    )

    assert summary.assets == 360
    assert summary.asset_bytes == shape.image_total_bytes
    objects = stores.objects()
    assert len(objects) == 360
    product = fixture.organizations[0].products[77]
    assert product.images is not None
    for index, image in enumerate(product.images):
        key = asset_key(shape.organization_id, "products", product.id, "images", index)
        body = stores.s3.get_object(Bucket=SETTINGS.assets_bucket, Key=key)["Body"].read()
        assert body == fixture.binary_bytes(image)
    assert len(stores.items(SETTINGS.org_data_table)) == shape.records - 2  # api keys live in their table
    assert len(stores.items(SETTINGS.api_keys_table)) == 2
    before = stores.snapshot()
    seed_stores(fixture, dynamodb_client=stores.dynamodb, s3_client=stores.s3, settings=SETTINGS, threads=1)
    assert stores.snapshot() == before


class FailingS3:
    """The real (moto) client, with its connection pool, except that one put fails."""

    def __init__(self, client: S3Client, fail_at: int) -> None:
        self.client = client
        self.meta = client.meta
        self.fail_at = fail_at
        self.puts = 0

    def put_object(self, **kwargs: Any) -> Any:
        self.puts += 1
        if self.puts == self.fail_at:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "PutObject")
        return self.client.put_object(**kwargs)

    def delete_object(self, **kwargs: Any) -> Any:
        return self.client.delete_object(**kwargs)


def test_a_failed_put_stops_parallel_seeding_before_any_record(stores: Stores, tmp_path: Path) -> None:
    from data_export_cli.synthetic import Shape, write_fixture

    fixture = load_fixture(write_fixture(tmp_path / "f.yaml", Shape(products=400, images=2, label="fail")))
    failing = FailingS3(stores.s3, fail_at=5)

    with pytest.raises(ClientError, match="boom"):
        seed_stores(
            fixture,
            dynamodb_client=stores.dynamodb,
            s3_client=cast(S3Client, failing),
            settings=SETTINGS,
            threads=4,
        )

    assert failing.puts < 800  # what had not started was canceled
    assert stores.items(SETTINGS.org_data_table) == []
    assert stores.items(SETTINGS.api_keys_table) == []


def test_seeding_in_a_subprocess_loads_the_same_as_in_this_one(stores: Stores) -> None:
    environment = {
        **os.environ,  # the session stack's endpoint and admin keys
        "ORG_DATA_TABLE_NAME": SETTINGS.org_data_table,
        "API_KEYS_TABLE_NAME": SETTINGS.api_keys_table,
        "ASSETS_BUCKET_NAME": SETTINGS.assets_bucket,
        "JOBS_TABLE_NAME": SETTINGS.jobs_table,
        "EXPORTS_BUCKET_NAME": SETTINGS.exports_bucket,
        "RATE_LIMITS_TABLE_NAME": "rate-limits",
    }

    summary = seed_file_in_subprocess(EXAMPLE, environment=environment)

    assert summary == stores.seed(EXAMPLE)  # and seeding again here changes nothing
    assert summary.organization_ids == (ACME, OTHER)
    assert len(stores.items(SETTINGS.org_data_table)) == 18
    assert len(stores.items(SETTINGS.api_keys_table)) == 5


def test_an_invalid_fixture_fails_in_the_subprocess_as_here(
    tmp_path: Path, example_data: dict[str, Any]
) -> None:
    broken = copy.deepcopy(example_data)
    broken["organizations"][0]["products"][1]["gtin"] = "00628176543223"

    with pytest.raises(FixtureError, match=r"organizations\[0\]\.products\[1\]\.gtin: .*check digit"):
        seed_file_in_subprocess(write_fixture(tmp_path, broken), environment={})
