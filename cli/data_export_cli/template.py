"""Reads template.yaml: the resources and functions the local stack creates and runs.

The template is the single source of truth; the local stack never keeps its own copy of names, keys or
routes. Only the intrinsic functions the template uses are resolved (``LocalStack.resolve``): Ref, GetAtt,
Sub, If and the Conditions' Equals, Not, And, Or."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation short-form tags into their long form."""


def _construct_tag(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    # !Ref X and !Condition X (inside !And, !Or, !Not) keep their bare names; the rest are Fn::<name>.
    name = tag_suffix if tag_suffix in ("Ref", "Condition") else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        body: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
        return body


def with_parameters(body: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of the template whose parameters default to ``values``: what a deploy with those parameter
    overrides runs, and what the local stack (which reads the defaults) runs with them."""
    unknown = set(values) - set(body.get("Parameters", {}))
    if unknown:
        raise KeyError(f"the template has no parameter(s) {', '.join(sorted(unknown))}")
    copy = {**body, "Parameters": {name: dict(spec) for name, spec in body.get("Parameters", {}).items()}}
    for name, value in values.items():
        copy["Parameters"][name]["Default"] = value
    return copy


def write_template(body: dict[str, Any], path: Path) -> Path:
    """The template in CloudFormation's long form (Fn::If, Ref, ...), which every tool reads as it does
    the short one."""
    path.write_text(yaml.safe_dump(body, sort_keys=False, width=120), encoding="utf-8")
    return path


_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> int:
    """Seconds between runs of a `rate(N unit)` schedule (the local stack runs no cron expressions)."""
    match = _RATE.fullmatch(expression.strip())
    if match is None:
        raise ValueError(
            f"unsupported schedule {expression!r}: the local stack runs rate(N minutes|hours|days)"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")]


@dataclass(frozen=True)
class ApiRoute:
    method: str
    path: str  # API Gateway form: /a/{param}/b
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    module: str  # importable module of the handler, e.g. functions.get_export.app
    handler: str  # attribute name in that module
    environment: dict[str, Any]
    timeout: int
    memory_size: int
    routes: tuple[ApiRoute, ...] = ()
    queues: tuple[tuple[str, int], ...] = ()  # (queue logical id, batch size)
    schedules: tuple[int, ...] = ()  # seconds between runs, from Schedule events' rate(...)


@dataclass
class Template:
    body: dict[str, Any]
    resources: dict[str, dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.resources = self.body.get("Resources", {})

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {name: res for name, res in self.resources.items() if res.get("Type") == resource_type}

    def parameter_defaults(self) -> dict[str, Any]:
        return {name: spec.get("Default") for name, spec in self.body.get("Parameters", {}).items()}

    def functions(self) -> list[FunctionSpec]:
        globals_ = self.body.get("Globals", {}).get("Function", {})
        specs = []
        for logical_id, resource in self.of_type("AWS::Serverless::Function").items():
            props = {**globals_, **resource.get("Properties", {})}
            environment = {
                **globals_.get("Environment", {}).get("Variables", {}),
                **resource.get("Properties", {}).get("Environment", {}).get("Variables", {}),
            }
            code_dir = str(props["CodeUri"]).strip("/").replace("/", ".")
            module_name, handler = str(props["Handler"]).rsplit(".", 1)
            routes, queues, schedules = [], [], []
            for event in props.get("Events", {}).values():
                event_props = event.get("Properties", {})
                if event.get("Type") == "Api":
                    path = event_props["Path"]
                    regex = re.sub(r"\\\{[^/]+?\\\}", "([^/]+)", re.escape(path))
                    routes.append(ApiRoute(event_props["Method"].upper(), path, re.compile(f"^{regex}$")))
                elif event.get("Type") == "SQS":
                    queue = event_props["Queue"]
                    queue_id = queue["Fn::GetAtt"][0] if isinstance(queue, dict) else str(queue)
                    queues.append((queue_id, int(event_props.get("BatchSize", 10))))
                elif event.get("Type") == "Schedule":
                    schedules.append(rate_seconds(str(event_props["Schedule"])))
            specs.append(
                FunctionSpec(
                    logical_id=logical_id,
                    module=f"{code_dir}.{module_name}",
                    handler=handler,
                    environment=environment,
                    timeout=int(props.get("Timeout", 3)),
                    memory_size=int(props.get("MemorySize", 128)),
                    routes=tuple(routes),
                    queues=tuple(queues),
                    schedules=tuple(schedules),
                )
            )
        return specs
