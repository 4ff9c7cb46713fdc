"""strict_aws's policy evaluation, without a server: AWS's matching rules and a trust policy's principals."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from data_export_cli.strict_aws import _Caller, _decide, _document, _trust_principal

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/jobs"


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_wildcards_match_as_iam_does() -> None:
    grant = policy({"Effect": "Allow", "Action": "dynamodb:Get*", "Resource": "arn:aws:s3:::a.b/exp?rts/*"})
    assert _decide([grant], "dynamodb:GetItem", "arn:aws:s3:::a.b/exports/x/y") == "Allow"
    assert _decide([grant], "dynamodb:GetItem", "arn:aws:s3:::aXb/exports/x") == ""  # "." is no wildcard
    assert _decide([grant], "DynamoDB:getitem", "arn:aws:s3:::a.b/exports/x") == "Allow"  # actions: any case
    assert _decide([grant], "dynamodb:GetItem", "arn:aws:s3:::a.b/EXPORTS/x") == ""  # resources: exact case


def test_a_table_grant_covers_neither_other_tables_nor_its_indexes() -> None:
    grant = policy({"Effect": "Allow", "Action": ["dynamodb:Query"], "Resource": [TABLE]})
    assert _decide([grant], "dynamodb:Query", TABLE) == "Allow"
    assert _decide([grant], "dynamodb:Query", f"{TABLE}/index/by_created_at") == ""
    assert _decide([grant], "dynamodb:Query", f"{TABLE}-archive") == ""
    assert _decide([grant], "dynamodb:ListTables", "*") == ""


def test_an_explicit_deny_in_any_policy_wins() -> None:
    everything = policy({"Effect": "Allow", "Action": "*", "Resource": "*"})
    deny = {"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "s3:Delete*", "Resource": "*"}}
    assert _decide([everything, deny], "s3:DeleteObject", "arn:aws:s3:::b/k") == "Deny"
    assert _decide([everything, deny], "s3:GetObject", "arn:aws:s3:::b/k") == "Allow"


def test_not_action_and_not_resource() -> None:
    grant = policy({"Effect": "Allow", "NotAction": "iam:*", "NotResource": "arn:aws:s3:::private/*"})
    assert _decide([grant], "s3:GetObject", "arn:aws:s3:::public/k") == "Allow"
    assert _decide([grant], "s3:GetObject", "arn:aws:s3:::private/k") == ""
    assert _decide([grant], "iam:CreateUser", "*") == ""


def test_unevaluated_conditions_fail_closed() -> None:
    condition = {"Bool": {"aws:SecureTransport": "true"}}
    allow = policy({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": condition})
    deny = policy({"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": condition})
    assert _decide([allow], "s3:GetObject", "arn:aws:s3:::b/k") == ""
    assert (
        _decide([policy({"Effect": "Allow", "Action": "*", "Resource": "*"}), deny], "s3:GetObject", "*")
        == "Deny"
    )


def test_documents_in_every_form_moto_keeps_them() -> None:
    document = policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})
    text = json.dumps(document)
    managed = SimpleNamespace(
        versions=[
            SimpleNamespace(document="{}", is_default=False),
            SimpleNamespace(document=text, is_default=True),
        ]
    )
    for form in (text, quote(text), {"policy_document": text}, managed):
        assert _document(form) == document


def caller(arn: str) -> _Caller:
    return _Caller(SimpleNamespace(arn=arn, account_id=arn.split(":")[4]))


def test_trust_principals_name_callers_as_aws_does() -> None:
    session = caller("arn:aws:sts::123456789012:assumed-role/worker/job-1")
    user = caller("arn:aws:iam::123456789012:user/admin")

    by_role = {"AWS": "arn:aws:iam::123456789012:role/service/worker"}
    assert _trust_principal(by_role, session) == "principal"
    assert _trust_principal({"AWS": "arn:aws:iam::123456789012:role/worker2"}, session) is None
    assert _trust_principal({"AWS": ["arn:aws:iam::123456789012:user/admin"]}, user) == "principal"
    assert _trust_principal({"AWS": "arn:aws:iam::123456789012:root"}, user) == "account"
    assert _trust_principal({"AWS": "123456789012"}, session) == "account"
    assert _trust_principal({"AWS": "arn:aws:iam::210987654321:root"}, user) is None
    assert _trust_principal({"Service": "lambda.amazonaws.com"}, user) is None
    assert _trust_principal("*", user) == "principal"
