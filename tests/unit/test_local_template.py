"""How the local stack reads template.yaml: routes, queues and schedules of every function."""

from __future__ import annotations

import pytest
from data_export_cli.stack import substitute
from data_export_cli.template import Template, load_template, rate_seconds


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
