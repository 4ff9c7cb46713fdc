"""The local stack: moto's server as AWS, the template's resources created in it, the functions in-process.

Functions reach moto exactly as they reach AWS: through boto3, with ``AWS_ENDPOINT_URL`` pointing at the
moto server over real HTTP. There is no special code path in the functions for running locally."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.credentials import ReadOnlyCredentials

from data_export_cli.limits import (
    Concurrency,
    Environment,
    FunctionError,
    FunctionTimedOutError,
    HistoryLimit,
    Limits,
    RequestTooLargeError,
    TooManyRequestsError,
    payload_size,
    run_with_timeout,
)
from data_export_cli.template import TEMPLATE_PATH, FunctionSpec, Template, load_template

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
LOGGER = logging.getLogger("data_export_cli.iam")
_API_EVENTS = threading.Lock()  # see LocalStack._run
_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


class _NoValue:
    """AWS::NoValue: the item or property that resolves to it is left out."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()


@dataclass(frozen=True)
class GrantRef:
    """One action of one statement of one inline policy of one role of the translated template."""

    role: str  # the role's logical id, e.g. ExportAssembleFunctionRole
    policy: str  # e.g. ExportAssembleFunctionRolePolicy0
    statement: int
    action: str

    def apply(self, document: dict[str, Any]) -> dict[str, Any]:
        """``document`` without this action (the statement dropped if it was its only action)."""
        statements = document["Statement"]
        statements = statements if isinstance(statements, list) else [statements]
        kept = []
        for index, statement in enumerate(statements):
            if index == self.statement:
                actions = (
                    statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                )
                remaining = [action for action in actions if action != self.action]
                if len(remaining) == len(actions):
                    raise LookupError(f"{self} is not in the policy")
                if remaining:
                    kept.append({**statement, "Action": remaining})
                continue
            kept.append(statement)
        return {**document, "Statement": kept}

    def __str__(self) -> str:
        return f"{self.role}/{self.policy}/{self.statement}/{self.action}"

    @classmethod
    def parse(cls, text: str) -> GrantRef:
        role, policy, statement, action = text.split("/", 3)
        return cls(role, policy, int(statement), action)


@dataclass
class LambdaContext:
    """The parts of the Lambda context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: float
    aws_request_id: str
    invoked_function_arn: str
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    deadline: float = field(default=0.0, repr=False)  # time.monotonic() at which the function times out

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        """Counts down from the function's timeout, as Lambda's does."""
        return max(0, int((self.deadline - time.monotonic()) * 1000))


_DYNAMODB_WRITES = threading.RLock()


def _atomic_dynamodb_writes() -> None:
    """DynamoDB applies each write to an item atomically; moto's backend reads, changes and stores the item
    in Python, so two threads updating one item can lose one update (seen: a unit's ADD to the job's set of
    built units lost while another unit added its own, and Assemble refusing "9 of 10 units built"). Each
    write of moto's backend in this process takes one lock, as the service serializes writes to an item."""
    from moto.dynamodb.models import DynamoDBBackend

    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        method = getattr(DynamoDBBackend, name)
        if getattr(method, "atomic", False):
            continue

        def atomic(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            with _DYNAMODB_WRITES:
                return _method(*args, **kwargs)

        atomic.atomic = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, atomic)


def _s3_cors(configuration: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's CorsConfiguration in the S3 API's spelling."""
    names = {"ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds"}
    return {
        "CORSRules": [{names.get(k, k): v for k, v in rule.items()} for rule in configuration["CorsRules"]]
    }


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _iam_match(pattern: str, value: str) -> bool:
    """IAM's wildcards: * any run of characters, ? one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace ${Name} with values[Name] (DefinitionSubstitutions); leave other text as it is."""

    def value(match: re.Match[str]) -> str:
        return values.get(match.group(1), match.group(0))

    return _SUB_VARIABLE.sub(value, text)


class LocalStack:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        moto_port: int = 0,
        template_path: Path = TEMPLATE_PATH,
        stack_name: str = "data-export",
        extra_environment: dict[str, str] | None = None,
        enforce_iam: bool = True,
        without_grant: GrantRef | None = None,
        denial_log: Path | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.host = host
        self._moto_port = moto_port
        self.template = Template(load_template(template_path))
        self.stack_name = stack_name
        self.physical: dict[str, str] = {}  # logical id -> name (or queue URL)
        self.arns: dict[str, str] = {}
        self._definitions: dict[str, str] = {}  # state machine logical id -> its definition, substituted
        self.functions = {spec.logical_id: spec for spec in self.template.functions()}
        for logical_id in self.functions:
            self.arns[logical_id] = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self._name(logical_id)}"
        self._handlers: dict[str, Handler] = {}
        # AWS's limits (data_export_cli.limits): concurrency, timeouts, payloads, queues, execution history;
        # DATA_EXPORT_LOCAL_* variables lower them when no Limits are given.
        self.limits = limits if limits is not None else Limits.from_environment()
        self.concurrency = self._concurrency()
        self._history_limit: HistoryLimit | None = None
        self._extra_environment = extra_environment or {}
        self._server: Any = None
        self._lambda_service: Any = None
        self.endpoint_url = ""
        # IAM as AWS enforces it (data_export_cli.iam): one role per function, from the template.
        self.enforce_iam = enforce_iam
        self.role_of: dict[str, str] = {}  # function or state machine logical id -> role name
        self.denials: deque[Any] = deque(maxlen=1000)  # strict_aws.Denial, newest last
        self.grants_used: set[tuple[str, str, str]] = set()  # (role name, action, resource) allowed
        self.admin_credentials: dict[str, str] = {}
        # role name -> (role logical id, policy name, resolved document) of its template-made inline policies
        self._inline_policies: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
        self._granted: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}  # as created: for restore()
        # One granted action taken out of the template's policies (the least-privilege mutation test).
        self.without_grant = without_grant
        self.denial_log = denial_log  # every denial appended as a JSON line, when set
        self._denial_log_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> LocalStack:
        _atomic_dynamodb_writes()
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
        self._server = ThreadedMotoServer(ip_address=self.host, port=self._moto_port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
            }
        )
        os.environ.pop("AWS_PROFILE", None)
        self._start_lambda_service()
        self._create_resources()
        self._enforce_limits()
        if self.enforce_iam:
            self._enforce_iam()
        os.environ.update(self.function_environment())
        os.environ.update(self._extra_environment)
        from data_export import wiring

        wiring.reset()
        return self

    def stop(self) -> None:
        if self._history_limit is not None:
            self._history_limit.uninstall()  # moto's classes are the process's: leave them as they were
            self._history_limit = None
        if self.enforce_iam:
            from data_export_cli import strict_aws

            strict_aws.enforce(False)  # moto's settings are the process's: leave them as they were
        if self._lambda_service is not None:
            self._lambda_service.stop()
            self._lambda_service = None
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=REGION)  # type: ignore[call-overload]

    def _start_lambda_service(self) -> None:
        """moto's Step Functions engine invokes Lambda at localhost:$MOTO_PORT: serve Invoke there with the
        functions in-process, and pass every other call through to moto."""
        from data_export_cli.lambda_service import LambdaService, enable_stepfunctions_execution

        self._lambda_service = LambdaService(
            self._invoke_by_name,
            self.endpoint_url,
            host=self.host,
            authorize=self._authorize_invoke_by_name,
            max_payload_bytes=self.limits.invoke_payload_bytes if self.limits.enabled else None,
        ).start()
        os.environ["MOTO_PORT"] = str(self._lambda_service.port)
        enable_stepfunctions_execution(self.endpoint_url)
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)  # it logs whole states

    def _authorize_invoke_by_name(self, access_key_id: str | None, name: str) -> bool:
        return self.authorize_invoke(access_key_id, f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}")

    def _invoke_by_name(self, name: str, payload: Any) -> Any:
        from data_export_cli.lambda_service import FunctionNotFoundError

        for logical_id in self.functions:
            if self._name(logical_id) == name:
                return self.invoke(logical_id, payload)
        raise FunctionNotFoundError(name)

    # -- resources ---------------------------------------------------------------------------------
    def _name(self, logical_id: str, *, lowercase: bool = False) -> str:
        name = f"{self.stack_name}-{logical_id}"
        return name.lower() if lowercase else name

    def _store_name(
        self, logical_id: str, resource: dict[str, Any], *, lowercase: bool = False
    ) -> str | None:
        """The name a table or bucket is created under: the stack's own name for it; for one whose Condition
        is false, the name its ``Metadata.LocalStack.ExistingNameParameter`` parameter gives (a store of the
        platform: on AWS it exists, here nothing else would create it, so the stack creates it as the
        template defines it); None for the other resources whose Condition is false: not created."""
        if self.creates(resource):
            return self._name(logical_id, lowercase=lowercase)
        parameter = resource.get("Metadata", {}).get("LocalStack", {}).get("ExistingNameParameter")
        existing = str(self._ref(str(parameter))) if parameter else ""
        return existing or None

    def _create_resources(self) -> None:
        dynamodb, sqs, s3 = self.client("dynamodb"), self.client("sqs"), self.client("s3")
        for logical_id, resource in self.template.of_type("AWS::DynamoDB::Table").items():
            props = resource.get("Properties", {})
            table_name = self._store_name(logical_id, resource)
            if table_name is None:
                continue
            name = table_name
            args: dict[str, Any] = {
                "TableName": name,
                "KeySchema": props["KeySchema"],
                "AttributeDefinitions": props["AttributeDefinitions"],
                "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
            }
            for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
                if props.get(index_kind):
                    args[index_kind] = props[index_kind]
            dynamodb.create_table(**args)
            ttl = props.get("TimeToLiveSpecification")
            if ttl:
                dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
            self.physical[logical_id] = name
            self.arns[logical_id] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"
        # Queues: dead-letter queues first, since others refer to them.
        queues = self.template.of_type("AWS::SQS::Queue")
        ordered = sorted(queues, key=lambda lid: "RedrivePolicy" in queues[lid].get("Properties", {}))
        for logical_id in ordered:
            if not self.creates(queues[logical_id]):
                continue
            props = queues[logical_id].get("Properties", {})
            name = self._name(logical_id)
            self.arns[logical_id] = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"
            attributes = {
                key: str(self.resolve(props[key]))
                for key in (
                    "VisibilityTimeout",
                    "MessageRetentionPeriod",
                    "DelaySeconds",
                    "ReceiveMessageWaitTimeSeconds",
                )
                if key in props
            }
            if "RedrivePolicy" in props:
                attributes["RedrivePolicy"] = json.dumps(self.resolve(props["RedrivePolicy"]))
            self.physical[logical_id] = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        for logical_id, resource in self.template.of_type("AWS::S3::Bucket").items():
            props = resource.get("Properties", {})
            bucket_name = self._store_name(logical_id, resource, lowercase=True)
            if bucket_name is None:
                continue
            name = bucket_name
            s3.create_bucket(Bucket=name)
            if "PublicAccessBlockConfiguration" in props:
                s3.put_public_access_block(
                    Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
                )
            if "CorsConfiguration" in props:  # the page's uploads: only what the template allows
                s3.put_bucket_cors(Bucket=name, CORSConfiguration=_s3_cors(props["CorsConfiguration"]))
            self.physical[logical_id] = name
            self.arns[logical_id] = f"arn:aws:s3:::{name}"
        events = self.client("events")
        for logical_id, resource in self.template.of_type("AWS::Events::EventBus").items():
            if not self.creates(resource):
                continue
            name = str(self.resolve(resource.get("Properties", {}).get("Name", self._name(logical_id))))
            self.arns[logical_id] = events.create_event_bus(Name=name)["EventBusArn"]
            self.physical[logical_id] = name
        self._create_roles()
        self._create_state_machines()

    # -- IAM ---------------------------------------------------------------------------------------
    def _create_roles(self) -> None:
        """Every role of the template as SAM translates it, with its policies resolved to local ARNs."""
        from data_export_cli import iam as local_iam

        translated = local_iam.translate(self.template.body, REGION)
        for logical_id, role in translated.roles.items():
            name = str(self.resolve(role.role_name)) if role.role_name else self._name(logical_id)
            self.physical[logical_id] = name
            self.arns[logical_id] = f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"
        self.role_of = {owner: self.physical[role] for owner, role in translated.role_of.items()}
        self._inline_policies.clear()
        client = self.client("iam")
        for logical_id, role in translated.roles.items():
            name = self.physical[logical_id]
            client.create_role(
                RoleName=name, AssumeRolePolicyDocument=json.dumps(self.resolve(role.trust_policy))
            )
            for policy_name, document in role.inline_policies.items():
                # SAM's policy templates carry no Version; AWS accepts that, moto's validation does not.
                resolved = {"Version": "2012-10-17", **self.resolve(document)}
                if self.without_grant and (self.without_grant.role, self.without_grant.policy) == (
                    logical_id,
                    policy_name,
                ):
                    resolved = self.without_grant.apply(resolved)
                if resolved["Statement"]:  # a grant taken out may leave none: then no policy at all
                    client.put_role_policy(
                        RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(resolved)
                    )
                self._inline_policies.setdefault(name, []).append((logical_id, policy_name, resolved))
                self._granted[(logical_id, policy_name)] = (name, resolved)
            for arn in role.managed_policy_arns:  # inlined: moto loads AWS's managed policies only on demand
                client.put_role_policy(
                    RoleName=name,
                    PolicyName=arn.rsplit("/", 1)[-1],
                    PolicyDocument=json.dumps(local_iam.managed_policy_document(arn)),
                )

    def _enforce_iam(self) -> None:
        """An admin user for people and the test harness, the functions' identities, then moto's checks."""
        from data_export_cli import iam as local_iam
        from data_export_cli import strict_aws

        client = self.client("iam")
        client.create_user(UserName=local_iam.ADMIN_USER)
        client.put_user_policy(
            UserName=local_iam.ADMIN_USER,
            PolicyName="AdministratorAccess",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            ),
        )
        key = client.create_access_key(UserName=local_iam.ADMIN_USER)["AccessKey"]
        self.admin_credentials = {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        }
        os.environ.update(self.admin_credentials)
        os.environ.pop("AWS_SESSION_TOKEN", None)
        admin = ReadOnlyCredentials(key["AccessKeyId"], key["SecretAccessKey"], None)
        local_iam.use_scoped_credentials(
            local_iam.ScopedCredentials(admin, local_iam.RoleSessions(ACCOUNT_ID, REGION))
        )
        local_iam.inherit_context_in_threads()
        strict_aws.install(on_denied=self._denied, on_allowed=self._allowed)
        strict_aws.enforce(True)

    def _denied(self, denial: Any) -> None:
        self.denials.append(denial)
        role = str(denial.principal).split(":assumed-role/", 1)[-1].split("/", 1)[0]
        owners = [owner for owner, name in self.role_of.items() if name == role] or [str(denial.principal)]
        if self.denial_log is not None:
            line = {
                "role": role,
                "role_id": self.role_id(role),
                "owners": owners,
                "action": denial.action,
                "resource": denial.resource,
            }
            with self._denial_log_lock, self.denial_log.open("a", encoding="utf-8") as log:
                log.write(json.dumps(line) + "\n")
        LOGGER.warning(
            "AccessDenied: %s may not %s on %s; if it must, grant it in template.yaml (%s Policies)",
            ", ".join(owners),
            denial.action,
            denial.resource,
            ", ".join(owners),
        )

    def _allowed(self, grant: Any) -> None:
        principal = str(grant.principal)
        if ":assumed-role/" in principal:
            role = principal.split(":assumed-role/", 1)[1].split("/", 1)[0]
            self.grants_used.add((role, str(grant.action), str(grant.resource)))

    def role_id(self, role_name: str) -> str | None:
        """The template's logical id of the role created under ``role_name``."""
        return next((lid for lid, name in self.physical.items() if name == role_name), None)

    def revoke(self, grant: GrantRef) -> None:
        """Take one granted action out of its role's policy, on the running stack (the policy goes, when
        that was its only action: IAM refuses a policy without statements)."""
        name, document = self._granted[(grant.role, grant.policy)]
        revoked = grant.apply(document)
        if revoked["Statement"]:
            self.client("iam").put_role_policy(
                RoleName=name, PolicyName=grant.policy, PolicyDocument=json.dumps(revoked)
            )
        else:
            self.client("iam").delete_role_policy(RoleName=name, PolicyName=grant.policy)

    def restore(self, grant: GrantRef) -> None:
        """Put the policy ``revoke`` changed back as the template has it."""
        name, document = self._granted[(grant.role, grant.policy)]
        self.client("iam").put_role_policy(
            RoleName=name, PolicyName=grant.policy, PolicyDocument=json.dumps(document)
        )

    def grant_refs(self, used: set[tuple[str, str, str]]) -> set[GrantRef]:
        """The template's granted actions that allowed these calls ((role name, action, resource) each)."""
        refs = set()
        for role, action, resource in used:
            for role_id, policy, document in self._inline_policies.get(role, []):
                statements = document["Statement"]
                for index, statement in enumerate(
                    statements if isinstance(statements, list) else [statements]
                ):
                    resources = _as_list(statement.get("Resource", "*"))
                    if statement.get("Effect") != "Allow" or not any(
                        _iam_match(pattern, resource) for pattern in resources
                    ):
                        continue
                    for granted in _as_list(statement["Action"]):
                        if _iam_match(granted.lower(), action.lower()):
                            refs.add(GrantRef(role_id, policy, index, granted))
        return refs

    def authorize_invoke(self, access_key_id: str | None, function_arn: str) -> bool:
        """Lambda's check of an Invoke: moto's Step Functions engine signs with the fixed key "ak", so its
        calls are the state machine's, under the state machine's role."""
        if not self.enforce_iam:
            return True
        from data_export_cli import strict_aws

        # The machines whose definition names the function: the one invoking it is among them (several
        # machines' invokes all come signed "ak", and a denial must name the right role).
        machines = list(self.template.of_type("AWS::Serverless::StateMachine"))
        naming = [lid for lid in machines if function_arn in self._definitions.get(lid, "")]
        roles = [self.role_of[lid] for lid in naming or machines]
        if access_key_id != "ak":
            roles = [name for name in (self._role_of_access_key(access_key_id),) if name]
        for role in roles:
            if strict_aws.role_allows(role, "lambda:InvokeFunction", function_arn, ACCOUNT_ID):
                self._allowed(
                    strict_aws.Grant(
                        f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role}/local",
                        "lambda:InvokeFunction",
                        function_arn,
                    )
                )
                return True
        principal = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{roles[0]}/local" if roles else "anonymous"
        self._denied(strict_aws.Denial(principal, "lambda:InvokeFunction", function_arn))
        return False

    @staticmethod
    def _role_of_access_key(access_key_id: str | None) -> str | None:
        from moto.sts.models import sts_backends

        for assumed in sts_backends[ACCOUNT_ID]["aws"].assumed_roles:
            if assumed.access_key_id == access_key_id:
                return str(assumed.role_arn).rsplit("/", 1)[-1]
        return None

    def _create_state_machines(self) -> None:
        sfn = self.client("stepfunctions")
        for logical_id, resource in self.template.of_type("AWS::Serverless::StateMachine").items():
            props = resource.get("Properties", {})
            name = str(self.resolve(props.get("Name", self._name(logical_id))))
            substitutions = {
                key: str(self.resolve(value))
                for key, value in props.get("DefinitionSubstitutions", {}).items()
            }
            definition = substitute(json.dumps(props["Definition"]), substitutions)
            self._definitions[logical_id] = definition
            arn = sfn.create_state_machine(
                name=name,
                definition=definition,
                roleArn=self.arns.get(
                    self.role_of.get(logical_id, ""), f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"
                ),
                type=props.get("Type", "STANDARD"),
            )["stateMachineArn"]
            self.physical[logical_id] = self.arns[logical_id] = arn

    def resolve(self, value: Any) -> Any:
        """Resolve the intrinsic functions the template uses: Ref, GetAtt, Sub, If (with the Conditions'
        Equals, Not, And, Or); an item or a key whose value is AWS::NoValue is left out, as CloudFormation
        does. Parameters take their defaults (a template copy with other defaults runs other values)."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if "Fn::If" in value:
            condition, when_true, when_false = value["Fn::If"]
            return self.resolve(when_true if self.condition(str(condition)) else when_false)
        if "Ref" in value:
            return self._ref(str(value["Ref"]))
        if "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            self._created(logical_id)
            if attribute == "Arn":
                return self.arns[logical_id]
            if attribute == "QueueName":
                return self.physical[logical_id].rsplit("/", 1)[-1]
            return self.physical[logical_id]
        if "Fn::Sub" in value:
            sub = value["Fn::Sub"]
            # Fn::Sub: "text" or [text, {variable: value}] (SAM's policy templates use the latter)
            text, variables = (sub[0], self.resolve(sub[1])) if isinstance(sub, list) else (sub, {})
            return _SUB_VARIABLE.sub(
                lambda match: str(variables.get(match.group(1), self._ref(match.group(1)))), text
            )
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def condition(self, name: str) -> bool:
        """The value of one of the template's Conditions, with the parameters' defaults."""
        conditions = self.template.body.get("Conditions", {})
        if name not in conditions:
            raise KeyError(f"the template has no condition {name}")
        return self._evaluate(conditions[name])

    def _evaluate(self, expression: Any) -> bool:
        """A condition expression: Fn::Equals, Fn::Not, Fn::And, Fn::Or, or {"Condition": name}."""
        if isinstance(expression, dict) and len(expression) == 1:
            ((function, arguments),) = expression.items()
            if function == "Condition":
                return self.condition(str(arguments))
            if function == "Fn::Equals":
                left, right = (self.resolve(argument) for argument in arguments)
                return str(left) == str(right)  # CloudFormation compares the values as strings
            if function == "Fn::Not":
                (operand,) = arguments
                return not self._evaluate(operand)
            if function == "Fn::And":
                return all(self._evaluate(operand) for operand in arguments)
            if function == "Fn::Or":
                return any(self._evaluate(operand) for operand in arguments)
        raise ValueError(f"the local stack cannot evaluate the condition {expression!r}")

    def creates(self, resource: dict[str, Any]) -> bool:
        """Whether the stack creates the resource: it has no Condition, or its Condition holds."""
        return "Condition" not in resource or self.condition(str(resource["Condition"]))

    def _created(self, logical_id: str) -> None:
        """Refuse a reference to a resource the stack does not create, as CloudFormation does: it may be
        named only inside an !If on its Condition (a platform store the local stack made under the given
        name too: so a grant that did not follow its parameter fails here, not just on AWS)."""
        resource = self.template.resources.get(logical_id)
        if resource is not None and not self.creates(resource):
            condition = resource["Condition"]
            raise ValueError(
                f"{logical_id} is not created (its Condition {condition} is false): "
                f"name it inside !If [{condition}, ...]"
            )

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        self._created(name)
        if name in self.physical:
            return self.physical[name]
        if "." in name:  # ${Resource.Attribute} inside Sub
            logical_id, attribute = name.split(".", 1)
            return self.resolve({"Fn::GetAtt": [logical_id, attribute]})
        defaults = self.template.parameter_defaults()
        if name in defaults:
            return defaults[name]
        return f"{self.stack_name}-{name}"  # a resource the local stack does not create (logs, alarms, ...)

    def function_environment(self) -> dict[str, str]:
        """The functions' environment variables as the template sets them, resolved to local names."""
        environment: dict[str, str] = {}
        for spec in self.functions.values():
            for key, value in spec.environment.items():
                resolved = self.resolve(value)
                if resolved is not NO_VALUE:
                    environment[key] = str(resolved)
        return environment

    # -- functions ---------------------------------------------------------------------------------
    def handler(self, logical_id: str) -> Handler:
        if logical_id not in self._handlers:
            spec = self.functions[logical_id]
            module = importlib.import_module(spec.module)
            self._handlers[logical_id] = getattr(module, spec.handler)
        return self._handlers[logical_id]

    def invoke(
        self, logical_id: str, event: dict[str, Any], *, environment: Environment | None = None
    ) -> dict[str, Any]:
        """Run the function on ``event`` as Lambda would: refused if the request is too big
        (RequestTooLargeError) or the function has no free concurrency (TooManyRequestsError); failed with
        FunctionTimedOutError past its timeout, FunctionError if its response is too big. ``environment``:
        one ``reserve`` gave (an event source that waited for free concurrency before receiving)."""
        try:
            if self.limits.enabled:
                size = payload_size(event)
                if size > self.limits.invoke_payload_bytes:
                    self.concurrency.count(logical_id, oversized_requests=1)
                    raise RequestTooLargeError(size, self.limits.invoke_payload_bytes)
            if environment is None:
                environment = self.concurrency.acquire(logical_id)
                if environment is None:
                    self.concurrency.count(logical_id, throttles=1)
                    raise TooManyRequestsError(
                        self._name(logical_id), self.concurrency.stats[logical_id].reserved
                    )
        except BaseException:
            if environment is not None:
                self.concurrency.release(environment)
            raise
        return self._run(logical_id, environment, event)

    def reserve(self, logical_id: str, timeout: float) -> Environment | None:
        """An execution environment of the function, waiting up to ``timeout`` seconds for free concurrency
        (as Lambda's SQS poller does before it receives); hand it to ``invoke``, or give it ``release``."""
        return self.concurrency.acquire(logical_id, timeout)

    def release(self, environment: Environment) -> None:
        self.concurrency.release(environment)

    def _run(self, logical_id: str, environment: Environment, event: dict[str, Any]) -> dict[str, Any]:
        spec: FunctionSpec = self.functions[logical_id]
        timeout = self.concurrency.stats[logical_id].timeout_seconds
        context = LambdaContext(
            function_name=self._name(logical_id),
            memory_limit_in_mb=spec.memory_size,
            timeout_seconds=timeout,
            aws_request_id=str(uuid.uuid4()),
            invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self._name(logical_id)}",
        )
        try:
            if environment.handler is None:
                environment.handler = self._environment_handler(logical_id, environment.index)
        except BaseException:
            self.concurrency.release(environment, reusable=False)
            raise
        handler = environment.handler
        # Powertools' event handler keeps the event it resolves on a class attribute (BaseRouter.current_event
        # and lambda_context): every resolver of the process reads the last one set. On AWS each environment
        # is a process of its own; here API events, of whichever function, run one at a time.
        serialized = _API_EVENTS if spec.routes else contextlib.nullcontext()

        def run() -> dict[str, Any]:
            with serialized, self.acting_as(logical_id):
                return handler(event, context)  # type: ignore[no-any-return]

        started = time.monotonic()
        self.concurrency.count(logical_id, invocations=1)
        if self.limits.enabled:
            finished, result, error = run_with_timeout(run, timeout, f"lambda-{logical_id}")
        else:
            finished, result, error = True, None, None
            try:
                result = run()
            except BaseException as exc:  # raised again below, after the bookkeeping
                error = exc
        self.concurrency.count(logical_id, busy_seconds=time.monotonic() - started)
        if not finished:
            # Lambda discards the environment of a function that timed out; this one's thread runs on.
            self.concurrency.release(environment, reusable=False)
            self.concurrency.count(logical_id, timeouts=1)
            raise FunctionTimedOutError(context.aws_request_id, timeout)
        self.concurrency.release(environment)
        if error is not None:
            self.concurrency.count(logical_id, errors=1)
            raise error
        if self.limits.enabled:
            size = payload_size(result)
            if size > self.limits.invoke_payload_bytes:
                self.concurrency.count(logical_id, oversized_responses=1)
                raise FunctionError(
                    "Function.ResponseSizeTooLarge",
                    f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
                    f"({self.limits.invoke_payload_bytes} bytes).",
                )
        return result  # type: ignore[no-any-return]

    def _environment_handler(self, logical_id: str, index: int) -> Handler:
        """The handler of one execution environment: the first runs the module as imported (tests patch
        it), every further one a fresh copy of it, so that no two concurrent events share module state
        (Powertools' resolver keeps the current event on its app, the batch processor its records)."""
        if index == 0:
            return self.handler(logical_id)
        spec = self.functions[logical_id]
        source = importlib.import_module(spec.module).__file__
        name = f"{spec.module}[{logical_id}#{index}]"
        module_spec = importlib.util.spec_from_file_location(name, source or "")
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot load {spec.module} again from {source}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # what typing and pydantic look a module's names up in
        module_spec.loader.exec_module(module)
        handler: Handler = getattr(module, spec.handler)
        return handler

    # -- limits ------------------------------------------------------------------------------------
    def _concurrency(self) -> Concurrency:
        limits = self.limits
        known = set(self.functions)
        for what, overrides in (
            ("reserved_concurrency", limits.reserved_concurrency),
            ("maximum_concurrency", limits.maximum_concurrency),
            ("timeouts", limits.timeouts),
        ):
            if set(overrides) - known:
                raise ValueError(
                    f"Limits.{what}: unknown function(s) {', '.join(sorted(set(overrides) - known))}; "
                    f"known: {', '.join(sorted(known))}"
                )
        if not limits.enabled:
            return Concurrency(
                dict.fromkeys(self.functions), sys.maxsize, dict.fromkeys(self.functions, float("inf"))
            )
        reserved: dict[str, int | None] = {}
        timeouts: dict[str, float] = {}
        for logical_id, spec in self.functions.items():
            properties = self.template.resources[logical_id].get("Properties", {})
            value = limits.reserved_concurrency.get(
                logical_id, properties.get("ReservedConcurrentExecutions")
            )
            reserved[logical_id] = None if value is None else int(self.resolve(value))
            timeouts[logical_id] = limits.timeouts.get(logical_id, spec.timeout) * limits.timeout_scale
        return Concurrency(reserved, limits.account_concurrency, timeouts)

    def event_source_concurrency(self, function_id: str, queue_id: str) -> int | None:
        """ScalingConfig.MaximumConcurrency of the function's SQS event source on the queue (None: unset)."""
        if not self.limits.enabled:
            return None
        if function_id in self.limits.maximum_concurrency:
            return int(self.limits.maximum_concurrency[function_id])
        properties = self.template.resources[function_id].get("Properties", {})
        for source in properties.get("Events", {}).values():
            queue = source.get("Properties", {}).get("Queue")
            queue_of = queue["Fn::GetAtt"][0] if isinstance(queue, dict) and "Fn::GetAtt" in queue else queue
            if source.get("Type") == "SQS" and queue_of == queue_id:
                maximum = source["Properties"].get("ScalingConfig", {}).get("MaximumConcurrency")
                return None if maximum is None else int(self.resolve(maximum))
        return None

    def _enforce_limits(self) -> None:
        """The queues' lowered visibility timeouts and receive counts; Step Functions' history limit."""
        if not self.limits.enabled:
            return
        queues = self.template.of_type("AWS::SQS::Queue")
        sqs = self.client("sqs")
        for queue_id in {*self.limits.visibility_timeouts, *self.limits.max_receive_counts}:
            if queue_id not in queues:
                raise ValueError(f"Limits: unknown queue {queue_id}; known: {', '.join(sorted(queues))}")
            attributes = {}
            if queue_id in self.limits.visibility_timeouts:
                attributes["VisibilityTimeout"] = str(self.limits.visibility_timeouts[queue_id])
            if queue_id in self.limits.max_receive_counts:
                policy = self.resolve(queues[queue_id]["Properties"]["RedrivePolicy"])
                policy["maxReceiveCount"] = self.limits.max_receive_counts[queue_id]
                attributes["RedrivePolicy"] = json.dumps(policy)
            sqs.set_queue_attributes(QueueUrl=self.physical[queue_id], Attributes=attributes)
        self._history_limit = HistoryLimit(self.limits.history_events, self._history_exceeded).install()

    @property
    def history_limit(self) -> HistoryLimit | None:
        """Step Functions' history limit as enforced (its ``limit`` may be lowered while running)."""
        return self._history_limit

    def _history_exceeded(self, execution_arn: str) -> None:
        logging.getLogger("data_export_cli.limits").warning(
            "Execution %s reached Step Functions' limit of %d history events: it fails with States.Runtime",
            execution_arn,
            self.limits.history_events,
        )

    def limits_report(self) -> dict[str, Any]:
        """What the runtime enforced and saw so far: per function its limit, invocations, the most events
        at once, throttles, timeouts, errors; per queue what the poller received, deleted and returned; the
        executions failed at the history limit."""
        concurrency = self.concurrency
        with concurrency._condition:
            functions = {name: dict(vars(stats)) for name, stats in concurrency.stats.items()}
            queues = {name: dict(vars(stats)) for name, stats in concurrency.queues.items()}
        return {
            "enabled": self.limits.enabled,
            "account_concurrency": self.limits.account_concurrency if self.limits.enabled else None,
            "unreserved_concurrency": concurrency.unreserved_limit if self.limits.enabled else None,
            "functions": functions,
            "queues": queues,
            "history_limit_failures": list(self._history_limit.exceeded) if self._history_limit else [],
        }

    def acting_as(self, logical_id: str) -> Any:
        """AWS calls inside are the function's own, signed with its role's credentials (when IAM is on)."""
        from data_export_cli.iam import acting_as

        return acting_as(self.role_of.get(logical_id) if self.enforce_iam else None)

    def function_for_queue(self, queue_logical_id: str) -> tuple[str, int] | None:
        for spec in self.functions.values():
            for queue_id, batch_size in spec.queues:
                if queue_id == queue_logical_id:
                    return spec.logical_id, batch_size
        return None
