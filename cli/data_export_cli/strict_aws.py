"""moto's IAM enforcement made as strict as AWS for the calls this service makes.

moto can check each request against the caller's IAM policies (``moto.settings.INITIAL_NO_AUTH_ACTION_COUNT``,
``moto/core/authorization.py``, ``moto/iam/access_control.py``), but too loosely to trust a least-privilege
template with it. ``install()`` patches moto's classes in this process (the local stack runs moto's server
in-process, so the patches apply to it); ``enforce()`` turns the checks on and off. What each patch is for:

- ``ActionAuthenticatorMixin._authenticate_and_authorize_normal_action`` (every service but S3). moto checks
  one action on one resource, and DynamoDB, Step Functions and EventBridge have no ``_determine_resource``,
  so it checked them on ``"*"``: a grant on a table ARN denied everything, one on ``"*"`` allowed all tables.
  Here each request is checked on its real ARNs: DynamoDB's table, ``table/T/index/I`` for a Query or Scan of
  an index (a table grant does not cover its indexes), every item of TransactWriteItems as its own
  PutItem/UpdateItem/DeleteItem/ConditionCheckItem, TransactGetItems as GetItem, BatchWriteItem and
  BatchGetItem on each table; Step Functions' state machine or execution ARN; EventBridge's bus of every
  PutEvents entry (default bus when the entry names none), buses and rules. SQS's batch calls need the
  single-message action, as on AWS. Errors take the caller's protocol, so that boto3 reads them as AWS's:
  JSON services answer 400 ``{"__type": "AccessDeniedException", ...}`` (SQS, a JSON service compatible with
  its query past, adds ``x-amzn-query-error`` so the code stays ``AccessDenied``); query services (STS, IAM)
  answer XML ``AccessDenied`` 403.
- Same method, STS ``AssumeRole``: moto compared the caller's ARN to the trust policy's ``Principal.AWS``
  as a plain string (and crashed on a ``Service`` principal). Here a role principal admits the role's
  sessions (``arn:aws:sts::ACCOUNT:assumed-role/R/*``), a user principal that user, and an account
  principal (``ACCOUNT`` or ``arn:aws:iam::ACCOUNT:root``) the account's identities whose own policy allows
  ``sts:AssumeRole`` on the role; ``Service``/``Federated`` principals admit no request. ``DurationSeconds``
  is held to AWS's bounds (900 s up to the role's MaxSessionDuration, one hour when chaining roles); moto
  records the session's expiry.
- ``ActionAuthenticatorMixin._authenticate_and_authorize_s3_action``. moto named S3's IAM actions after the
  API operations (``s3:UploadPart``, ``s3:HeadObject``, ``s3:ListObjectsV2``: actions no policy grants);
  here they are IAM's (PutObject covers the multipart upload, GetObject HeadObject, ListBucket the
  listings). CopyObject and UploadPartCopy also need ``s3:GetObject`` on the source (``x-amz-copy-source``);
  DeleteObjects (POST ?delete) needs ``s3:DeleteObject`` on each key, and reports each key it may not delete
  as an ``AccessDenied`` error of the response, as S3 does; GetObject/HeadObject of a missing key is
  ``AccessDenied`` (403), not ``NoSuchKey``, unless the caller may ``s3:ListBucket`` the bucket.
- Same method, presigned URLs (query-string SigV4). moto read only the Authorization header and failed
  (500). Here the URL is verified as S3 does: X-Amz-Expires at most 604800 (else 400
  ``AuthorizationQueryParametersError``), not expired (403 ``AccessDenied`` "Request has expired"), the
  signature recomputed with botocore's own ``S3SigV4QueryAuth`` (403 ``SignatureDoesNotMatch``), then the
  signer's policy must allow the action on the object. SigV2 presigned URLs are refused (400
  ``InvalidRequest``), as in the regions S3 opened since 2014. ``S3Response._invalid_headers`` (moto's own
  guess at a presigned URL's validity) stands aside for SigV4 URLs while enforced.
- Every request signed by an assumed role's session past its ``expiration`` (moto's STS backend keeps it) is
  refused: S3 400 ``ExpiredToken`` "The provided token has expired.", JSON services 400
  ``ExpiredTokenException``, query services 403 ``ExpiredToken``.

Policy evaluation is AWS's: an explicit Deny in any policy wins, else an Allow is needed; ``*`` and ``?``
wildcards, ``NotAction``/``NotResource``, action names case-insensitive, resource ARNs case-sensitive; an
assumed role's session policy (``Policy`` of AssumeRole) narrows what its role's policies allow. Every
authorization denial calls ``on_denied`` and logs one WARNING on ``data_export_cli.iam``; authentication
failures (bad signature, unknown key, expired URL or session) log a WARNING but are no ``Denial``: no grant
would fix them. Nothing of this runs while enforcement is off: then moto behaves as it always does.

What stays unenforced locally: resource-based policies (S3 bucket policies, which moto consults only in
part and without their conditions, SQS queue policies, KMS key policies: SSE-KMS is not checked at all,
Lambda permissions), permission boundaries, SCPs, ``Condition`` blocks of identity policies (not evaluated,
so they fail closed: an Allow carrying one grants nothing, a Deny carrying one always applies), policy
variables, PartiQL, presigned POST forms, anonymous S3 access (refused outright), the clock skew of
header-signed requests, and the resources of services this module does not know (checked on ``"*"`` as
moto does; SQS, STS and IAM resolve their own ARNs). Lambda is served by the local stack, which asks
``role_allows`` itself.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.utils import get_service_model, utcnow
from moto.iam.access_control import (
    AssumedRoleAccessKey,
    CreateAccessKeyFailure,
    IAMPolicyStatement,
    IAMRequest,
    S3IAMRequest,
    create_access_key,
)
from moto.iam.exceptions import NotFoundException
from moto.iam.models import get_account_id_from, iam_backends
from moto.iam.utils import format_incoming_conditional_values
from moto.s3.exceptions import MissingKey, S3ClientError
from moto.s3.responses import S3Response
from moto.sts.models import sts_backends
from moto.utilities.utils import get_partition
from werkzeug.exceptions import HTTPException

LOGGER = logging.getLogger("data_export_cli.iam")

MAX_PRESIGNED_EXPIRES = 604800  # seven days: S3's limit on X-Amz-Expires
_CLOCK_SKEW = timedelta(minutes=15)
_SIGV4_QUERY_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)


@dataclass(frozen=True)
class Denial:
    """A call IAM refused: who (the caller's ARN), what (``service:Action``), on which resource ARN."""

    principal: str
    action: str
    resource: str


@dataclass(frozen=True)
class Grant:
    """A call IAM allowed."""

    principal: str
    action: str
    resource: str


@dataclass
class _State:
    installed: bool = False
    on_denied: Callable[[Denial], None] | None = None
    on_allowed: Callable[[Grant], None] | None = None


_STATE = _State()


def install(
    on_denied: Callable[[Denial], None] | None = None,
    on_allowed: Callable[[Grant], None] | None = None,
) -> None:
    """Patch moto's classes in this process (once; a later call only replaces the callbacks)."""
    _STATE.on_denied = on_denied
    _STATE.on_allowed = on_allowed
    if _STATE.installed:
        return
    ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = _normal_action  # type: ignore[method-assign]
    ActionAuthenticatorMixin._authenticate_and_authorize_s3_action = _s3_action  # type: ignore[method-assign]
    moto_invalid_headers = S3Response._invalid_headers

    def invalid_headers(self: Any, url: str, headers: dict[str, str]) -> bool:
        if _enforcing() and "X-Amz-Signature=" in url:
            return False  # verified in full by _presigned_caller
        return bool(moto_invalid_headers(self, url, headers))

    S3Response._invalid_headers = invalid_headers  # type: ignore[method-assign]
    _STATE.installed = True


def current() -> tuple[bool, Callable[[Denial], None] | None, Callable[[Grant], None] | None]:
    """(enforcing, on_denied, on_allowed) as they are now: what a caller changing them puts back after."""
    return _enforcing(), _STATE.on_denied, _STATE.on_allowed


def enforce(enabled: bool) -> None:
    """Turn moto's IAM checks on (every request from now on) or off, for this whole process."""
    if enabled:
        install(_STATE.on_denied, _STATE.on_allowed)
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0 if enabled else float("inf")
    ActionAuthenticatorMixin.request_count = 0


def role_allows(role_name: str, action: str, resource: str, account_id: str = "123456789012") -> bool:
    """Whether the role's inline and attached policies in moto's IAM allow ``action`` on ``resource``."""
    backend = iam_backends[account_id]["aws"]
    try:
        role = backend.get_role(role_name)
    except NotFoundException:
        return False
    documents = [_document(policy) for policy in role.policies.values()]
    attached, _ = backend.list_attached_role_policies(role_name)
    documents += [_document(policy) for policy in attached]
    return _decide(documents, action, resource) == "Allow"


def _enforcing() -> bool:
    return bool(ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT)


# -- policy evaluation --------------------------------------------------------------------------------
def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@lru_cache(maxsize=4096)
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _matches(patterns: Any, value: str, *, ignore_case: bool = False) -> bool:
    return any(
        isinstance(pattern, str) and _wildcard(pattern, ignore_case).fullmatch(value)
        for pattern in _as_list(patterns)
    )


def _document(policy: Any) -> dict[str, Any]:
    """A policy document from any form moto keeps one in (managed policy, inline dict, JSON text)."""
    if hasattr(policy, "versions"):
        policy = next(version.document for version in policy.versions if version.is_default)
    elif isinstance(policy, dict) and "policy_document" in policy:
        policy = policy["policy_document"]
    if isinstance(policy, str):
        policy = json.loads(unquote(policy) if policy.lstrip().startswith("%") else policy)
    return policy if isinstance(policy, dict) else {}


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [statement for statement in _as_list(document.get("Statement", [])) if isinstance(statement, dict)]


def _statement_applies(statement: dict[str, Any], action: str, resource: str) -> bool:
    if "Action" in statement:
        concerned = _matches(statement["Action"], action, ignore_case=True)
    else:
        concerned = "NotAction" in statement and not _matches(
            statement["NotAction"], action, ignore_case=True
        )
    if "Resource" in statement:
        concerned = concerned and _matches(statement["Resource"], resource)
    else:
        concerned = (
            concerned and "NotResource" in statement and not _matches(statement["NotResource"], resource)
        )
    if concerned and "Condition" in statement:  # not evaluated: fail closed
        return statement.get("Effect") == "Deny"
    return concerned


def _decide(documents: list[dict[str, Any]], action: str, resource: str) -> str:
    """``"Deny"`` (explicit), ``"Allow"``, or ``""`` (nothing allows it: an implicit deny)."""
    allowed = False
    for document in documents:
        for statement in _statements(document):
            if _statement_applies(statement, action, resource):
                if statement.get("Effect") == "Deny":
                    return "Deny"
                allowed = allowed or statement.get("Effect") == "Allow"
    return "Allow" if allowed else ""


@dataclass
class _Caller:
    """The identity that signed a request: moto's access key object of an IAM user or an assumed role."""

    key: Any
    session: Any = None  # moto's AssumedRole, for a role session
    _documents: list[dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def arn(self) -> str:
        return str(self.key.arn)

    @property
    def account(self) -> str:
        return str(self.key.account_id)

    def expired(self) -> bool:
        return self.session is not None and self.session.expiration < utcnow()

    def decision(self, action: str, resource: str) -> str:
        if self._documents is None:
            try:
                self._documents = [_document(policy) for policy in self.key.collect_policies()]
            except NotFoundException:  # the user or role is gone
                self._documents = []
        verdict = _decide(self._documents, action, resource)
        session_policy = getattr(self.session, "policy", None)
        if verdict == "Allow" and session_policy:
            verdict = _decide([_document(session_policy)], action, resource)
        return verdict


def _caller(access_key: Any) -> _Caller:
    session = None
    if isinstance(access_key, AssumedRoleAccessKey):
        backend = sts_backends[access_key.account_id][access_key.partition]
        session = next(
            (role for role in backend.assumed_roles if role.access_key_id == access_key._access_key_id), None
        )
    return _Caller(access_key, session)


def _verdict(principal: str, decision: str, action: str, resource: str) -> str | None:
    """Report one authorization: the callbacks and the log. Returns the AccessDenied message when denied."""
    if decision == "Allow":
        if _STATE.on_allowed is not None:
            _STATE.on_allowed(Grant(principal, action, resource))
        return None
    LOGGER.warning("AccessDenied: %s is not authorized to perform %s on %s", principal, action, resource)
    if _STATE.on_denied is not None:
        _STATE.on_denied(Denial(principal, action, resource))
    reason = (
        "with an explicit deny in an identity-based policy"
        if decision == "Deny"
        else f"because no identity-based policy allows the {action} action"
    )
    return f"User: {principal} is not authorized to perform: {action} on resource: {resource} {reason}"


# -- every service but S3 ---------------------------------------------------------------------------------
class _AuthError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Rejection(HTTPException):
    """What moto's ``call_action`` answers for a failed authorization: ``description`` with ``code``."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(description=body)
        self.code = status


# The JSON protocol's names of the query protocol's authentication and authorization errors.
_JSON_ERRORS = {
    "AccessDenied": "AccessDeniedException",
    "SignatureDoesNotMatch": "InvalidSignatureException",
    "InvalidClientTokenId": "UnrecognizedClientException",
    "ExpiredToken": "ExpiredTokenException",
    "MissingAuthenticationToken": "MissingAuthenticationTokenException",
    "ValidationError": "ValidationException",
}
# Operations AWS authorizes as another action.
_ACTION_ALIASES = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


def _normal_action(self: Any, resource: str = "*") -> None:
    """Replaces ``ActionAuthenticatorMixin._authenticate_and_authorize_normal_action``."""
    if not _enforcing():
        ActionAuthenticatorMixin.request_count += 1
        return
    if self.headers.get("X-Amz-Target") in ActionAuthenticatorMixin.PUBLIC_OPERATIONS:
        return
    operation = self._get_action()
    try:
        request = _signed_request(self, IAMRequest)
        caller = _caller(request._access_key)
        if caller.expired():
            raise _AuthError("ExpiredToken", "The security token included in the request is expired")
        prefix = request._service
        if f"{prefix}:{operation}" == "sts:GetCallerIdentity":  # answered whatever the policies say
            return
        if f"{prefix}:{operation}" == "sts:AssumeRole":
            _assume_role(self, caller, resource)
            return
        for action, arn in _checks(self, prefix, operation, resource):
            message = _verdict(caller.arn, caller.decision(action, arn), action, arn)
            if message is not None:
                raise _AuthError("AccessDenied", message)
    except _AuthError as error:
        if error.code != "AccessDenied":
            LOGGER.warning("%s refused: %s %s", operation, error.code, error.message)
        raise _rejection(self, error) from None


def _signed_request(self: Any, request_class: type) -> Any:
    """moto's IAMRequest or S3IAMRequest of this header-signed request, its signature verified."""
    if "Authorization" not in self.headers:
        raise _AuthError("MissingAuthenticationToken", "Request is missing Authentication Token")
    path = self.raw_path
    query = urlsplit(self.uri).query
    if query:
        path += "?" + query
    try:
        request = request_class(
            account_id=self.current_account,
            method=self.method,
            path=path,
            data=self.data,
            body=self.raw_body,
            headers=self.headers,
            action=self._get_action(),
        )
        request.check_signature()
    except HTTPException as error:  # IAMRequest's InvalidClientTokenId, SignatureDoesNotMatch (S3's are not)
        raise _AuthError(
            getattr(error, "error_type", "AccessDenied"), getattr(error, "message", "")
        ) from None
    return request


def _rejection(self: Any, error: _AuthError) -> HTTPException:
    """The error as the service's protocol writes it (status, body, headers), for boto3 to parse."""
    try:
        protocol = str(get_service_model(self.boto3_service_name).protocol)
    except Exception:  # a service botocore does not model: moto's default, query
        protocol = "query"
    if protocol in ("json", "rest-json"):
        code = _JSON_ERRORS.get(error.code, error.code)
        json_type = "application/x-amz-json-1.0" if protocol == "json" else "application/json"
        self.response_headers["Content-Type"] = json_type
        self.response_headers["x-amzn-ErrorType"] = code
        if self.headers.get("x-amzn-query-mode") == "true":  # SQS: the query protocol's code rides along
            self.response_headers["x-amzn-query-error"] = f"{error.code};Sender"
        status = 400 if protocol == "json" or error.code == "ValidationError" else 403
        return _Rejection(status, json.dumps({"__type": code, "message": error.message}))
    body = (
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message>"
        "</Error><RequestId>0</RequestId></ErrorResponse>"
    )
    self.response_headers["Content-Type"] = "text/xml"
    return _Rejection(400 if error.code == "ValidationError" else 403, body)


def _json_body(self: Any) -> dict[str, Any]:
    try:
        body = json.loads(self.raw_body or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _checks(self: Any, prefix: str, operation: str, resource: str) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs AWS authorizes for this request, in order, without repeats."""
    arn_prefix = f"arn:{self.partition}:{prefix}:{self.region}:{self.current_account}:"
    if self.service_name == "dynamodb":
        checks = _dynamodb_checks(_json_body(self), operation, arn_prefix)
    elif self.service_name == "stepfunctions":
        checks = [(f"states:{operation}", _states_resource(_json_body(self), operation, arn_prefix))]
    elif self.service_name == "events":
        checks = _events_checks(_json_body(self), operation, arn_prefix)
    else:
        action = f"{prefix}:{operation}"
        checks = [(_ACTION_ALIASES.get(action, action), resource)]
    return list(dict.fromkeys(checks)) or [(f"{prefix}:{operation}", "*")]


def _dynamodb_checks(body: dict[str, Any], operation: str, arn_prefix: str) -> list[tuple[str, str]]:
    def table(name: str) -> str:
        return name if name.startswith("arn:") else f"{arn_prefix}table/{name}"

    if operation == "TransactWriteItems":
        actions = {
            "Put": "PutItem",
            "Update": "UpdateItem",
            "Delete": "DeleteItem",
            "ConditionCheck": "ConditionCheckItem",
        }
        return [
            (f"dynamodb:{actions[kind]}", table(request["TableName"]))
            for item in body.get("TransactItems", [])
            for kind, request in item.items()
            if kind in actions
        ]
    if operation == "TransactGetItems":
        return [
            ("dynamodb:GetItem", table(item["Get"]["TableName"]))
            for item in body.get("TransactItems", [])
            if "Get" in item
        ]
    if operation in ("BatchWriteItem", "BatchGetItem"):
        return [(f"dynamodb:{operation}", table(name)) for name in body.get("RequestItems", {})]
    if body.get("TableName"):
        arn = table(body["TableName"])
        if operation in ("Query", "Scan") and body.get("IndexName"):
            arn += f"/index/{body['IndexName']}"
        return [(f"dynamodb:{operation}", arn)]
    arn = next((body[name] for name in ("ResourceArn", "TableArn", "StreamArn") if body.get(name)), "*")
    return [(f"dynamodb:{operation}", arn)]


def _states_resource(body: dict[str, Any], operation: str, arn_prefix: str) -> str:
    for name in ("executionArn", "stateMachineArn", "mapRunArn", "activityArn", "resourceArn"):
        if body.get(name):
            return str(body[name])
    if operation == "CreateStateMachine" and body.get("name"):
        return f"{arn_prefix}stateMachine:{body['name']}"
    if operation == "CreateActivity" and body.get("name"):
        return f"{arn_prefix}activity:{body['name']}"
    return "*"


_RULE_OPERATIONS = frozenset(
    {
        "PutRule",
        "DeleteRule",
        "DescribeRule",
        "EnableRule",
        "DisableRule",
        "PutTargets",
        "RemoveTargets",
        "ListTargetsByRule",
    }
)


def _events_checks(body: dict[str, Any], operation: str, arn_prefix: str) -> list[tuple[str, str]]:
    def bus(name: str | None) -> str:
        return name if name and name.startswith("arn:") else f"{arn_prefix}event-bus/{name or 'default'}"

    if operation == "PutEvents":
        return [("events:PutEvents", bus(entry.get("EventBusName"))) for entry in body.get("Entries", [])]
    if operation in ("CreateEventBus", "DeleteEventBus", "DescribeEventBus"):
        return [(f"events:{operation}", bus(body.get("Name")))]
    if operation in _RULE_OPERATIONS:
        rule = body.get("Name") or body.get("Rule") or ""
        bus_name = str(body.get("EventBusName") or "default").rsplit("event-bus/", 1)[-1]
        path = rule if bus_name == "default" else f"{bus_name}/{rule}"
        return [(f"events:{operation}", f"{arn_prefix}rule/{path}")]
    return [(f"events:{operation}", str(body.get("ResourceARN") or "*"))]


# -- STS AssumeRole ---------------------------------------------------------------------------------------
_ROLE_ARN = re.compile(r"arn:([^:]+):iam::(\d{12}):role/(?:.*/)?([^/]+)")
_USER_ARN = re.compile(r"arn:([^:]+):iam::(\d{12}):user/(?:.*/)?([^/]+)")


def _trust_principal(principal: Any, caller: _Caller) -> str | None:
    """How a trust statement's Principal names the caller: ``"principal"``, ``"account"``, or not at all."""
    if principal == "*":
        return "principal"
    if not isinstance(principal, dict):
        return None
    named = None
    partition = caller.arn.split(":")[1]
    for value in _as_list(principal.get("AWS", [])):
        role, user = _ROLE_ARN.fullmatch(str(value)), _USER_ARN.fullmatch(str(value))
        if (
            value in ("*", caller.arn)
            or (role and caller.arn.startswith(f"arn:{role[1]}:sts::{role[2]}:assumed-role/{role[3]}/"))
            or (user and caller.arn == f"arn:{user[1]}:iam::{user[2]}:user/{user[3]}")
        ):
            return "principal"
        if value in (caller.account, f"arn:{partition}:iam::{caller.account}:root"):
            named = "account"
    return named


def _trust(role: Any, caller: _Caller, data: dict[str, Any]) -> str:
    """The trust policy's verdict on the caller: "Deny", "principal" (names it), "account" (its account)."""
    verdict = ""
    incoming = format_incoming_conditional_values(data)
    for statement in _statements(_document(role.assume_role_policy_document)):
        if not _matches(statement.get("Action", []), "sts:AssumeRole", ignore_case=True):
            continue
        named = _trust_principal(statement.get("Principal"), caller)
        if named is None:
            continue
        if "Condition" in statement and not IAMPolicyStatement(statement)._check_conditions(incoming):
            continue
        if statement.get("Effect") == "Deny":
            return "Deny"
        if statement.get("Effect") == "Allow" and verdict != "principal":
            verdict = named
    return verdict


def _assume_role(self: Any, caller: _Caller, role_arn: str) -> None:
    action = "sts:AssumeRole"
    named = _ROLE_ARN.fullmatch(role_arn)
    role_account = named[2] if named else ""
    try:
        role = iam_backends[role_account][named[1]].get_role_by_arn(role_arn) if named else None
    except (NotFoundException, KeyError):  # no such role: its trust policy admits no one
        role = None
    identity = caller.decision(action, role_arn)
    trust = _trust(role, caller, self.data) if role is not None else ""
    if "Deny" in (identity, trust):
        decision = "Deny"
    elif trust == "principal" and role_account == caller.account:
        decision = "Allow"  # a trust policy naming the caller suffices within its account
    else:
        decision = identity if trust else ""
    message = _verdict(caller.arn, decision, action, role_arn)
    if message is not None:
        raise _AuthError("AccessDenied", message)
    duration = self._get_param("DurationSeconds")
    if duration is not None:
        _check_duration(int(duration), role, chained=":assumed-role/" in caller.arn)


def _check_duration(seconds: int, role: Any, *, chained: bool) -> None:
    constraint = (
        "1 validation error detected: Value '{}' at 'durationSeconds' failed to satisfy constraint: {}"
    )
    if seconds < 900:
        raise _AuthError(
            "ValidationError",
            constraint.format(seconds, "Member must have value greater than or equal to 900"),
        )
    if seconds > 43200:
        raise _AuthError(
            "ValidationError",
            constraint.format(seconds, "Member must have value less than or equal to 43200"),
        )
    if chained and seconds > 3600:
        raise _AuthError(
            "ValidationError",
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by "
            "role chaining.",
        )
    if seconds > int(role.max_session_duration or 3600):
        raise _AuthError(
            "ValidationError",
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        )


# -- S3 ---------------------------------------------------------------------------------------------------
# API operation (moto's action name) -> IAM action, where they differ.
_S3_ACTIONS = {
    "HeadObject": "GetObject",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "UploadPartCopy": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "CopyObject": "PutObject",
    "PostObject": "PutObject",
    "ListParts": "ListMultipartUploadParts",
    "ListMultipartUploads": "ListBucketMultipartUploads",
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "HeadBucket": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
    "ListBuckets": "ListAllMyBuckets",
    "PutBucketLifecycleConfiguration": "PutLifecycleConfiguration",
    "GetBucketLifecycleConfiguration": "GetLifecycleConfiguration",
    "DeleteBucketLifecycle": "PutLifecycleConfiguration",
    "PutPublicAccessBlock": "PutBucketPublicAccessBlock",
    "GetPublicAccessBlock": "GetBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "PutBucketPublicAccessBlock",
    "PutBucketEncryption": "PutEncryptionConfiguration",
    "GetBucketEncryption": "GetEncryptionConfiguration",
    "DeleteBucketEncryption": "PutEncryptionConfiguration",
    "PutBucketCors": "PutBucketCORS",
    "GetBucketCors": "GetBucketCORS",
    "DeleteBucketCors": "PutBucketCORS",
    "PutBucketNotificationConfiguration": "PutBucketNotification",
    "GetBucketNotificationConfiguration": "GetBucketNotification",
    "DeleteBucketTagging": "PutBucketTagging",
    "DeleteBucketOwnershipControls": "PutBucketOwnershipControls",
}
# The IAM action of an operation on one version of an object (?versionId=).
_S3_VERSIONED = {
    "GetObject": "GetObjectVersion",
    "DeleteObject": "DeleteObjectVersion",
    "GetObjectTagging": "GetObjectVersionTagging",
    "PutObjectTagging": "PutObjectVersionTagging",
    "DeleteObjectTagging": "DeleteObjectVersionTagging",
    "GetObjectAcl": "GetObjectVersionAcl",
    "PutObjectAcl": "PutObjectVersionAcl",
    "GetObjectAttributes": "GetObjectVersionAttributes",
}


class _KeyAccessDenied(MissingKey):
    """One key of a DeleteObjects the caller may not delete: moto lists it among the response's errors."""

    code = "AccessDenied"

    def __init__(self) -> None:
        S3ClientError.__init__(self, "Access Denied")


def _s3_action(self: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
    """Replaces ``ActionAuthenticatorMixin._authenticate_and_authorize_s3_action``."""
    if self.method == "OPTIONS":  # a CORS preflight: S3 answers it from the bucket's CORS rules, unsigned
        return
    if not _enforcing():
        ActionAuthenticatorMixin.request_count += 1
        return
    operation = self._get_action()
    query = parse_qs(urlsplit(self.uri).query, keep_blank_values=True)
    try:
        caller = _s3_caller(self, query, bucket_name)
        if caller is not None and caller.expired():
            raise S3ClientError("ExpiredToken", "The provided token has expired.")
    except S3ClientError as error:
        LOGGER.warning("%s refused: %s %s", operation, error.code, error.message)
        raise
    arn = f"arn:{self.partition}:s3:::"
    if operation == "DeleteObjects":
        _authorize_each_deleted_key(self, caller, f"{arn}{bucket_name}/")
        return
    resource = arn + (f"{bucket_name or '*'}/{key_name}" if key_name else (bucket_name or "*"))
    action = _S3_ACTIONS.get(operation, operation)
    if "versionId" in query:
        action = _S3_VERSIONED.get(action, action)
    _s3_authorize(caller, f"s3:{action}", resource)
    if operation in ("CopyObject", "UploadPartCopy"):
        source = urlsplit(str(self.headers.get("x-amz-copy-source", "")))
        version = "versionId" in parse_qs(source.query)
        _s3_authorize(
            caller,
            "s3:GetObjectVersion" if version else "s3:GetObject",
            arn + unquote(source.path).lstrip("/"),
        )
    if operation in ("GetObject", "HeadObject") and key_name and "versionId" not in query:
        try:
            missing = self.backend.get_object(bucket_name, key_name) is None
        except S3ClientError:  # no such bucket: S3 says so, whatever the caller's grants
            missing = False
        if missing:  # S3 tells a missing key from a forbidden one only to who may list the bucket
            _s3_authorize(caller, "s3:ListBucket", f"{arn}{bucket_name}")


def _s3_authorize(caller: _Caller | None, action: str, resource: str) -> None:
    decision = caller.decision(action, resource) if caller is not None else ""
    message = _verdict(caller.arn if caller is not None else "anonymous", decision, action, resource)
    if message is not None:
        raise S3ClientError("AccessDenied", message if caller is not None else "Access Denied")


def _authorize_each_deleted_key(self: Any, caller: _Caller | None, key_arn_prefix: str) -> None:
    """DeleteObjects: each key is authorized as moto deletes it; a denied key becomes an error entry."""
    verify = self._verify_etag_match_for_deletion  # called by moto once for each key it may delete

    def authorize_then_verify(key_name: str, *args: Any, **kwargs: Any) -> Any:
        action = "s3:DeleteObjectVersion" if kwargs.get("version_id") else "s3:DeleteObject"
        decision = caller.decision(action, key_arn_prefix + key_name) if caller is not None else ""
        if _verdict(caller.arn if caller else "anonymous", decision, action, key_arn_prefix + key_name):
            raise _KeyAccessDenied()
        return verify(key_name, *args, **kwargs)

    self._verify_etag_match_for_deletion = authorize_then_verify


def _s3_caller(self: Any, query: dict[str, list[str]], bucket_name: str | None) -> _Caller | None:
    """Who signed this S3 request (header or presigned URL), authenticated; None for an anonymous one."""
    if "Authorization" in self.headers:
        return _caller(_signed_request(self, S3IAMRequest)._access_key)
    if any(name in query for name in _SIGV4_QUERY_PARAMS):
        return _presigned_caller(self, bucket_name)
    if "Signature" in query and "AWSAccessKeyId" in query:
        raise S3ClientError(
            "InvalidRequest",
            "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
        )
    return None


def _query_error(message: str) -> S3ClientError:
    return S3ClientError("AuthorizationQueryParametersError", message)


def _presigned_caller(self: Any, bucket_name: str | None) -> _Caller:
    """A SigV4 presigned URL verified as S3 does: parameters, expiry, signer, signature."""
    pairs = [
        (unquote(name), unquote(value))
        for name, _, value in (part.partition("=") for part in urlsplit(self.uri).query.split("&") if part)
    ]
    params = dict(pairs)
    if any(name not in params for name in _SIGV4_QUERY_PARAMS):
        raise _query_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
            "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
        )
    if params["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256":
        raise _query_error('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    try:
        expires = int(params["X-Amz-Expires"])
    except ValueError:
        raise _query_error("X-Amz-Expires should be a number") from None
    if expires < 0:
        raise _query_error("X-Amz-Expires must be non-negative")
    if expires > MAX_PRESIGNED_EXPIRES:
        raise _query_error(
            f"X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGNED_EXPIRES}"
        )
    try:
        signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise _query_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"") from None
    scope = params["X-Amz-Credential"].split("/")
    if (
        len(scope) != 5
        or scope[1] != params["X-Amz-Date"][:8]
        or scope[3] != "s3"
        or scope[4] != "aws4_request"
    ):
        raise _query_error(f"Error parsing the X-Amz-Credential parameter: {params['X-Amz-Credential']}")
    access_key_id, region = scope[0], scope[2]
    bucket_region = _bucket_region(self, bucket_name)
    if bucket_region and region != bucket_region:
        raise _query_error(
            "Error parsing the X-Amz-Credential parameter; "
            f"the region '{region}' is wrong; expecting '{bucket_region}'"
        )
    now = datetime.now(UTC)
    if now > signed_at + timedelta(seconds=expires):
        raise S3ClientError("AccessDenied", "Request has expired")
    if signed_at > now + _CLOCK_SKEW:
        raise S3ClientError("AccessDenied", "Request is not valid yet")
    token = params.get("X-Amz-Security-Token")
    try:
        key = create_access_key(
            account_id=get_account_id_from(access_key_id),
            partition=get_partition(region),
            access_key_id=access_key_id,
            headers={"X-Amz-Security-Token": token} if token is not None else {},
        )
    except CreateAccessKeyFailure as failure:
        if failure.reason == "InvalidToken":
            raise S3ClientError(
                "InvalidToken", "The provided token is malformed or otherwise invalid."
            ) from None
        raise S3ClientError(
            "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
        ) from None
    signed_headers = params["X-Amz-SignedHeaders"].split(";")
    request = AWSRequest(
        method=self.method,
        url=f"http://{self.headers.get('Host', '')}{self.raw_path}",
        headers={name: self.headers[name] for name in signed_headers if name in self.headers},
        params={name: value for name, value in pairs if name != "X-Amz-Signature"},
    )
    request.context["timestamp"] = params["X-Amz-Date"]
    credentials: Credentials = key.create_credentials()
    auth = S3SigV4QueryAuth(credentials, "s3", region, expires=expires)
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    if not hmac.compare_digest(signature, params["X-Amz-Signature"]):
        raise S3ClientError(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        )
    return _caller(key)


def _bucket_region(self: Any, bucket_name: str | None) -> str | None:
    if not bucket_name:
        return None
    try:
        return str(self.backend.get_bucket(bucket_name).region_name)
    except S3ClientError:
        return None
