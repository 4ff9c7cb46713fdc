"""The template's SnapStart option: off by default; when on, every function's published versions are
snapshotted, and every event source invokes the published alias (where SnapStart applies)."""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def translated(parameters: dict[str, str]) -> dict[str, Any]:
    body = yaml_parse(TEMPLATE.read_text())
    for resource in body["Resources"].values():
        props = resource.setdefault("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://local/code.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = "s3://local/layer.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    try:
        output: dict[str, Any] = transform(copy.deepcopy(body), parameters, NoManagedPolicies())
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION")
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous
    return output


def resolve_if(value: Any, conditions: dict[str, bool]) -> Any:
    """The one intrinsic the option uses, as CloudFormation resolves it."""
    if isinstance(value, dict) and "Fn::If" in value:
        name, then, otherwise = value["Fn::If"]
        chosen = then if conditions[name] else otherwise
        return None if chosen == {"Ref": "AWS::NoValue"} else chosen
    return value


def test_the_option_is_a_parameter_off_by_default() -> None:
    body = yaml_parse(TEMPLATE.read_text())
    assert body["Parameters"]["SnapStart"]["Default"] == "Disabled"
    assert set(body["Parameters"]["SnapStart"]["AllowedValues"]) == {"Enabled", "Disabled"}
    assert body["Conditions"]["SnapStartEnabled"] == {"Fn::Equals": [{"Ref": "SnapStart"}, "Enabled"]}


@pytest.mark.parametrize("enabled", [True, False], ids=["enabled", "disabled"])
def test_snapstart_follows_the_parameter_on_every_function(enabled: bool) -> None:
    output = translated({"SnapStart": "Enabled" if enabled else "Disabled"})
    resources = output["Resources"]
    functions = {k: v for k, v in resources.items() if v["Type"] == "AWS::Lambda::Function"}
    assert len(functions) == 14
    for logical_id, function in functions.items():
        snapstart = resolve_if(function["Properties"].get("SnapStart"), {"SnapStartEnabled": enabled})
        assert snapstart == ({"ApplyOn": "PublishedVersions"} if enabled else None), logical_id
        # A published version behind the alias, whatever the parameter (SAM cannot make it conditional).
        assert f"{logical_id}Aliaslive" in resources


def test_every_event_source_invokes_the_published_alias() -> None:
    resources = translated({"SnapStart": "Enabled"})["Resources"]
    mappings = [r for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    permissions = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    assert mappings and permissions
    for resource in mappings + permissions:
        target = resource["Properties"]["FunctionName"]
        assert isinstance(target, dict) and str(target.get("Ref", "")).endswith("Aliaslive"), target
