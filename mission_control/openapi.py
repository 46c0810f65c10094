"""OpenAPI post-processing: every operation documents the one error shape
(mission_control.api.error_body) under the status codes the API really answers."""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {},
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}
DESCRIPTIONS = {
    "400": "Invalid request (see error.fields).",
    "401": "Not authenticated.",
    "403": "The user's role does not allow this.",
    "404": "Not found.",
    "409": "Conflict with the current state.",
    "413": "Body too large.",
    "415": "Unsupported media type.",
    "422": "Well-formed but cannot be applied.",
    "429": "Throttled.",
}
WRITE_METHODS = {"post", "put", "patch", "delete"}


def add_error_responses(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    components = result.setdefault("components", {}).setdefault("schemas", {})
    # Read-only model fields lose DRF's allow_blank, but "no error" is a blank code.
    error_codes = components.get("ErrorCodeEnum")
    if error_codes and "" not in error_codes.get("enum", [""]):
        error_codes["enum"].append("")
    components.setdefault("Error", ERROR_SCHEMA)
    ref = {"$ref": "#/components/schemas/Error"}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for parameter in operation.get("parameters", []):
                # django-filter's id filters (sessions?mission=, ?worker=) come out as
                # "number"; they take integer ids.
                schema = parameter.get("schema", {})
                if parameter.get("in") == "query" and schema.get("type") == "number":
                    schema["type"] = "integer"
                # Query strings with a NUL character are refused with a 400 everywhere.
                if (
                    parameter.get("in") == "query"
                    and schema.get("type") == "string"
                    and "pattern" not in schema
                    and "enum" not in schema
                    and "format" not in schema
                ):
                    schema["pattern"] = r"^[^\x00]*$"
            # 404 also on lists: a page past the end.
            codes = ["400", "401", "403", "404", "429"]
            if method in WRITE_METHODS:
                codes += ["409", "413", "415", "422"]
            for code in codes:
                operation["responses"].setdefault(
                    code,
                    {
                        "description": DESCRIPTIONS[code],
                        "content": {"application/json": {"schema": ref}},
                    },
                )
    return result
