"""template.yaml: the real linters accept it, and its structure keeps the contract the code relies on."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from data_export.settings import Settings
from data_export.storage.layout import API_KEYS_BY_ORGANIZATION_INDEX, JOBS_BY_CREATED_AT_INDEX

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
LAYER_REQUIREMENTS = ROOT / "layers" / "shared" / "requirements.txt"

FUNCTIONS = {  # logical id: (CodeUri, Handler)
    "StartExportFunction": ("functions/start_export/", "app.lambda_handler"),
    "GetExportFunction": ("functions/get_export/", "app.lambda_handler"),
    "CancelExportFunction": ("functions/cancel_export/", "app.lambda_handler"),
    "ExportWorkerFunction": ("functions/export_worker/", "app.lambda_handler"),
    "ExportPlanFunction": ("functions/export_steps/", "app.plan"),
    "ExportBuildUnitFunction": ("functions/export_steps/", "app.build_unit"),
    "ExportAssembleFunction": ("functions/export_steps/", "app.assemble"),
    "ExportFailFunction": ("functions/export_steps/", "app.fail"),
    "ExportSweeperFunction": ("functions/export_sweeper/", "app.sweep"),
    "ExportDeadLetterFunction": ("functions/export_sweeper/", "app.dead_letter"),
    "ImportApiFunction": ("functions/import_api/", "app.lambda_handler"),
    "ImportValidateFunction": ("functions/import_steps/", "app.validate"),
    "ImportApplyFunction": ("functions/import_steps/", "app.apply"),
    "ImportFailFunction": ("functions/import_steps/", "app.fail"),
}
API_ROUTES = {
    ("StartExportFunction", "/dashboard/api/v1/data-export/{organization_id}", "post"),
    ("GetExportFunction", "/dashboard/api/v1/data-export/{organization_id}/{job_id}", "get"),
    ("GetExportFunction", "/dashboard/api/v1/data-export/{organization_id}/{job_id}/download", "get"),
    ("GetExportFunction", "/dashboard/api/v1/data-export/{organization_id}", "get"),
    ("CancelExportFunction", "/dashboard/api/v1/data-export/{organization_id}/{job_id}", "delete"),
    ("ImportApiFunction", "/dashboard/api/v1/data-import/{organization_id}", "post"),
    ("ImportApiFunction", "/dashboard/api/v1/data-import/{organization_id}", "get"),
    ("ImportApiFunction", "/dashboard/api/v1/data-import/{organization_id}/{import_id}", "get"),
    ("ImportApiFunction", "/dashboard/api/v1/data-import/{organization_id}/{import_id}", "delete"),
    ("ImportApiFunction", "/dashboard/api/v1/data-import/{organization_id}/{import_id}/upload", "post"),
    ("ImportApiFunction", "/dashboard/api/v1/data-import/{organization_id}/{import_id}/start", "post"),
}
# The platform's stores: created in the stack only when their parameter is empty (docs/operations.md,
# "Using the platform's own stores"); store -> (parameter, condition).
PLATFORM_STORES = {
    "OrgDataTable": ("OrgDataTableName", "CreateOrgDataTable"),
    "ApiKeysTable": ("ApiKeysTableName", "CreateApiKeysTable"),
    "AssetsBucket": ("AssetsBucketName", "CreateAssetsBucket"),
}
EXISTING_STORES = {
    "OrgDataTableName": "platform-org-data",
    "ApiKeysTableName": "platform-api-keys",
    "AssetsBucketName": "platform-assets",
}


def store_name(store: str) -> dict[str, Any]:
    """The one way the template names a platform store: the stack's demo store, or the parameter's."""
    parameter, condition = PLATFORM_STORES[store]
    return {"Fn::If": [condition, {"Ref": store}, {"Ref": parameter}]}


ENVIRONMENT: dict[str, str | dict[str, Any]] = {
    "JOBS_TABLE_NAME": {"Ref": "JobsTable"},
    "ORG_DATA_TABLE_NAME": store_name("OrgDataTable"),
    "API_KEYS_TABLE_NAME": store_name("ApiKeysTable"),
    "RATE_LIMITS_TABLE_NAME": {"Ref": "RateLimitsTable"},
    "ASSETS_BUCKET_NAME": store_name("AssetsBucket"),
    "EXPORTS_BUCKET_NAME": {"Ref": "ExportsBucket"},
    "EXPORT_QUEUE_URL": {"Ref": "ExportQueue"},
    "DOWNLOAD_URL_TTL_SECONDS": {"Ref": "DownloadUrlTtlSeconds"},
    "JOB_RETENTION_DAYS": {"Ref": "ExportRetentionDays"},
    "EXPORT_EVENT_BUS_NAME": {"Ref": "ExportEventBus"},
    "IMPORTS_TABLE_NAME": {"Ref": "ImportsTable"},
    "IMPORT_STATE_MACHINE_ARN": {
        "Fn::Sub": "arn:aws:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${AWS::StackName}-import"
    },
    "POWERTOOLS_SERVICE_NAME": "data-export",
    "POWERTOOLS_METRICS_NAMESPACE": "DataExport",
    "POWERTOOLS_LOG_LEVEL": "INFO",
}
# The state machine's ARN, written out from its Name (a !Ref from the worker would be a dependency cycle).
STATE_MACHINE_ARN = "arn:aws:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${AWS::StackName}-export"
EXECUTIONS_ARN = "arn:aws:states:${AWS::Region}:${AWS::AccountId}:execution:${AWS::StackName}-export:*"
DOWNLOAD_SIGNING_ROLE_NAME = "${AWS::StackName}-${AWS::Region}-download-signing"
# What the local stack can resolve (see the template's header comment): LocalStack.resolve, .condition.
RESOLVABLE_INTRINSICS = {"Ref", "Fn::GetAtt", "Fn::Sub", "Fn::If"}
RESOLVABLE_CONDITION_FUNCTIONS = {"Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition"}
RESOLVABLE_PSEUDO_PARAMETERS = {"AWS::Region", "AWS::AccountId", "AWS::StackName", "AWS::Partition"}


class CloudFormationLoader(yaml.SafeLoader):
    """Reads CloudFormation's short tags (!Ref X, !GetAtt A.B, !Sub s, ...) as their long, JSON forms."""


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open(encoding="utf-8") as stream:
        document: dict[str, Any] = yaml.load(stream, Loader=CloudFormationLoader)
    return document


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]
    return found


def function_properties(template: dict[str, Any], name: str) -> dict[str, Any]:
    """A function's properties with the template's Globals applied, as SAM does (the function wins;
    environment variables are merged)."""
    globals_ = template["Globals"]["Function"]
    own = template["Resources"][name]["Properties"]
    variables = {
        **globals_.get("Environment", {}).get("Variables", {}),
        **own.get("Environment", {}).get("Variables", {}),
    }
    return {**globals_, **own, "Environment": {"Variables": variables}}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def walk(node: Any) -> Iterator[Any]:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from walk(child)


def tool(name: str) -> str:
    """A CLI from this interpreter's environment (the venv), else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is not installed (it is a dev dependency of the project)"
    return found


def sam_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1", **extra}


# ---------------------------------------------------------------------------------------------- linters


@pytest.fixture(scope="module", params=["demo stores", "platform's stores"])
def template_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """template.yaml as deployed both ways: creating the demo stores (its defaults), and with the three
    parameters naming the platform's own stores (a copy whose defaults are set, as overrides would)."""
    if request.param == "demo stores":
        return TEMPLATE
    from data_export_cli.template import with_parameters, write_template

    copy = tmp_path_factory.mktemp("platform-stores") / "template.yaml"
    return write_template(with_parameters(load_template(), EXISTING_STORES), copy)


def test_cfn_lint_accepts_the_template(template_file: Path) -> None:
    result = subprocess.run(
        [tool("cfn-lint"), str(template_file)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_accepts_the_template(template_file: Path) -> None:
    result = subprocess.run(
        [tool("sam"), "validate", "--lint", "--template", str(template_file)],
        cwd=ROOT,
        env=sam_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_accepts_the_template_with_the_platforms_stores(template_file: Path) -> None:
    """tests/infra/test_supply_chain.py runs checkov on template.yaml itself; here on both deployments."""
    from tests.infra.test_supply_chain import CHECKOV_CONFIG, CHECKOV_ENV, _checkov

    result = subprocess.run(
        [_checkov(), "--config-file", str(CHECKOV_CONFIG), "-f", str(template_file), "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, **CHECKOV_ENV},
        check=False,
    )
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert (report["summary"]["failed"], report["summary"]["parsing_errors"]) == (0, 0), failed
    assert report["summary"]["passed"] >= 30, report["summary"]


# ---------------------------------------------------------------------------------------------- code


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_runs_python313_on_arm64_with_the_shared_layer(template: dict[str, Any], name: str) -> None:
    assert template["Resources"][name]["Type"] == "AWS::Serverless::Function"
    properties = function_properties(template, name)
    assert properties["Runtime"] == "python3.13"
    assert properties["Architectures"] == ["arm64"]
    assert properties["Tracing"] == "Active"
    assert properties["Layers"] == [{"Ref": "SharedLayer"}]
    assert (properties["CodeUri"], properties["Handler"]) == FUNCTIONS[name]


def test_shared_layer_is_built_for_python313_arm64(resources: dict[str, Any]) -> None:
    layer = resources["SharedLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/shared"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}
    assert (ROOT / "layers" / "shared" / "data_export" / "__init__.py").is_file()


def test_layer_requirements_are_pinned_and_meet_the_project_floors() -> None:
    pins: dict[str, str] = {}
    for raw in LAYER_REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[a-z,]+\])?==([0-9][0-9A-Za-z.]*)", line)
            assert match, f"not pinned with ==: {line!r}"
            pins[match[1].lower()] = match[3]
            if match[1] == "aws-lambda-powertools":
                assert match[2] == "[tracer]", "the tracer extra brings the X-Ray SDK"
    assert set(pins) == {"aws-lambda-powertools", "boto3", "isal", "pydantic", "shortuuid"}

    def version(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", text)[:3])

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for requirement in project["project"]["dependencies"]:
        name, _, floor = requirement.partition(">=")
        if name.lower() in pins:
            assert version(pins[name.lower()]) >= version(floor), f"{name} pinned below the project's floor"


# ---------------------------------------------------------------------------------------------- API


def test_api_is_a_traced_rest_api_with_access_logs_throttling_and_no_gateway_auth(
    resources: dict[str, Any],
) -> None:
    api = resources["ExportApi"]
    assert api["Type"] == "AWS::Serverless::Api"
    properties = api["Properties"]
    assert properties["StageName"] == "live"
    assert properties["TracingEnabled"] is True
    assert "Auth" not in properties  # the functions check X-API-Key themselves
    log_group = properties["AccessLogSetting"]["DestinationArn"]["Fn::GetAtt"]
    assert log_group[1] == "Arn"
    assert resources[log_group[0]]["Type"] == "AWS::Logs::LogGroup"
    assert resources[log_group[0]]["Properties"]["RetentionInDays"] > 0
    defaults = [
        setting
        for setting in properties["MethodSettings"]
        if (setting["ResourcePath"], setting["HttpMethod"]) == ("/*", "*")
    ]
    assert len(defaults) == 1
    assert defaults[0]["ThrottlingRateLimit"] > 0
    assert defaults[0]["ThrottlingBurstLimit"] > 0


def test_api_routes_reach_their_functions(template: dict[str, Any]) -> None:
    routes = set()
    for name in FUNCTIONS:
        for event in function_properties(template, name).get("Events", {}).values():
            if event["Type"] == "Api":
                assert event["Properties"]["RestApiId"] == {"Ref": "ExportApi"}
                routes.add((name, event["Properties"]["Path"], event["Properties"]["Method"]))
    assert routes == API_ROUTES


# ------------------------------------------------------------------------------------- worker and queue


def test_worker_takes_one_job_per_invocation_and_reports_item_failures(template: dict[str, Any]) -> None:
    worker = function_properties(template, "ExportWorkerFunction")
    assert worker["Timeout"] == 900
    assert worker["MemorySize"] == 1769
    events = list(worker["Events"].values())
    assert len(events) == 1
    assert events[0]["Type"] == "SQS"
    sqs = events[0]["Properties"]
    assert sqs["Queue"] == {"Fn::GetAtt": ["ExportQueue", "Arn"]}
    assert sqs["BatchSize"] == 1
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_queue_outlasts_the_worker_and_redrives_to_the_dead_letter_queue(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    queue = resources["ExportQueue"]["Properties"]
    dead_letters = resources["ExportDeadLetterQueue"]["Properties"]
    assert queue["VisibilityTimeout"] == 6 * function_properties(template, "ExportWorkerFunction")["Timeout"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["ExportDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 3,
    }
    assert dead_letters["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert dead_letters["MessageRetentionPeriod"] > queue.get("MessageRetentionPeriod", 4 * 24 * 3600)
    assert queue["SqsManagedSseEnabled"] is True
    assert dead_letters["SqsManagedSseEnabled"] is True


def test_alarms_watch_the_dead_letter_queue_and_worker_errors(resources: dict[str, Any]) -> None:
    watched = set()
    for resource in resources.values():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            alarm = resource["Properties"]
            assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
            (dimension,) = alarm["Dimensions"]
            watched.add((alarm["Namespace"], alarm["MetricName"], dimension["Name"], str(dimension["Value"])))
    assert watched == {
        (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "QueueName",
            str({"Fn::GetAtt": ["ExportDeadLetterQueue", "QueueName"]}),
        ),
        ("AWS/Lambda", "Errors", "FunctionName", str({"Ref": "ExportWorkerFunction"})),
    }


# ------------------------------------------------------------------------------ the platform's own stores


def test_each_platform_store_is_a_parameter_and_created_only_without_one(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    for store, (parameter, condition) in PLATFORM_STORES.items():
        spec = template["Parameters"][parameter]
        assert (spec["Type"], spec["Default"]) == ("String", "")
        assert template["Conditions"][condition] == {"Fn::Equals": [{"Ref": parameter}, ""]}
        assert resources[store]["Condition"] == condition
        # Given a name, the local stack creates the store under it (on AWS it exists already).
        assert resources[store]["Metadata"]["LocalStack"] == {"ExistingNameParameter": parameter}
    # The demo bucket's policy goes with the demo bucket: the platform's bucket has the platform's policy.
    assert resources["AssetsBucketPolicy"]["Condition"] == "CreateAssetsBucket"
    stores = set(template["Conditions"]) - {"SnapStartEnabled"}  # the one condition not about a store
    assert stores == {condition for _, condition in PLATFORM_STORES.values()}


@pytest.mark.parametrize(
    ("parameter", "value", "accepted"),
    [
        ("OrgDataTableName", "", True),
        ("OrgDataTableName", "platform-org_data.v2", True),
        ("OrgDataTableName", "*", False),
        ("OrgDataTableName", "org-*", False),
        ("ApiKeysTableName", "platform-api-keys", True),
        ("ApiKeysTableName", "keys/index/*", False),
        ("ApiKeysTableName", "arn:aws:dynamodb:us-east-1:123456789012:table/keys", False),
        ("AssetsBucketName", "platform-assets", True),
        ("AssetsBucketName", "*", False),
        ("AssetsBucketName", "assets/*", False),
        ("AssetsBucketName", "Platform_Assets", False),
    ],
)
def test_a_store_name_cannot_widen_the_grants(
    template: dict[str, Any], parameter: str, value: str, accepted: bool
) -> None:
    """A name becomes part of IAM resource ARNs: wildcards, paths and ARNs are refused at deploy."""
    pattern = template["Parameters"][parameter]["AllowedPattern"]
    assert (re.fullmatch(pattern, value) is not None) == accepted


def names_directly(node: Any, name: str) -> bool:
    """Whether this node itself (not its children) refers to ``name``: !Ref, !GetAtt or a ${} of !Sub."""
    if isinstance(node, dict) and len(node) == 1:
        ((key, value),) = node.items()
        if key == "Ref":
            return bool(value == name)
        if key == "Fn::GetAtt":
            return bool(value[0] == name)
        if key == "Fn::Sub":
            text = value if isinstance(value, str) else value[0]
            return any(variable.split(".")[0] == name for variable in re.findall(r"\$\{([^}!]*)\}", text))
    return False


def unguarded_references(node: Any, names: set[str], guarded: list[Any]) -> list[Any]:
    """Nodes referring to any of ``names`` outside the ``guarded`` expressions."""
    if any(node == expression for expression in guarded):
        return []
    found = [node] if any(names_directly(node, name) for name in names) else []
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        found += unguarded_references(child, names, guarded)
    return found


@pytest.mark.parametrize("store", sorted(PLATFORM_STORES))
def test_every_reference_to_a_platform_store_follows_its_parameter(
    template: dict[str, Any], store: str
) -> None:
    """Names, grants and outputs go through the store's one conditional name, so with a name given, every
    grant is on the platform's store (tests/e2e/test_platform_stores.py runs an export that way); neither
    the demo store nor the bare parameter is named anywhere else."""
    parameter, condition = PLATFORM_STORES[store]
    outside = {
        **{part: value for part, value in template.items() if part not in ("Resources", "Conditions")},
        "Resources": {
            logical_id: resource
            for logical_id, resource in template["Resources"].items()
            # the store itself, and what exists only with it (its bucket policy)
            if logical_id != store and resource.get("Condition") != condition
        },
    }
    guarded = [
        store_name(store),
        # the access log bucket accepts the demo assets bucket's logs, and nothing in the platform's place
        {"Fn::If": [condition, {"Fn::GetAtt": [store, "Arn"]}, {"Ref": "AWS::NoValue"}]},
    ]
    assert unguarded_references(outside, {store, parameter}, guarded) == []
    uses = [node for node in walk(outside) if node == store_name(store)]
    assert len(uses) >= 3  # the environment, the output and grants


RETAINED = {"OrgDataTable", "ApiKeysTable", "AssetsBucket", "ExportsBucket"}


def test_what_holds_customer_data_is_retained(resources: dict[str, Any]) -> None:
    """Kept when the stack is deleted or the resource replaced: the platform's stores and the archives, and
    the buckets' policies with them (a retained bucket still refuses plain HTTP)."""
    stateful = {
        logical_id
        for logical_id, resource in resources.items()
        if resource["Type"] in ("AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::S3::BucketPolicy")
    }
    retained = {
        logical_id for logical_id in stateful if resources[logical_id].get("DeletionPolicy") == "Retain"
    }
    assert retained == RETAINED | {"AssetsBucketPolicy", "ExportsBucketPolicy"}
    for logical_id in retained:
        assert resources[logical_id]["UpdateReplacePolicy"] == "Retain", logical_id
    # Deliberately not: the jobs table holds export bookkeeping (no record data) expiring by itself, and
    # only this stack reads it; the rate-limit counters live minutes.
    for logical_id in ("JobsTable", "RateLimitsTable"):
        policies = (resources[logical_id]["DeletionPolicy"], resources[logical_id]["UpdateReplacePolicy"])
        assert policies == ("Delete", "Delete"), logical_id


# ---------------------------------------------------------------------------------------------- storage


TABLE_KEYS = {
    "JobsTable": [("organization_id", "HASH"), ("job_id", "RANGE")],
    "OrgDataTable": [("partition", "HASH"), ("record_id", "RANGE")],
    "ApiKeysTable": [("key_hash", "HASH")],
}


def key_schema(schema: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(key["AttributeName"], key["KeyType"]) for key in schema]


@pytest.mark.parametrize("name", sorted(TABLE_KEYS))
def test_table_is_on_demand_encrypted_recoverable_and_keyed_as_the_code_expects(
    resources: dict[str, Any], name: str
) -> None:
    table = resources[name]["Properties"]
    assert resources[name]["Type"] == "AWS::DynamoDB::Table"
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert key_schema(table["KeySchema"]) == TABLE_KEYS[name]
    index_keys = [
        key["AttributeName"]
        for index in table.get("LocalSecondaryIndexes", []) + table.get("GlobalSecondaryIndexes", [])
        for key in index["KeySchema"]
    ]
    # Every key attribute is a string, and every defined attribute is some key (CloudFormation insists).
    attributes = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert set(attributes) == {key for key, _ in TABLE_KEYS[name]} | set(index_keys)
    assert set(attributes.values()) == {"S"}


def test_jobs_table_lists_by_creation_and_expires_jobs(resources: dict[str, Any]) -> None:
    table = resources["JobsTable"]["Properties"]
    (index,) = table["LocalSecondaryIndexes"]
    assert index["IndexName"] == JOBS_BY_CREATED_AT_INDEX
    assert key_schema(index["KeySchema"]) == [("organization_id", "HASH"), ("created_at", "RANGE")]
    assert index["Projection"] == {"ProjectionType": "ALL"}
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_ttl", "Enabled": True}


def test_api_keys_table_lists_an_organizations_keys(resources: dict[str, Any]) -> None:
    (index,) = resources["ApiKeysTable"]["Properties"]["GlobalSecondaryIndexes"]
    assert index["IndexName"] == API_KEYS_BY_ORGANIZATION_INDEX
    assert key_schema(index["KeySchema"]) == [("organization_id", "HASH"), ("key_id", "RANGE")]
    assert index["Projection"] == {"ProjectionType": "ALL"}


@pytest.mark.parametrize("name", ["AssetsBucket", "ExportsBucket"])
def test_bucket_is_private_encrypted_and_refuses_plain_http(resources: dict[str, Any], name: str) -> None:
    bucket = resources[name]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    (encryption,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}

    policies = [
        r["Properties"]["PolicyDocument"]
        for r in resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": name}
    ]
    assert len(policies) == 1
    denials = [
        statement
        for statement in policies[0]["Statement"]
        if statement["Effect"] == "Deny"
        and statement["Principal"] == "*"
        and statement["Action"] == "s3:*"
        and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len(denials) == 1
    assert {grant_target(resource) for resource in denials[0]["Resource"]} == {(name,), (name, "*")}


def test_exports_expire_and_abandoned_uploads_are_aborted(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    rules = resources["ExportsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert all(rule["Status"] == "Enabled" for rule in rules)
    aborts = [rule for rule in rules if "AbortIncompleteMultipartUpload" in rule]
    assert len(aborts) == 1
    assert aborts[0]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert "Prefix" not in aborts[0]  # every upload, wherever it is
    expiries = {rule["Prefix"]: rule["ExpirationInDays"] for rule in rules if "ExpirationInDays" in rule}
    # Archives after the retention; units of big exports a day after (a backstop: Assemble, Fail and the
    # sweeper delete them).
    assert expiries == {
        "exports/": {"Ref": "ExportRetentionDays"},
        "tmp/": 1,
        "imports/": {"Ref": "ExportRetentionDays"},
    }
    assert template["Parameters"]["ExportRetentionDays"]["Default"] == 7


# ------------------------------------------------------------------------------- environment, IAM, logs


def test_every_function_gets_the_settings_environment(template: dict[str, Any]) -> None:
    for name in FUNCTIONS:
        variables = function_properties(template, name)["Environment"]["Variables"]
        uses_state_machine = name in (
            "ExportWorkerFunction",
            "ExportSweeperFunction",
            "ExportDeadLetterFunction",
        )
        extra = {"EXPORT_STATE_MACHINE_ARN"} if uses_state_machine else set()
        if name == "ExportWorkerFunction":  # admission control: the execution slots of big exports
            extra |= {"MAX_CONCURRENT_UNIT_BUILDS"}
        if name in ("GetExportFunction", "StartExportFunction"):  # they answer download URLs
            extra = {"DOWNLOAD_SIGNING_ROLE_ARN"}
        if name == "ImportApiFunction":  # it answers upload URLs
            extra = {"UPLOAD_SIGNING_ROLE_ARN"}
        assert {key: value for key, value in variables.items() if key not in extra} == ENVIRONMENT
        assert extra <= set(variables)
    assert template["Parameters"]["DownloadUrlTtlSeconds"]["Default"] == 3600
    # Signing sessions are assumed by a role's session: AWS caps them at one hour (role chaining).
    assert template["Parameters"]["DownloadUrlTtlSeconds"]["MaxValue"] == 3600


def test_download_urls_are_signed_by_a_role_that_only_reads_archives(template: dict[str, Any]) -> None:
    for signer in ("GetExportFunction", "StartExportFunction"):
        variables = function_properties(template, signer)["Environment"]["Variables"]
        assert variables["DOWNLOAD_SIGNING_ROLE_ARN"] == {"Fn::GetAtt": ["DownloadSigningRole", "Arn"]}
    role = template["Resources"]["DownloadSigningRole"]["Properties"]
    assert role["RoleName"] == {"Fn::Sub": DOWNLOAD_SIGNING_ROLE_NAME}
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {
                "AWS": [
                    {"Fn::GetAtt": ["GetExportFunctionRole", "Arn"]},
                    {"Fn::GetAtt": ["StartExportFunctionRole", "Arn"]},
                ]
            },
            "Action": "sts:AssumeRole",
        }
    ]
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    assert statements == [
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": {"Fn::Sub": "arn:aws:s3:::${ExportsBucket}/exports/*"},
        }
    ]


def test_resources_do_not_depend_on_each_other_in_a_circle(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CloudFormation refuses a circular dependency at deploy time; cfn-lint and sam validate miss one that
    runs through a role SAM generates (a function's grant on a role that trusts the function's role)."""
    import copy
    import graphlib
    import importlib

    transform = importlib.import_module("samtranslator.translator.transform").transform  # untyped
    body = copy.deepcopy(template)
    for resource in body["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/code.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = "s3://bucket/layer.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    translated = transform(body, {}, NoManagedPolicies())["Resources"]
    graph: dict[str, set[str]] = {}
    for logical_id, resource in translated.items():
        depends_on = resource.get("DependsOn", [])
        named = set(as_list(depends_on))
        for node in walk(resource.get("Properties", {})):
            if isinstance(node, dict) and "Ref" in node:
                named.add(str(node["Ref"]))
            elif isinstance(node, dict) and "Fn::GetAtt" in node:
                named.add(node["Fn::GetAtt"][0])
            elif isinstance(node, dict) and "Fn::Sub" in node:
                text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
                named |= {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text)}
        graph[logical_id] = named & set(translated)
    list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a circle


def test_the_environment_is_all_that_settings_need(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings.from_env reads nothing required that the template does not set (stand-ins for the refs)."""
    parameters = template["Parameters"]
    for name, value in ENVIRONMENT.items():
        if isinstance(value, str):
            monkeypatch.setenv(name, value)
        else:
            # A platform store's name: the demo store (its parameters are empty by default).
            if "Fn::Sub" in value:  # an ARN written out
                monkeypatch.setenv(name, value["Fn::Sub"])
                continue
            ref = value["Fn::If"][1]["Ref"] if "Fn::If" in value else value["Ref"]
            monkeypatch.setenv(name, str(parameters[ref]["Default"]) if ref in parameters else ref)
    settings = Settings.from_env()
    assert (settings.jobs_table, settings.org_data_table, settings.api_keys_table) == (
        "JobsTable",
        "OrgDataTable",
        "ApiKeysTable",
    )
    assert (settings.assets_bucket, settings.exports_bucket) == ("AssetsBucket", "ExportsBucket")
    assert settings.export_queue_url == "ExportQueue"
    assert settings.rate_limits_table == "RateLimitsTable"
    assert (settings.download_url_ttl_seconds, settings.job_retention_days) == (3600, 7)
    assert settings.event_bus_name == "ExportEventBus"
    assert settings.imports_table == "ImportsTable" and settings.import_state_machine_arn.endswith("-import")


def grant_target(resource: Any) -> tuple[str, ...]:
    """(logical id[, object scope]) that an IAM resource of the template points at."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        assert resource["Fn::GetAtt"][1] == "Arn"
        return (resource["Fn::GetAtt"][0],)
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        if resource["Fn::Sub"] == STATE_MACHINE_ARN:
            return ("ExportStateMachine",)
        if resource["Fn::Sub"] == EXECUTIONS_ARN:
            return ("ExportStateMachine", "executions")
        if resource["Fn::Sub"] == f"arn:aws:iam::${{AWS::AccountId}}:role/{DOWNLOAD_SIGNING_ROLE_NAME}":
            return ("DownloadSigningRole",)
        text, variables = (
            (resource["Fn::Sub"], {}) if isinstance(resource["Fn::Sub"], str) else resource["Fn::Sub"]
        )
        match = re.fullmatch(
            r"arn:(?:aws|\$\{AWS::Partition\}):"
            r"(?:s3:::|dynamodb:\$\{AWS::Region\}:\$\{AWS::AccountId\}:table/)\$\{(\w+)\}(?:/(.+))?",
            text,
        )
        assert match, f"unexpected ARN form {text!r}"
        target = match[1]
        if variables:  # a platform store's ARN, from its one conditional name
            ((variable, value),) = variables.items()
            stores = [store for store in PLATFORM_STORES if value == store_name(store)]
            assert variable == target and stores, f"{variables} is not a platform store's name"
            target = stores[0]
        return (target, match[2]) if match[2] else (target,)
    raise AssertionError(f"a grant on {resource!r}, not on a resource of this template")


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_policies_are_inline_allow_statements_on_named_resources(
    template: dict[str, Any], name: str
) -> None:
    """Exact actions on named resources, so that each can be taken out and proven needed
    (tests/infra/test_least_privilege.py, which replaced a hand-kept table of grants)."""
    for policy in function_properties(template, name)["Policies"]:
        assert isinstance(policy, dict) and "Statement" in policy, "only inline statements: exact actions"
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            assert "*" not in as_list(statement["Action"])
            assert all(target != "*" for target in as_list(statement["Resource"]))


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_logs_to_its_own_group_with_retention(resources: dict[str, Any], name: str) -> None:
    groups = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Logs::LogGroup"
        and r["Properties"].get("LogGroupName") == {"Fn::Sub": f"/aws/lambda/${{{name}}}"}
    ]
    assert len(groups) == 1
    assert groups[0]["RetentionInDays"] == 30


def test_template_uses_only_what_the_local_stack_resolves(template: dict[str, Any]) -> None:
    names = set(template["Resources"]) | set(template["Parameters"])
    conditions = set(template["Conditions"])
    for node in walk(template["Conditions"]):
        if isinstance(node, dict) and len(node) == 1:
            (key,) = node
            if key.startswith("Fn::") or key == "Condition":
                assert key in RESOLVABLE_CONDITION_FUNCTIONS, f"{key} in {node}"
            if key == "Condition":
                assert node[key] in conditions, f"!Condition {node[key]}"
            if key == "Ref":
                assert node[key] in set(template["Parameters"]) | RESOLVABLE_PSEUDO_PARAMETERS, node
    for logical_id, resource in template["Resources"].items():
        if "Condition" in resource:
            assert resource["Condition"] in conditions, f"{logical_id}: Condition {resource['Condition']}"
    for node in walk({part: value for part, value in template.items() if part != "Conditions"}):
        if isinstance(node, dict) and len(node) == 1:
            (key,) = node
            if key.startswith("Fn::") or key == "Ref":
                assert key in RESOLVABLE_INTRINSICS, f"{key} in {node}"
            if key == "Fn::If":
                condition, _, _ = node[key]
                assert condition in conditions, f"!If on {condition}"
            if key == "Fn::Sub":
                # The one-string form, or [string, {variable: value}] (a store's ARN from its name).
                text, variables = (node[key], {}) if isinstance(node[key], str) else node[key]
                assert isinstance(text, str) and isinstance(variables, dict), node
                for variable in re.findall(r"\$\{([^}]*)\}", text):
                    known = names | RESOLVABLE_PSEUDO_PARAMETERS | set(variables)
                    assert variable in known, f"{variable} in {text!r}"
            if key == "Ref":
                # AWS::NoValue: an item or property left out (LocalStack.resolve drops it too).
                known = names | RESOLVABLE_PSEUDO_PARAMETERS | {"AWS::NoValue"}
                assert node[key] in known, f"!Ref {node[key]}"
            if key == "Fn::GetAtt":
                # ...or the role SAM generates for a function (<logical id>Role).
                generated_roles = {f"{name}Role" for name in FUNCTIONS}
                assert node[key][0] in set(template["Resources"]) | generated_roles, f"!GetAtt {node[key]}"


def test_outputs_name_the_api_url_and_every_store(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["ApiUrl"]["Value"] == {
        "Fn::Sub": "https://${ExportApi}.execute-api.${AWS::Region}.amazonaws.com/live"
    }
    referenced = {output["Value"].get("Ref") for output in outputs.values()}
    assert {"JobsTable", "ExportsBucket", "ExportQueue"} <= referenced
    # The platform's stores as the functions use them: the demo ones, or those the parameters name.
    for store in PLATFORM_STORES:
        assert outputs[f"{store}Name"]["Value"] == store_name(store)


def test_samconfig_deploys_the_data_export_stack() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    assert config["default"]["global"]["parameters"]["stack_name"] == "data-export"
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True


# ---------------------------------------------------------------------------------------------- sam build


def python313_bin() -> Path | None:
    """The bin folder of a real Python 3.13 (not a pyenv shim, which may not select 3.13)."""
    pyenv = shutil.which("pyenv")
    if pyenv:
        listed = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True, check=False)
        versions = [v for v in listed.stdout.split() if re.fullmatch(r"3\.13\.\d+", v)]
        if versions:
            latest = max(versions, key=lambda v: int(v.rsplit(".", 1)[1]))
            prefix = subprocess.run([pyenv, "prefix", latest], capture_output=True, text=True, check=True)
            return Path(prefix.stdout.strip()) / "bin"
    found = shutil.which("python3.13")
    if found:
        probe = subprocess.run(
            [found, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return Path(probe.stdout.strip()).parent
    return None


@pytest.mark.slow
def test_sam_build_packs_the_layer_for_python313_arm64(tmp_path: Path) -> None:
    bin_dir = python313_bin()
    if bin_dir is None:
        pytest.skip("python3.13 is not installed: sam build needs the runtime's interpreter on PATH")
    build_dir = tmp_path / "build"
    result = subprocess.run(
        [
            tool("sam"),
            "build",
            "--template-file",
            str(TEMPLATE),
            "--build-dir",
            str(build_dir),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        cwd=ROOT,
        env=sam_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    packages = build_dir / "SharedLayer" / "python"
    assert (packages / "data_export" / "__init__.py").is_file()
    assert (packages / "aws_lambda_powertools" / "__init__.py").is_file()
    assert (packages / "aws_xray_sdk").is_dir()
    # Native extensions must be Lambda's, not this machine's.
    assert list((packages / "pydantic_core").glob("*.cpython-313-aarch64-linux-gnu.so"))
    assert list((packages / "isal").glob("*.cpython-313-aarch64-linux-gnu.so"))
    for name in FUNCTIONS:
        assert (build_dir / name).is_dir()


def test_state_machine_retries_transient_errors_and_fails_cleanly(resources: dict[str, Any]) -> None:
    machine = resources["ExportStateMachine"]["Properties"]
    assert machine["Name"] == {"Fn::Sub": "${AWS::StackName}-export"}
    assert (
        resources["ExportWorkerFunction"]["Properties"]["Environment"]["Variables"][
            "EXPORT_STATE_MACHINE_ARN"
        ]
    ) == {"Fn::Sub": STATE_MACHINE_ARN}
    states = machine["Definition"]["States"]
    tasks = {
        "Plan": states["Plan"],
        "BuildUnit": states["BuildUnits"]["ItemProcessor"]["States"]["BuildUnit"],
        "Assemble": states["Assemble"],
        "Fail": states["Fail"],
    }
    for name, task in tasks.items():
        retried = {error for retry in task["Retry"] for error in retry["ErrorEquals"]}
        # A task's own timeout (States.Timeout) and its Lambda's (Sandbox.Timedout) alike.
        timeouts = {"States.Timeout", "Sandbox.Timedout"}
        assert {"TransientExportError", "Lambda.ServiceException", *timeouts} <= retried, name
        assert all(retry["BackoffRate"] > 1 and retry["MaxAttempts"] >= 3 for retry in task["Retry"]), name
    for name in ("Plan", "BuildUnits", "Assemble"):
        assert states[name]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Fail"}
        ]
    assert states["Fail"]["Next"] == "Failed" and states["Failed"]["Type"] == "Fail"
    substitutions = machine["DefinitionSubstitutions"]
    for key, function in (
        ("PlanFunctionArn", "ExportPlanFunction"),
        ("BuildUnitFunctionArn", "ExportBuildUnitFunction"),
        ("AssembleFunctionArn", "ExportAssembleFunction"),
        ("FailFunctionArn", "ExportFailFunction"),
    ):
        assert substitutions[key] == {"Fn::GetAtt": [function, "Arn"]}
        assert {"LambdaInvokePolicy": {"FunctionName": {"Ref": function}}} in machine["Policies"]
