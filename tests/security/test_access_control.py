"""Authorization follows the stores at once (no cache to outlive a demotion or a revocation), and answers
reveal nothing about organizations or jobs the caller may not see."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from data_export.auth import hash_key
from data_export.ids import new_id
from data_export.settings import get_settings
from data_export.storage.layout import partition_key

from tests.e2e.client import BASE, Reply, call
from tests.security.helpers import CREATED_AT, new_key, organization, seed

ACME = "eHcFM2wk4RdyYG8yMrTGbQ"
ACME_KEY = "csb_uUFH9C2jfqBbHIJKFd8BgEs09C8twYBo_b5b88299"
OTHER = "TpR7vWk3Qx9mHc2NbY5sLe"
OTHER_KEY = "csb_8x6pjtsSB151CEvNQDVzoe4MtlgbXxMZ_fbb12fee"


@pytest.fixture
def team(stack: Any, tmp_path: Path) -> dict[str, Any]:
    """A fresh organization with a manager whose user key (csu) may export."""
    member_key = new_key("csu")
    data = organization("Team", new_key())
    manager = {
        "id": new_id(),
        "email": "manager@team.example",
        "name": "Manager",
        "role": "manager",
        "joined_at": CREATED_AT,
    }
    data["members"].append(manager)
    data["api_keys"].append(
        {
            "id": new_id(),
            "name": "laptop",
            "key": member_key,
            "member_id": manager["id"],
            "created_at": CREATED_AT,
        }
    )
    seed(stack, tmp_path, data)
    return {"organization_id": data["organization"]["id"], "member": manager, "key": member_key}


def start(api_url: str, organization_id: str, key: str | None) -> Reply:
    return call("POST", f"{api_url}{BASE}/{organization_id}", key)


def set_member(stack: Any, organization_id: str, member: dict[str, Any] | None, member_id: str) -> None:
    """Change (or, with None, remove) a member in the org-data store, as the platform would."""
    dynamodb = stack.client("dynamodb")
    table = get_settings().org_data_table
    key = {"partition": {"S": partition_key(organization_id, "members")}, "record_id": {"S": member_id}}
    if member is None:
        dynamodb.delete_item(TableName=table, Key=key)
    else:
        dynamodb.put_item(TableName=table, Item={**key, "record": {"S": json.dumps(member)}})


def test_a_demotion_takes_effect_on_the_next_request(api_url: str, stack: Any, team: dict[str, Any]) -> None:
    organization_id, member = team["organization_id"], team["member"]
    assert start(api_url, organization_id, team["key"]).status == 200
    set_member(stack, organization_id, {**member, "role": "editor"}, member["id"])
    reply = start(api_url, organization_id, team["key"])
    assert reply.status == 403 and "role 'editor'" in reply.json()["message"]
    set_member(stack, organization_id, {**member, "role": "owner"}, member["id"])
    assert start(api_url, organization_id, team["key"]).status == 200


def test_a_member_who_leaves_loses_access_at_once(api_url: str, stack: Any, team: dict[str, Any]) -> None:
    assert start(api_url, team["organization_id"], team["key"]).status == 200
    set_member(stack, team["organization_id"], None, team["member"]["id"])
    assert start(api_url, team["organization_id"], team["key"]).status == 401


def test_a_revoked_key_is_refused_on_the_next_request(api_url: str, stack: Any, team: dict[str, Any]) -> None:
    assert start(api_url, team["organization_id"], team["key"]).status == 200
    stack.client("dynamodb").update_item(
        TableName=get_settings().api_keys_table,
        Key={"key_hash": {"S": hash_key(team["key"])}},
        UpdateExpression="SET is_active = :no",
        ExpressionAttributeValues={":no": {"BOOL": False}},
    )
    reply = start(api_url, team["organization_id"], team["key"])
    assert reply.status == 401 and "revoked" in reply.json()["message"]


def test_a_member_cannot_claim_a_role_through_the_key_record(
    api_url: str, stack: Any, team: dict[str, Any]
) -> None:
    """The role comes from the member record, never from the key: a 'role' on the key changes nothing."""
    organization_id, member = team["organization_id"], team["member"]
    set_member(stack, organization_id, {**member, "role": "billing"}, member["id"])
    stack.client("dynamodb").update_item(
        TableName=get_settings().api_keys_table,
        Key={"key_hash": {"S": hash_key(team["key"])}},
        UpdateExpression="SET #role = :owner",
        ExpressionAttributeNames={"#role": "role"},
        ExpressionAttributeValues={":owner": {"S": "owner"}},
    )
    assert start(api_url, organization_id, team["key"]).status == 403


def _same_answer(first: Reply, second: Reply) -> None:
    assert (first.status, first.body) == (second.status, second.body)


def test_without_a_key_nothing_can_be_told_apart(api_url: str) -> None:
    job = start(api_url, ACME, ACME_KEY).json()["job_id"]
    unknown_org, unknown_job = new_id(), new_id()
    _same_answer(
        call("GET", f"{api_url}{BASE}/{ACME}/{job}"), call("GET", f"{api_url}{BASE}/{ACME}/{unknown_job}")
    )
    _same_answer(
        call("GET", f"{api_url}{BASE}/{ACME}/{job}"), call("GET", f"{api_url}{BASE}/{unknown_org}/{job}")
    )
    _same_answer(start(api_url, ACME, None), start(api_url, unknown_org, None))
    # A malformed key on a real job says no more than on a made-up one.
    _same_answer(
        call("GET", f"{api_url}{BASE}/{ACME}/{job}", "csb_forged"),
        call("GET", f"{api_url}{BASE}/{unknown_org}/{unknown_job}", "csb_forged"),
    )


def test_another_organization_cannot_tell_existing_ids_from_made_up_ones(api_url: str) -> None:
    job = start(api_url, ACME, ACME_KEY).json()["job_id"]
    # Another tenant probing Acme's organization id and job id.
    _same_answer(start(api_url, ACME, OTHER_KEY), start(api_url, new_id(), OTHER_KEY))
    _same_answer(
        call("GET", f"{api_url}{BASE}/{ACME}/{job}", OTHER_KEY),
        call("GET", f"{api_url}{BASE}/{new_id()}/{job}", OTHER_KEY),
    )
    # Acme's job id under the prober's own organization: just an unknown job.
    _same_answer(
        call("GET", f"{api_url}{BASE}/{OTHER}/{job}", OTHER_KEY),
        call("GET", f"{api_url}{BASE}/{OTHER}/{new_id()}", OTHER_KEY),
    )


def test_the_new_routes_keep_other_tenants_out_and_reveal_nothing(api_url: str) -> None:
    """Download, list and DELETE guard like the poll: another tenant neither acts on Acme's export nor
    tells its ids from made-up ones."""
    job = start(api_url, ACME, ACME_KEY).json()["job_id"]
    for method, suffix in (("GET", "/download"), ("DELETE", "")):
        _same_answer(
            call(method, f"{api_url}{BASE}/{ACME}/{job}{suffix}", OTHER_KEY),
            call(method, f"{api_url}{BASE}/{new_id()}/{job}{suffix}", OTHER_KEY),
        )
        _same_answer(
            call(method, f"{api_url}{BASE}/{OTHER}/{job}{suffix}", OTHER_KEY),
            call(method, f"{api_url}{BASE}/{OTHER}/{new_id()}{suffix}", OTHER_KEY),
        )
        assert call(method, f"{api_url}{BASE}/{ACME}/{job}{suffix}", OTHER_KEY).status == 403
        assert call(method, f"{api_url}{BASE}/{ACME}/{job}{suffix}").status == 401
    _same_answer(
        call("GET", f"{api_url}{BASE}/{ACME}", OTHER_KEY),
        call("GET", f"{api_url}{BASE}/{new_id()}", OTHER_KEY),
    )
    # Acme's export was neither canceled nor deleted by any of it.
    polled = call("GET", f"{api_url}{BASE}/{ACME}/{job}", ACME_KEY).json()
    assert polled["error_code"] is None, polled


# --- stored data the service cannot read: 401 with a warning, never a 5xx -----------------------------


def put_key_item(stack: Any, raw_key: str, **attributes: Any) -> str:
    """A key record written straight into the local API-keys table, as a platform bug might leave it. Of
    an organization of its own: the example organization's export must not list it among its keys."""
    key_id = new_id()
    item = {
        "key_hash": {"S": hash_key(raw_key)},
        "organization_id": {"S": new_id()},
        "key_id": {"S": key_id},
        "prefix": {"S": raw_key[:3]},
        "is_active": {"BOOL": True},
        "record": {"S": json.dumps({"id": key_id, "name": "bad", "created_at": CREATED_AT})},
        **attributes,
    }
    stack.client("dynamodb").put_item(TableName=get_settings().api_keys_table, Item=item)
    return key_id


def record_with(**fields: Any) -> dict[str, str]:
    return {"S": json.dumps({"id": "x", "name": "bad", "created_at": CREATED_AT, **fields})}


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ({"expires_at": {"S": "2099-01-01T00:00:00"}}, "expires_at"),
        ({"expires_at": {"S": "2099-01-01"}}, "expires_at"),
        ({"expires_at": {"S": "soon"}}, "expires_at"),
        ({"record": record_with(rate_limit_per_minute="fast")}, "rate_limit_per_minute"),
        ({"record": record_with(rate_limit_per_day=[1])}, "rate_limit_per_day"),
    ],
    ids=["no-offset", "date-only", "garbage-expiry", "text-override", "list-override"],
)
def test_a_key_record_the_service_cannot_read_is_a_401_with_a_warning(
    api_url: str, stack: Any, attributes: dict[str, Any], field: str
) -> None:
    from tests.security.test_no_secrets_in_logs import captured_logs

    raw_key = new_key()
    key_id = put_key_item(stack, raw_key, **attributes)
    for function in stack.functions:  # import the handlers (and create their loggers) before capturing
        stack.handler(function)
    with captured_logs() as sink:
        replies = [
            start(api_url, ACME, raw_key),
            call("GET", f"{api_url}{BASE}/{ACME}/{new_id()}", raw_key),
            call("GET", f"{api_url}{BASE}/{ACME}", raw_key),
        ]
    for reply in replies:
        assert reply.status == 401, reply.body
        body = reply.json()
        assert body["error"] == "unauthorized" and "record" in body["message"], body
    warnings = [
        entry
        for entry in map(_json_line, sink.getvalue().splitlines())
        if entry.get("level") == "WARNING" and entry.get("key_id") == key_id
    ]
    assert len(warnings) == len(replies) and {entry["field"] for entry in warnings} == {field}
    logged = sink.getvalue()
    assert raw_key not in logged and hash_key(raw_key) not in logged and raw_key.split("_")[1] not in logged


def _json_line(line: str) -> dict[str, Any]:
    try:
        entry = json.loads(line)
    except ValueError:
        return {}
    return entry if isinstance(entry, dict) else {}


def test_a_member_record_without_a_role_refuses_the_user_key(
    api_url: str, stack: Any, team: dict[str, Any]
) -> None:
    organization_id, member = team["organization_id"], team["member"]
    set_member(
        stack, organization_id, {key: value for key, value in member.items() if key != "role"}, member["id"]
    )
    reply = start(api_url, organization_id, team["key"])
    assert reply.status == 401 and reply.json()["error"] == "unauthorized"


# --- the reads that decide access are strongly consistent ---------------------------------------------


def test_the_key_and_the_members_role_are_read_strongly_consistent(
    api_url: str, team: dict[str, Any]
) -> None:
    from tests.dynamo_hooks import recorded_calls

    settings = get_settings()
    with (
        recorded_calls("GetItem", settings.api_keys_table) as key_reads,
        recorded_calls("GetItem", settings.org_data_table) as org_reads,
    ):
        assert start(api_url, team["organization_id"], team["key"]).status == 200
    assert [read["Key"] for read in key_reads] == [{"key_hash": {"S": hash_key(team["key"])}}]
    assert all(read.get("ConsistentRead") is True for read in key_reads)
    member_key = {
        "partition": {"S": partition_key(team["organization_id"], "members")},
        "record_id": {"S": team["member"]["id"]},
    }
    member_reads = [read for read in org_reads if read["Key"] == member_key]
    assert len(member_reads) == 1 and member_reads[0].get("ConsistentRead") is True
