"""The OpenAPI 3.1 document of the API, generated from the functions' routes and models."""

from __future__ import annotations

import importlib
import os
from typing import Any

FUNCTION_MODULES = (
    "functions.start_export.app",
    "functions.get_export.app",
    "functions.cancel_export.app",
    "functions.import_api.app",
)


def openapi_document() -> dict[str, Any]:
    # The handler modules read no settings at import; nothing needs AWS to describe the API.
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "data-export")
    from aws_lambda_powertools.event_handler.openapi.models import APIKey

    api_key_scheme = APIKey.model_validate({"type": "apiKey", "name": "X-API-Key", "in": "header"})
    document: dict[str, Any] = {}
    for name in FUNCTION_MODULES:
        app = importlib.import_module(name).app
        schema = app.get_openapi_schema(
            title="Organization data export API",
            version="1.0.0",
            description=(
                "Export all of an organization's data as one archive, and poll until it is ready; "
                "import such an archive back (restore) or into another organization (copy)."
            ),
            security_schemes={"apiKey": api_key_scheme},
            security=[{"apiKey": []}],
        ).model_dump(mode="json", by_alias=True, exclude_none=True)
        if not document:
            document = schema
        else:
            for path, operations in schema["paths"].items():  # one path may have methods in several functions
                document["paths"].setdefault(path, {}).update(operations)
            document.setdefault("components", {}).setdefault("schemas", {}).update(
                schema.get("components", {}).get("schemas", {})
            )
    return document
