"""What holds for every API operation, documented in one place (a drf-spectacular post-processing hook)
rather than on each view: the error answers, which DRF produces all the same way as a JSON object of
messages (`{"detail": "…"}` or `{"field": ["…"]}`), and that an empty query parameter counts as absent."""

from __future__ import annotations

ERROR_SCHEMA = {
    "type": "object",
    "description": '`{"detail": "message"}`, or for invalid input `{"field name": ["message", …]}`.',
    "additionalProperties": True,
}


def _error(description: str) -> dict:
    schema = {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def document_error_responses(result: dict, generator, request, public) -> dict:
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            parameters = {p["name"]: p["in"] for p in operation.get("parameters", [])}
            for parameter in operation.get("parameters", []):
                # An empty query parameter means "not given" (a filter form's empty field), on every operation.
                if parameter["in"] == "query":
                    parameter["allowEmptyValue"] = True
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation or "query" in parameters.values():
                responses.setdefault("400", _error("Invalid input: each offending field is named with its message."))
            responses.setdefault("401", _error("No credentials, or an invalid, expired or revoked token."))
            responses.setdefault("403", _error("Signed in without the role this operation needs."))
            if "path" in parameters.values() or "cursor" in parameters:
                responses.setdefault("404", _error("No such object (or a cursor that is not one of ours)."))
            if path.endswith("/token/") and method == "post":
                responses.setdefault("429", _error("Too many failed logins: the account or address is locked."))
    return result
