"""strict_aws against a real moto server over HTTP: each enforced call allowed on the granted resource and
refused on another, with the errors boto3 sees from AWS, the Denial callback and the log line."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from data_export_cli import strict_aws
from data_export_cli.lambda_service import enable_stepfunctions_execution
from data_export_cli.strict_aws import Denial, Grant
from moto.core.authorization import ActionAuthenticatorMixin
from moto.server import ThreadedMotoServer
from moto.sts.models import sts_backends

ACCOUNT = "123456789012"
REGION = "us-east-1"
UID = uuid.uuid4().hex[:8]  # moto's backends are the process's: names of this module's own
TABLE_A, TABLE_B = f"sa-a-{UID}", f"sa-b-{UID}"
BUS_A, BUS_B = f"sa-bus-a-{UID}", f"sa-bus-b-{UID}"
SM_A, SM_B = f"sa-sm-a-{UID}", f"sa-sm-b-{UID}"
QUEUE_A, QUEUE_B = f"sa-q-a-{UID}", f"sa-q-b-{UID}"
BUCKET = f"sa-bucket-{UID}"
WORKER, READER = f"sa-worker-{UID}", f"sa-reader-{UID}"
ROOT_TRUST, ROLE_TRUST, SERVICE_TRUST, MIXED = (
    f"sa-root-trust-{UID}",
    f"sa-role-trust-{UID}",
    f"sa-service-trust-{UID}",
    f"sa-mixed-{UID}",
)


def table_arn(name: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"


def state_machine_arn(name: str) -> str:
    return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"


def bus_arn(name: str) -> str:
    return f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}"


def role_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


def session_arn(role: str) -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/test"


def object_arn(key: str) -> str:
    return f"arn:aws:s3:::{BUCKET}/{key}"


def trust(principal: dict[str, str]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}],
        }
    )


def allow(*statements: tuple[list[str], list[str]]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": actions, "Resource": resources}
                for actions, resources in statements
            ],
        }
    )


WORKER_POLICY = allow(
    (["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"], [table_arn(TABLE_A)]),
    (["dynamodb:BatchWriteItem"], [table_arn(TABLE_A)]),
    (["dynamodb:Query"], [f"{table_arn(TABLE_A)}/index/by_x"]),
    (["events:PutEvents"], [bus_arn(BUS_A)]),
    (
        ["states:StartExecution", "states:DescribeStateMachine", "states:ListExecutions"],
        [state_machine_arn(SM_A)],
    ),
    (
        ["states:DescribeExecution", "states:StopExecution"],
        [f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{SM_A}:*"],
    ),
    (
        ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
        [object_arn("exports/*")],
    ),
    (["s3:ListBucket"], [f"arn:aws:s3:::{BUCKET}"]),
    (["sqs:SendMessage"], [f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE_A}"]),
)


def credentials(access_key_id: str, secret: str, token: str | None = None) -> dict[str, Any]:
    return {"aws_access_key_id": access_key_id, "aws_secret_access_key": secret, "aws_session_token": token}


def mint(role: str, duration: int = 3600) -> dict[str, Any]:
    """Role credentials the way the local stack mints them: moto's STS backend, in-process."""
    session = sts_backends[ACCOUNT]["aws"].assume_role(
        region_name=REGION,
        role_session_name="test",
        role_arn=role_arn(role),
        policy="",
        duration=duration,
        external_id="",
    )
    return credentials(session.access_key_id, session.secret_access_key, session.session_token)


@dataclass
class World:
    endpoint: str
    admin: dict[str, Any]
    nobody: dict[str, Any]
    worker: dict[str, Any]
    reader: dict[str, Any]
    queue_urls: dict[str, str]
    denials: list[Denial] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)
    # the callbacks the module installs (the world fixture), to put back after a test replaces them
    record: tuple[Callable[[Denial], None], Callable[[Grant], None]] | None = None

    def client(self, service: str, who: dict[str, Any], **config: Any) -> Any:
        return boto3.session.Session().client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            config=Config(retries={"total_max_attempts": 1}, **config)
            if service != "s3"
            else Config(signature_version="s3v4", retries={"total_max_attempts": 1}, **config),
            **who,
        )


def _create_resources(world: World) -> None:
    anyone = credentials("testing", "testing")
    iam, ddb = world.client("iam", anyone), world.client("dynamodb", anyone)
    for table in (TABLE_A, TABLE_B):
        ddb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name in ("pk", "x", "y")],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": f"by_{name}",
                    "KeySchema": [{"AttributeName": name, "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "ALL"},
                }
                for name in ("x", "y")
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    events = world.client("events", anyone)
    for bus in (BUS_A, BUS_B):
        events.create_event_bus(Name=bus)
    sfn = world.client("stepfunctions", anyone)
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    for machine in (SM_A, SM_B):
        sfn.create_state_machine(name=machine, definition=definition, roleArn=role_arn(WORKER))
    sqs = world.client("sqs", anyone)
    world.queue_urls.update(
        {queue: sqs.create_queue(QueueName=queue)["QueueUrl"] for queue in (QUEUE_A, QUEUE_B)}
    )
    s3 = world.client("s3", anyone)
    s3.create_bucket(Bucket=BUCKET)
    for key in ("exports/present", "exports/src", "private/secret"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=f"body of {key}".encode())

    iam.create_user(UserName=f"sa-admin-{UID}")
    iam.put_user_policy(UserName=f"sa-admin-{UID}", PolicyName="all", PolicyDocument=allow((["*"], ["*"])))
    key = iam.create_access_key(UserName=f"sa-admin-{UID}")["AccessKey"]
    world.admin.update(credentials(key["AccessKeyId"], key["SecretAccessKey"]))
    iam.create_user(UserName=f"sa-nobody-{UID}")
    key = iam.create_access_key(UserName=f"sa-nobody-{UID}")["AccessKey"]
    world.nobody.update(credentials(key["AccessKeyId"], key["SecretAccessKey"]))

    lambda_trust = trust({"Service": "lambda.amazonaws.com"})
    iam.create_role(RoleName=WORKER, AssumeRolePolicyDocument=lambda_trust)
    iam.put_role_policy(RoleName=WORKER, PolicyName="worker", PolicyDocument=WORKER_POLICY)
    iam.create_role(RoleName=READER, AssumeRolePolicyDocument=lambda_trust)
    iam.put_role_policy(
        RoleName=READER,
        PolicyName="reader",
        PolicyDocument=allow((["s3:GetObject"], [object_arn("exports/*")])),
    )
    iam.create_role(
        RoleName=ROOT_TRUST, AssumeRolePolicyDocument=trust({"AWS": f"arn:aws:iam::{ACCOUNT}:root"})
    )
    iam.create_role(RoleName=ROLE_TRUST, AssumeRolePolicyDocument=trust({"AWS": role_arn(WORKER)}))
    iam.create_role(RoleName=SERVICE_TRUST, AssumeRolePolicyDocument=lambda_trust)
    iam.create_role(RoleName=MIXED, AssumeRolePolicyDocument=lambda_trust)
    iam.put_role_policy(
        RoleName=MIXED, PolicyName="all-dynamodb", PolicyDocument=allow((["dynamodb:*"], ["*"]))
    )
    deny = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": {"Effect": "Deny", "Action": "dynamodb:DeleteItem", "Resource": table_arn(TABLE_A)},
        }
    )
    policy = iam.create_policy(PolicyName=f"sa-deny-{UID}", PolicyDocument=deny)["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=MIXED, PolicyArn=policy)
    world.worker.update(mint(WORKER))
    world.reader.update(mint(READER))


@pytest.fixture(scope="session")
def _world_resources() -> Iterator[World]:
    """This module's server and resources, once per process: moto's backends are the process's and outlive
    a server, and pytest may set the module up again after running another module's tests in between."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    world = World(f"http://{host}:{port}", {}, {}, {}, {}, {})
    enforced, on_denied, on_allowed = strict_aws.current()
    try:
        strict_aws.enforce(False)
        # moto keeps state machines in another backend once executions run (a setting of the process, which
        # a local stack started later in this pytest turns on): create them where they will be looked for.
        enable_stepfunctions_execution(world.endpoint)
        _create_resources(world)
    finally:
        strict_aws.install(on_denied, on_allowed)
        strict_aws.enforce(enforced)
    yield world
    server.stop()


@pytest.fixture(scope="module")
def world(_world_resources: World) -> Iterator[World]:
    """Enforcement on, this module's callbacks recording its own roles' calls; what was there before (a local
    stack of this pytest process enforcing, with its callbacks) is put back after, and hears its own calls
    meanwhile."""
    world = _world_resources
    enforced, on_denied, on_allowed = strict_aws.current()

    def denied(denial: Denial) -> None:
        if f"-{UID}" in denial.principal:
            world.denials.append(denial)
        elif on_denied is not None:
            on_denied(denial)

    def allowed(grant: Grant) -> None:
        if f"-{UID}" in grant.principal:
            world.grants.append(grant)
        elif on_allowed is not None:
            on_allowed(grant)

    world.record = (denied, allowed)
    strict_aws.install(on_denied=denied, on_allowed=allowed)
    strict_aws.enforce(True)
    try:
        yield world
    finally:
        strict_aws.install(on_denied, on_allowed)
        strict_aws.enforce(enforced)


@pytest.fixture(autouse=True)
def _fresh_records(world: World) -> None:
    world.denials.clear()
    world.grants.clear()


def refused(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return dict(caught.value.response)


def not_authorized(principal: str, action: str, resource: str) -> str:
    return (
        f"User: {principal} is not authorized to perform: {action} on resource: {resource} "
        f"because no identity-based policy allows the {action} action"
    )


KEY = {"pk": {"S": "k1"}}


def test_dynamodb_grant_on_a_table_allows_that_table_only(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    ddb = world.client("dynamodb", world.worker)
    worker = session_arn(WORKER)

    ddb.get_item(TableName=TABLE_A, Key=KEY)
    with caplog.at_level(logging.WARNING, logger="data_export_cli.iam"):
        error = refused(ddb.get_item, TableName=TABLE_B, Key=KEY)

    assert error["Error"]["Code"] == "AccessDeniedException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Message"] == not_authorized(worker, "dynamodb:GetItem", table_arn(TABLE_B))
    assert world.denials == [Denial(worker, "dynamodb:GetItem", table_arn(TABLE_B))]
    assert Grant(worker, "dynamodb:GetItem", table_arn(TABLE_A)) in world.grants
    lines = [r.getMessage() for r in caplog.records if r.name == "data_export_cli.iam"]
    assert lines == [
        f"AccessDenied: {worker} is not authorized to perform dynamodb:GetItem on {table_arn(TABLE_B)}"
    ]


def test_dynamodb_indexes_need_grants_of_their_own(world: World) -> None:
    ddb = world.client("dynamodb", world.worker)
    query = {"KeyConditionExpression": "x = :x", "ExpressionAttributeValues": {":x": {"S": "1"}}}

    ddb.query(TableName=TABLE_A, IndexName="by_x", **query)
    ddb.scan(TableName=TABLE_A)
    refused(ddb.query, TableName=TABLE_A, IndexName="by_y", **query)
    refused(ddb.query, TableName=TABLE_B, IndexName="by_x", **query)
    refused(
        ddb.query,
        TableName=TABLE_A,
        KeyConditionExpression="pk = :k",
        ExpressionAttributeValues={":k": {"S": "k"}},
    )
    refused(ddb.scan, TableName=TABLE_A, IndexName="by_x")  # Scan is granted on the table, not its indexes

    assert [(d.action, d.resource) for d in world.denials] == [
        ("dynamodb:Query", f"{table_arn(TABLE_A)}/index/by_y"),
        ("dynamodb:Query", f"{table_arn(TABLE_B)}/index/by_x"),
        ("dynamodb:Query", table_arn(TABLE_A)),
        ("dynamodb:Scan", f"{table_arn(TABLE_A)}/index/by_x"),
    ]


def test_dynamodb_transactions_and_batches_are_checked_item_by_item(world: World) -> None:
    ddb = world.client("dynamodb", world.worker)
    put_a = {"Put": {"TableName": TABLE_A, "Item": {"pk": {"S": "t1"}}}}
    update_a = {
        "Update": {
            "TableName": TABLE_A,
            "Key": {"pk": {"S": "t2"}},
            "UpdateExpression": "SET v = :v",
            "ExpressionAttributeValues": {":v": {"S": "1"}},
        }
    }

    ddb.transact_write_items(TransactItems=[put_a, update_a])
    check_b = {
        "ConditionCheck": {
            "TableName": TABLE_B,
            "Key": KEY,
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }
    put_a2 = {"Put": {"TableName": TABLE_A, "Item": {"pk": {"S": "t3"}}}}
    error = refused(ddb.transact_write_items, TransactItems=[put_a2, check_b])
    assert error["Error"]["Code"] == "AccessDeniedException"
    assert "Item" not in ddb.get_item(TableName=TABLE_A, Key={"pk": {"S": "t3"}})  # nothing of it was written
    refused(ddb.transact_write_items, TransactItems=[{"Delete": {"TableName": TABLE_A, "Key": KEY}}])

    ddb.transact_get_items(TransactItems=[{"Get": {"TableName": TABLE_A, "Key": KEY}}])
    refused(
        ddb.transact_get_items,
        TransactItems=[{"Get": {"TableName": t, "Key": KEY}} for t in (TABLE_A, TABLE_B)],
    )

    ddb.batch_write_item(RequestItems={TABLE_A: [{"PutRequest": {"Item": {"pk": {"S": "b1"}}}}]})
    refused(
        ddb.batch_write_item,
        RequestItems={t: [{"PutRequest": {"Item": {"pk": {"S": "b2"}}}}] for t in (TABLE_A, TABLE_B)},
    )
    refused(ddb.batch_get_item, RequestItems={TABLE_A: {"Keys": [KEY]}})

    assert [(d.action, d.resource) for d in world.denials] == [
        ("dynamodb:ConditionCheckItem", table_arn(TABLE_B)),
        ("dynamodb:DeleteItem", table_arn(TABLE_A)),
        ("dynamodb:GetItem", table_arn(TABLE_B)),
        ("dynamodb:BatchWriteItem", table_arn(TABLE_B)),
        ("dynamodb:BatchGetItem", table_arn(TABLE_A)),
    ]
    assert Grant(session_arn(WORKER), "dynamodb:UpdateItem", table_arn(TABLE_A)) in world.grants


def test_step_functions_checks_the_state_machine_and_execution_arns(world: World) -> None:
    sfn = world.client("stepfunctions", world.worker)
    admin = world.client("stepfunctions", world.admin)

    execution = sfn.start_execution(stateMachineArn=state_machine_arn(SM_A), name="run-1")["executionArn"]
    sfn.describe_execution(executionArn=execution)
    sfn.describe_state_machine(stateMachineArn=state_machine_arn(SM_A))
    sfn.list_executions(stateMachineArn=state_machine_arn(SM_A))
    error = refused(sfn.start_execution, stateMachineArn=state_machine_arn(SM_B), name="run-1")
    assert error["Error"]["Code"] == "AccessDeniedException"
    refused(sfn.describe_state_machine, stateMachineArn=state_machine_arn(SM_B))
    other = admin.start_execution(stateMachineArn=state_machine_arn(SM_B), name="run-2")["executionArn"]
    refused(sfn.describe_execution, executionArn=other)
    refused(sfn.stop_execution, executionArn=other)

    assert [(d.action, d.resource) for d in world.denials] == [
        ("states:StartExecution", state_machine_arn(SM_B)),
        ("states:DescribeStateMachine", state_machine_arn(SM_B)),
        ("states:DescribeExecution", other),
        ("states:StopExecution", other),
    ]
    assert Grant(session_arn(WORKER), "states:DescribeExecution", execution) in world.grants


def test_put_events_checks_the_bus_of_every_entry(world: World) -> None:
    events = world.client("events", world.worker)

    def entry(bus: str | None) -> dict[str, str]:
        base = {"Source": "data-export", "DetailType": "Export Completed", "Detail": "{}"}
        return base if bus is None else {**base, "EventBusName": bus}

    events.put_events(Entries=[entry(BUS_A), entry(bus_arn(BUS_A))])
    error = refused(events.put_events, Entries=[entry(None)])
    assert error["Error"]["Code"] == "AccessDeniedException"
    refused(events.put_events, Entries=[entry(BUS_A), entry(BUS_B)])

    assert [(d.action, d.resource) for d in world.denials] == [
        ("events:PutEvents", bus_arn("default")),
        ("events:PutEvents", bus_arn(BUS_B)),
    ]


def test_s3_operations_are_authorized_as_their_iam_actions(world: World) -> None:
    s3 = world.client("s3", world.worker)

    s3.put_object(Bucket=BUCKET, Key="exports/new", Body=b"x")
    s3.head_object(Bucket=BUCKET, Key="exports/new")  # s3:GetObject
    s3.list_objects_v2(Bucket=BUCKET, Prefix="exports/")  # s3:ListBucket
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="exports/archive")["UploadId"]  # s3:PutObject
    etag = s3.upload_part(Bucket=BUCKET, Key="exports/archive", UploadId=upload, PartNumber=1, Body=b"p")[
        "ETag"
    ]
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key="exports/archive",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="exports/dropped")["UploadId"]
    s3.abort_multipart_upload(Bucket=BUCKET, Key="exports/dropped", UploadId=upload)

    error = refused(s3.put_object, Bucket=BUCKET, Key="tmp/new", Body=b"x")
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDenied", 403)
    assert world.denials == [Denial(session_arn(WORKER), "s3:PutObject", object_arn("tmp/new"))]
    assert Grant(session_arn(WORKER), "s3:PutObject", object_arn("exports/archive")) in world.grants


def test_s3_copies_need_get_object_on_their_source(world: World) -> None:
    s3 = world.client("s3", world.worker)

    s3.copy_object(Bucket=BUCKET, Key="exports/copy", CopySource={"Bucket": BUCKET, "Key": "exports/src"})
    error = refused(
        s3.copy_object,
        Bucket=BUCKET,
        Key="exports/leak",
        CopySource={"Bucket": BUCKET, "Key": "private/secret"},
    )
    assert error["Error"]["Code"] == "AccessDenied"
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="exports/joined")["UploadId"]
    s3.upload_part_copy(
        Bucket=BUCKET, Key="exports/joined", UploadId=upload, PartNumber=1, CopySource=f"{BUCKET}/exports/src"
    )
    refused(
        s3.upload_part_copy,
        Bucket=BUCKET,
        Key="exports/joined",
        UploadId=upload,
        PartNumber=2,
        CopySource={"Bucket": BUCKET, "Key": "private/secret"},
    )

    secret = Denial(session_arn(WORKER), "s3:GetObject", object_arn("private/secret"))
    assert world.denials == [secret, secret]
    assert Grant(session_arn(WORKER), "s3:GetObject", object_arn("exports/src")) in world.grants


def test_delete_objects_authorizes_each_key(world: World) -> None:
    admin, s3 = world.client("s3", world.admin), world.client("s3", world.worker)
    for key in ("exports/old", "private/keep"):
        admin.put_object(Bucket=BUCKET, Key=key, Body=b"x")

    result = s3.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": "exports/old"}, {"Key": "private/keep"}]}
    )

    assert [d["Key"] for d in result["Deleted"]] == ["exports/old"]
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("private/keep", "AccessDenied")]
    admin.head_object(Bucket=BUCKET, Key="private/keep")
    assert world.denials == [Denial(session_arn(WORKER), "s3:DeleteObject", object_arn("private/keep"))]


def test_a_missing_object_is_access_denied_without_list_bucket(world: World) -> None:
    reader, worker = world.client("s3", world.reader), world.client("s3", world.worker)

    reader.get_object(Bucket=BUCKET, Key="exports/present")
    error = refused(reader.get_object, Bucket=BUCKET, Key="exports/missing")
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDenied", 403)
    assert refused(worker.get_object, Bucket=BUCKET, Key="exports/missing")["Error"]["Code"] == "NoSuchKey"
    assert world.denials == [Denial(session_arn(READER), "s3:ListBucket", f"arn:aws:s3:::{BUCKET}")]


def http_get(url: str, **headers: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as response:  # no AWS SDK
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def error_code(body: bytes) -> str:
    match = re.search(rb"<Code>([^<]+)</Code>", body)
    return match.group(1).decode() if match else ""


def presign(world: World, who: dict[str, Any], key: str, expires: int = 60, **params: Any) -> str:
    url: str = world.client("s3", who).generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": key, **params}, ExpiresIn=expires
    )
    return url


def test_presigned_urls_are_verified_as_s3_does(world: World) -> None:
    disposition = 'attachment; filename="present.zip"'
    url = presign(world, world.worker, "exports/present", ResponseContentDisposition=disposition)
    assert http_get(url) == (200, b"body of exports/present")
    assert http_get(url, Range="bytes=8-") == (206, b"exports/present")  # unsigned headers are the client's
    odd_key = "exports/a b+c/ü?.zip"  # what botocore escapes in the path and in the query
    world.client("s3", world.admin).put_object(Bucket=BUCKET, Key=odd_key, Body=b"odd")
    odd_disposition = "attachment; filename=\"_.zip\"; filename*=UTF-8''%C3%BC%3F.zip"
    odd_url = presign(world, world.worker, odd_key, ResponseContentDisposition=odd_disposition)
    assert http_get(odd_url) == (200, b"odd")

    tampered_path = url.replace("exports/present", "exports/src")
    tampered_query = url.replace("present.zip", "other.zip")
    signature = url.rsplit("=", 1)[1]
    tampered_signature = url[: -len(signature)] + ("0" if signature[0] != "0" else "1") + signature[1:]
    for tampered in (tampered_path, tampered_query, tampered_signature):
        status, body = http_get(tampered)
        assert (status, error_code(body)) == (403, "SignatureDoesNotMatch"), tampered

    too_long = re.sub(r"X-Amz-Expires=\d+", "X-Amz-Expires=604801", url)
    status, body = http_get(too_long)
    assert (status, error_code(body)) == (400, "AuthorizationQueryParametersError")

    status, body = http_get(presign(world, world.worker, "private/secret"))
    assert (status, error_code(body)) == (403, "AccessDenied")
    assert world.denials == [Denial(session_arn(WORKER), "s3:GetObject", object_arn("private/secret"))]


def test_a_presigned_url_works_until_it_expires(world: World) -> None:
    def signed_ago(minutes: int) -> str:
        past = datetime.now(UTC) - timedelta(minutes=minutes)

        def clock(remove_tzinfo: bool = True) -> datetime:
            return past.replace(tzinfo=None) if remove_tzinfo else past

        with contextlib.ExitStack() as clocks:  # botocore's signer, or awscrt's when installed
            for signer in ("botocore.auth", "botocore.crt.auth"):
                if importlib.util.find_spec("awscrt") or signer == "botocore.auth":
                    clocks.enter_context(mock.patch(f"{signer}.get_current_datetime", clock))
            return presign(world, world.worker, "exports/present", expires=3600)

    assert http_get(signed_ago(59))[0] == 200
    status, body = http_get(signed_ago(61))
    assert (status, error_code(body)) == (403, "AccessDenied")
    assert b"Request has expired" in body
    assert world.denials == []  # authentication, not a missing grant


def test_an_expired_role_session_is_refused(world: World) -> None:
    # Long enough to be used once even on a busy machine, then outlived.
    lifetime = 5
    minted = time.monotonic()
    expiring = mint(WORKER, duration=lifetime)
    url = presign(world, expiring, "exports/present")
    ddb, s3 = world.client("dynamodb", expiring), world.client("s3", expiring)
    ddb.get_item(TableName=TABLE_A, Key=KEY)
    time.sleep(max(0.0, minted + lifetime + 1.2 - time.monotonic()))

    error = refused(ddb.get_item, TableName=TABLE_A, Key=KEY)
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (
        "ExpiredTokenException",
        400,
    )
    error = refused(s3.get_object, Bucket=BUCKET, Key="exports/present")
    assert (error["Error"]["Code"], error["Error"]["Message"]) == (
        "ExpiredToken",
        "The provided token has expired.",
    )
    status, body = http_get(url)
    assert (status, error_code(body)) == (400, "ExpiredToken")
    assert b"The provided token has expired." in body
    error = refused(
        world.client("sqs", expiring).send_message, QueueUrl=world.queue_urls[QUEUE_A], MessageBody="x"
    )
    assert error["Error"]["Code"] == "ExpiredToken"
    assert world.denials == []


def test_sqs_and_unknown_credentials_answer_as_aws(world: World) -> None:
    sqs = world.client("sqs", world.worker)
    sqs.send_message(QueueUrl=world.queue_urls[QUEUE_A], MessageBody="x")
    error = refused(sqs.send_message, QueueUrl=world.queue_urls[QUEUE_B], MessageBody="x")
    assert error["Error"]["Code"] == "AccessDenied"
    queue_b = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE_B}"
    assert world.denials == [Denial(session_arn(WORKER), "sqs:SendMessage", queue_b)]

    stranger = credentials("testing", "testing")
    error = refused(world.client("dynamodb", stranger).get_item, TableName=TABLE_A, Key=KEY)
    assert error["Error"]["Code"] == "UnrecognizedClientException"
    assert refused(world.client("s3", stranger).list_buckets)["Error"]["Code"] == "InvalidAccessKeyId"


def test_assume_role_follows_the_trust_policy(world: World) -> None:
    admin = world.client("sts", world.admin, parameter_validation=False)
    worker, nobody = world.client("sts", world.worker), world.client("sts", world.nobody)

    before = datetime.now(UTC)
    issued = admin.assume_role(RoleArn=role_arn(ROOT_TRUST), RoleSessionName="admin", DurationSeconds=900)
    expiration = issued["Credentials"]["Expiration"]
    assert before + timedelta(seconds=890) < expiration < before + timedelta(seconds=910)
    c = issued["Credentials"]
    session = world.client("sts", credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]))
    assert session.get_caller_identity()["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROOT_TRUST}/admin"

    worker.assume_role(RoleArn=role_arn(ROLE_TRUST), RoleSessionName="chained")  # named by the trust policy
    error = refused(admin.assume_role, RoleArn=role_arn(ROLE_TRUST), RoleSessionName="admin")
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDenied", 403)
    # The worker has no sts:AssumeRole grant to meet the account principal, nor has "nobody"; the admin
    # may assume anything but a role only lambda.amazonaws.com may assume.
    refused(worker.assume_role, RoleArn=role_arn(ROOT_TRUST), RoleSessionName="worker")
    refused(nobody.assume_role, RoleArn=role_arn(ROOT_TRUST), RoleSessionName="nobody")
    refused(admin.assume_role, RoleArn=role_arn(SERVICE_TRUST), RoleSessionName="admin")

    for seconds in (600, 7200):  # AWS's minimum; over the role's MaxSessionDuration (3600)
        error = refused(
            admin.assume_role, RoleArn=role_arn(ROOT_TRUST), RoleSessionName="admin", DurationSeconds=seconds
        )
        assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (
            "ValidationError",
            400,
        )

    admin_arn = f"arn:aws:iam::{ACCOUNT}:user/sa-admin-{UID}"
    assert [(d.principal, d.action, d.resource) for d in world.denials] == [
        (admin_arn, "sts:AssumeRole", role_arn(ROLE_TRUST)),
        (session_arn(WORKER), "sts:AssumeRole", role_arn(ROOT_TRUST)),
        (f"arn:aws:iam::{ACCOUNT}:user/sa-nobody-{UID}", "sts:AssumeRole", role_arn(ROOT_TRUST)),
        (admin_arn, "sts:AssumeRole", role_arn(SERVICE_TRUST)),
    ]


def test_role_allows_reads_inline_and_attached_policies(world: World) -> None:
    assert strict_aws.role_allows(WORKER, "dynamodb:GetItem", table_arn(TABLE_A))
    assert not strict_aws.role_allows(WORKER, "dynamodb:GetItem", table_arn(TABLE_B))
    assert strict_aws.role_allows(MIXED, "dynamodb:DeleteItem", table_arn(TABLE_B))
    # The attached policy's Deny wins over the inline Allow.
    assert not strict_aws.role_allows(MIXED, "dynamodb:DeleteItem", table_arn(TABLE_A))
    assert not strict_aws.role_allows(f"sa-no-such-role-{UID}", "dynamodb:GetItem", table_arn(TABLE_A))


def test_install_again_replaces_the_callbacks_and_enforce_off_restores_moto(world: World) -> None:
    patched = ActionAuthenticatorMixin._authenticate_and_authorize_normal_action
    other: list[Denial] = []
    strict_aws.install(on_denied=other.append)
    try:
        assert ActionAuthenticatorMixin._authenticate_and_authorize_normal_action is patched
        refused(world.client("dynamodb", world.worker).get_item, TableName=TABLE_B, Key=KEY)
        assert other == [Denial(session_arn(WORKER), "dynamodb:GetItem", table_arn(TABLE_B))]
        assert world.denials == []

        strict_aws.enforce(False)
        world.client("dynamodb", credentials("testing", "testing")).get_item(TableName=TABLE_B, Key=KEY)
        assert http_get(presign(world, world.worker, "private/secret"))[0] == 200
    finally:
        strict_aws.enforce(True)
        assert world.record is not None
        strict_aws.install(*world.record)
