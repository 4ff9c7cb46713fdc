"""IAM in the local stack as AWS has it: each function calls AWS with the credentials of its own role.

The roles come from ``template.yaml`` as SAM translates it (``samtranslator``, the library ``sam validate``
and CloudFormation's SAM transform use): every function's inline statements, the policy templates it names
(``LambdaInvokePolicy`` ...) and the managed policies SAM attaches for its events (an SQS event source adds
``AWSLambdaSQSQueueExecutionRole``), plus the template's own ``AWS::IAM::Role`` resources. The local stack
creates them in moto's IAM, then turns moto's authorization on (``strict_aws``), so a call is allowed only
when the calling function's policy allows that action on that resource.

The functions run in this process, so their identities are told apart the way Lambda's containers do not
need to: the default boto3 session holds ``ScopedCredentials``, whose value is read at signing time from a
context variable that the local runtime sets around every invocation (``acting_as``). Threads a function
starts inherit it (``inherit_context_in_threads``: what Python 3.14's ``thread_inherit_context`` does).
Outside any function (the seeder, tests, a developer's script) the identity is the local admin user."""

from __future__ import annotations

import contextvars
import copy
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.credentials import Credentials, ReadOnlyCredentials

ADMIN_USER = "local-admin"
# Lambda hands a function its role's session; locally a session lasts this long and is renewed before.
SESSION_SECONDS = 3600
_RENEW_BEFORE = timedelta(minutes=5)

# The role whose credentials sign the AWS calls of the code running now; None: the local admin.
_acting_role: contextvars.ContextVar[str | None] = contextvars.ContextVar("local_aws_role", default=None)


@dataclass(frozen=True)
class RoleSpec:
    """One IAM role of the translated template, its documents still holding intrinsic functions."""

    logical_id: str
    trust_policy: dict[str, Any]
    inline_policies: dict[str, Any]  # policy name -> document
    managed_policy_arns: tuple[str, ...]
    role_name: Any = (
        None  # RoleName as the template gives it (an intrinsic maybe); None: CloudFormation names it
    )


@dataclass
class TranslatedTemplate:
    roles: dict[str, RoleSpec] = field(default_factory=dict)
    role_of: dict[str, str] = field(default_factory=dict)  # function or state machine -> role logical id


def translate(template: dict[str, Any], region: str) -> TranslatedTemplate:
    """The template through SAM's own transform, for the roles it generates (code locations are stubbed:
    the transform only checks that they look like S3 URIs)."""
    from samtranslator.translator.transform import transform

    logging.getLogger("samtranslator").setLevel(logging.ERROR)  # its notes on feature toggles

    body = copy.deepcopy(template)
    for resource in body.get("Resources", {}).values():
        props = resource.setdefault("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://local-stack/code.zip"
        elif resource.get("Type") == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = "s3://local-stack/layer.zip"

    class _NoManagedPolicies:  # the template names managed policies by ARN only
        def load(self) -> dict[str, str]:
            return {}

    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region  # the transform asks boto3 for the region
    try:
        output: dict[str, Any] = transform(body, {}, _NoManagedPolicies())
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous
    translated = TranslatedTemplate()
    for logical_id, resource in output["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            translated.roles[logical_id] = RoleSpec(
                logical_id=logical_id,
                trust_policy=props["AssumeRolePolicyDocument"],
                inline_policies={p["PolicyName"]: p["PolicyDocument"] for p in props.get("Policies", [])},
                managed_policy_arns=tuple(props.get("ManagedPolicyArns", [])),
                role_name=props.get("RoleName"),
            )
        elif resource["Type"] in ("AWS::Lambda::Function", "AWS::StepFunctions::StateMachine"):
            role = props.get("Role") or props.get("RoleArn")
            if isinstance(role, dict) and "Fn::GetAtt" in role:
                translated.role_of[logical_id] = role["Fn::GetAtt"][0]
    return translated


def managed_policy_document(arn: str) -> dict[str, Any]:
    """An AWS managed policy's document, from the copy moto ships."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    name = arn.rsplit("/", 1)[-1]
    policies: dict[str, Any] = json.loads(aws_managed_policies_data)
    if name not in policies:
        raise LookupError(f"managed policy {arn} is unknown to the local stack")
    document: dict[str, Any] = policies[name]["Document"]
    return document


class RoleSessions:
    """Role credentials minted the way Lambda gets them (STS on the service's behalf), renewed before they
    expire. moto's STS backend is called in-process: the service principal in a role's trust policy is
    not an identity a request could carry."""

    def __init__(self, account_id: str, region: str) -> None:
        self._account_id = account_id
        self._region = region
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[ReadOnlyCredentials, datetime]] = {}

    def credentials(self, role_name: str) -> ReadOnlyCredentials:
        with self._lock:
            cached = self._sessions.get(role_name)
            if cached is None or cached[1] - _RENEW_BEFORE < datetime.now(UTC):
                cached = self._mint(role_name)
                self._sessions[role_name] = cached
            return cached[0]

    def _mint(self, role_name: str) -> tuple[ReadOnlyCredentials, datetime]:
        from moto.sts.models import sts_backends

        role = sts_backends[self._account_id]["aws"].assume_role(
            region_name=self._region,
            role_session_name=role_name[-64:],
            role_arn=f"arn:aws:iam::{self._account_id}:role/{role_name}",
            policy="",
            duration=SESSION_SECONDS,
            external_id="",
        )
        credentials = ReadOnlyCredentials(role.access_key_id, role.secret_access_key, role.session_token)
        return credentials, role.expiration.replace(tzinfo=UTC)


class ScopedCredentials(Credentials):
    """The credentials of whoever runs now: the acting function's role, else the admin user."""

    def __init__(self, admin: ReadOnlyCredentials, sessions: RoleSessions) -> None:
        # Credentials.__init__ would assign the properties below; these are read at signing time instead.
        self._admin = admin
        self._sessions = sessions
        self.method = "local-stack"
        self.account_id = None

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        role = _acting_role.get()
        return self._admin if role is None else self._sessions.credentials(role)

    @property
    def access_key(self) -> str:  # type: ignore[override]
        return str(self.get_frozen_credentials().access_key)

    @property
    def secret_key(self) -> str:  # type: ignore[override]
        return str(self.get_frozen_credentials().secret_key)

    @property
    def token(self) -> str | None:  # type: ignore[override]
        token = self.get_frozen_credentials().token
        return None if token is None else str(token)


@contextmanager
def acting_as(role_name: str | None) -> Iterator[None]:
    """AWS calls made inside (and by threads started inside) are signed with ``role_name``'s credentials."""
    token = _acting_role.set(role_name)
    try:
        yield
    finally:
        _acting_role.reset(token)


def acting_role() -> str | None:
    return _acting_role.get()


_thread_patch_lock = threading.Lock()


def inherit_context_in_threads() -> None:
    """Threads run in a copy of the context of the thread that started them (Python 3.14 offers this as
    ``-X thread_inherit_context``): a function's upload and read-ahead threads keep its identity."""
    with _thread_patch_lock:
        if getattr(threading.Thread.start, "inherits_context", False):
            return
        original_start = threading.Thread.start

        def start(self: threading.Thread) -> None:
            context = contextvars.copy_context()
            run = self.run
            self.run = lambda: context.run(run)  # type: ignore[method-assign]
            original_start(self)

        start.inherits_context = True  # type: ignore[attr-defined]
        threading.Thread.start = start  # type: ignore[method-assign]


def use_scoped_credentials(credentials: ScopedCredentials) -> None:
    """Make a new default boto3 session (what ``boto3.client`` uses) sign with ``credentials``: a credential
    provider put first in botocore's chain, as custom providers are."""
    import boto3
    from botocore.credentials import CredentialProvider

    class LocalStackProvider(CredentialProvider):
        METHOD = CANONICAL_NAME = "local-stack"

        def load(self) -> Credentials:
            return credentials

    boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    assert session is not None
    session._session.get_component("credential_provider").insert_before("env", LocalStackProvider())
