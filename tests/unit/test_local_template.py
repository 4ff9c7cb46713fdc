"""How the local stack reads template.yaml: routes, queues and schedules of every function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from data_export_cli.stack import LocalStack, substitute
from data_export_cli.template import Template, load_template, rate_seconds, with_parameters, write_template


def test_functions_are_wired_as_the_template_says() -> None:
    functions = {spec.logical_id: spec for spec in Template(load_template()).functions()}
    assert functions["StartExportFunction"].module == "functions.start_export.app"
    routes = {(route.method, route.path) for spec in functions.values() for route in spec.routes}
    assert routes == {
        ("POST", "/dashboard/api/v1/data-export/{organization_id}"),
        ("GET", "/dashboard/api/v1/data-export/{organization_id}/{job_id}"),
        ("GET", "/dashboard/api/v1/data-export/{organization_id}/{job_id}/download"),
        ("GET", "/dashboard/api/v1/data-export/{organization_id}"),
        ("DELETE", "/dashboard/api/v1/data-export/{organization_id}/{job_id}"),
        ("POST", "/dashboard/api/v1/data-import/{organization_id}"),
        ("GET", "/dashboard/api/v1/data-import/{organization_id}"),
        ("GET", "/dashboard/api/v1/data-import/{organization_id}/{import_id}"),
        ("DELETE", "/dashboard/api/v1/data-import/{organization_id}/{import_id}"),
        ("POST", "/dashboard/api/v1/data-import/{organization_id}/{import_id}/upload"),
        ("POST", "/dashboard/api/v1/data-import/{organization_id}/{import_id}/start"),
    }
    get_route = functions["GetExportFunction"].routes[0]
    match = get_route.pattern.match("/dashboard/api/v1/data-export/abc/def")
    assert match is not None and match.groups() == ("abc", "def")
    assert get_route.pattern.match("/dashboard/api/v1/data-export/abc/def/ghi") is None
    assert functions["ExportWorkerFunction"].queues == (("ExportQueue", 1),)
    assert functions["ExportDeadLetterFunction"].queues == (("ExportDeadLetterQueue", 10),)
    assert functions["ExportSweeperFunction"].schedules == (300,)
    assert (functions["ExportPlanFunction"].module, functions["ExportPlanFunction"].handler) == (
        "functions.export_steps.app",
        "plan",
    )


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(5 minutes)", 300), ("rate(1 minute)", 60), ("rate(2 hours)", 7200), ("rate(1 day)", 86400)],
)
def test_rate_expressions(expression: str, seconds: int) -> None:
    assert rate_seconds(expression) == seconds


def test_cron_expressions_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="rate"):
        rate_seconds("cron(0 12 * * ? *)")


def test_definition_substitutions_replace_only_known_names() -> None:
    assert substitute(
        '{"F": "${PlanFunctionArn}", "P": "$.x", "O": "${Other}"}', {"PlanFunctionArn": "arn:x"}
    ) == ('{"F": "arn:x", "P": "$.x", "O": "${Other}"}')


# ------------------------------------------------------------------ conditions and the platform's stores

PLATFORM_STORES = {
    "OrgDataTableName": "platform-org-data",
    "ApiKeysTableName": "platform-api-keys",
    "AssetsBucketName": "platform-assets",
}


def local_stack(tmp_path: Path, parameters: dict[str, Any] | None = None) -> LocalStack:
    """A local stack of template.yaml, its parameters defaulting to ``parameters``: not started, its
    resources' ARNs stand-ins (``arn:<logical id>``), their names what ``Ref`` falls back to."""
    body = with_parameters(load_template(), parameters or {})
    stack = LocalStack(template_path=write_template(body, tmp_path / "template.yaml"))
    roles = {f"{function}Role" for function in stack.functions}
    stack.arns.update({logical_id: f"arn:{logical_id}" for logical_id in {*stack.template.resources, *roles}})
    return stack


def store_names(stack: LocalStack) -> tuple[str, str, str]:
    """The functions' ORG_DATA_TABLE_NAME, API_KEYS_TABLE_NAME and ASSETS_BUCKET_NAME, resolved."""
    environment = stack.function_environment()
    return (
        environment["ORG_DATA_TABLE_NAME"],
        environment["API_KEYS_TABLE_NAME"],
        environment["ASSETS_BUCKET_NAME"],
    )


def test_the_demo_stores_are_created_when_no_name_is_given(tmp_path: Path) -> None:
    stack = local_stack(tmp_path)
    resources = stack.template.resources
    assert all(stack.condition(name) for name in ("CreateOrgDataTable", "CreateApiKeysTable"))
    assert stack._store_name("OrgDataTable", resources["OrgDataTable"]) == "data-export-OrgDataTable"
    assert stack._store_name("AssetsBucket", resources["AssetsBucket"], lowercase=True) == (
        "data-export-assetsbucket"
    )
    # The demo stores' own names (what !Ref OrgDataTable ... gives).
    assert store_names(stack) == tuple(
        stack._ref(store) for store in ("OrgDataTable", "ApiKeysTable", "AssetsBucket")
    )


def test_names_and_grants_follow_the_parameters(tmp_path: Path) -> None:
    stack = local_stack(tmp_path, PLATFORM_STORES)
    resources = stack.template.resources
    assert not any(
        stack.condition(name) for name in ("CreateOrgDataTable", "CreateApiKeysTable", "CreateAssetsBucket")
    )
    # Not the stack's own: the platform's stores, which the local stack creates under their names.
    assert stack._store_name("OrgDataTable", resources["OrgDataTable"]) == "platform-org-data"
    assert stack._store_name("AssetsBucket", resources["AssetsBucket"], lowercase=True) == "platform-assets"
    assert store_names(stack) == ("platform-org-data", "platform-api-keys", "platform-assets")
    (policy,) = stack.resolve(resources["ExportWorkerFunction"]["Properties"]["Policies"])
    granted = {
        arn
        for statement in policy["Statement"]
        for arn in (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
    }
    table = "arn:aws:dynamodb:us-east-1:123456789012:table"
    assert {
        f"{table}/platform-org-data",
        f"{table}/platform-api-keys/index/by_organization",
        "arn:aws:s3:::platform-assets/*",
        "arn:aws:s3:::platform-assets",
    } <= granted
    assert not {"arn:OrgDataTable", "arn:ApiKeysTable", "arn:AssetsBucket"} & granted
    assert not any("OrgDataTable" in arn or "ApiKeysTable" in arn or "AssetsBucket" in arn for arn in granted)
    # The demo bucket's log delivery grant is left out with the demo bucket (AWS::NoValue).
    document = stack.resolve(resources["AccessLogsBucketPolicy"]["Properties"]["PolicyDocument"])
    assert document["Statement"][0]["Condition"]["ArnLike"]["aws:SourceArn"] == ["arn:ExportsBucket"]


@pytest.mark.parametrize(
    "reference",
    [
        {"Ref": "OrgDataTable"},
        {"Fn::GetAtt": ["ApiKeysTable", "Arn"]},
        {"Fn::Sub": "arn:aws:s3:::${AssetsBucket}/*"},
        {"Fn::Sub": "${AssetsBucket.Arn}/*"},
    ],
)
def test_a_store_named_outside_its_condition_is_refused(tmp_path: Path, reference: dict[str, Any]) -> None:
    """As CloudFormation refuses it: so a grant that does not follow its parameter fails locally too."""
    stack = local_stack(tmp_path, PLATFORM_STORES)
    stack.physical["OrgDataTable"] = "platform-org-data"  # as started: the platform's store stands there
    with pytest.raises(ValueError, match="is not created"):
        stack.resolve(reference)


CONDITIONS_TEMPLATE = """
Parameters:
  Name: {Type: String, Default: ""}
  Size: {Type: Number, Default: 3}
Conditions:
  NoName: !Equals [!Ref Name, ""]
  SizeThree: !Equals ["3", !Ref Size]
  Named: !Not [!Condition NoName]
  Both: !And [!Condition NoName, !Condition SizeThree]
  Either: !Or [!Condition Named, !Equals [!Ref "AWS::Region", us-east-1]]
  Neither: !And [!Condition Named, !Not [!Condition SizeThree]]
Resources:
  Kept:
    Type: AWS::SQS::Queue
    Condition: NoName
  Left:
    Type: AWS::SQS::Queue
    Condition: Named
"""


def test_conditions_evaluate_as_cloudformation_does(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(CONDITIONS_TEMPLATE, encoding="utf-8")
    stack = LocalStack(template_path=path)
    values = {
        name: stack.condition(name) for name in ("NoName", "SizeThree", "Named", "Both", "Either", "Neither")
    }
    assert values == {
        "NoName": True,
        "SizeThree": True,  # a Number parameter compares as its string
        "Named": False,
        "Both": True,
        "Either": True,
        "Neither": False,
    }
    assert stack.creates(stack.template.resources["Kept"])
    assert not stack.creates(stack.template.resources["Left"])
    assert stack._store_name("Left", stack.template.resources["Left"]) is None  # no existing store named
    with pytest.raises(KeyError, match="Missing"):
        stack.condition("Missing")


def test_if_and_no_value_resolve_as_cloudformation_does(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(CONDITIONS_TEMPLATE, encoding="utf-8")
    stack = LocalStack(template_path=path)
    no_value = {"Ref": "AWS::NoValue"}
    assert stack.resolve({"Fn::If": ["NoName", "a", "b"]}) == "a"
    assert stack.resolve({"Fn::If": ["Named", "a", {"Fn::Sub": "${AWS::Partition}-${Size}"}]}) == "aws-3"
    assert stack.resolve(["x", {"Fn::If": ["Named", "y", no_value]}, "z"]) == ["x", "z"]
    assert stack.resolve({"Keep": 1, "Drop": {"Fn::If": ["NoName", no_value, 2]}}) == {"Keep": 1}
    assert stack.resolve(
        {"Fn::Sub": ["arn:${AWS::Partition}:s3:::${Bucket}/*", {"Bucket": {"Fn::If": ["Named", "a", "b"]}}]}
    ) == ("arn:aws:s3:::b/*")


def test_with_parameters_refuses_unknown_names() -> None:
    with pytest.raises(KeyError, match="NoSuchParameter"):
        with_parameters(load_template(), {"NoSuchParameter": "x"})
