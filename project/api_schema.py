"""What the OpenAPI schema says beyond what drf-spectacular reads off the views, added by one
postprocessing hook so no view repeats it:

- the error shape, `{"error": {"code", "message", "fields"}}` (`Error`, codes `ErrorCodeEnum`,
  which the API's exception handler writes) for every status an
  operation can answer besides its own: 401, 403, 404, 406, 429 and 500 everywhere; 400 where
  there is input to refuse; 409 on every POST (a cancel too late, a replayed create with another
  body); 413 and 415 where there is a request body;
- a query parameter's enum as the component enum with the same values (one `RunStatusEnum` in a
  generated client, not one more per filter);
- request bodies as closed objects (`additionalProperties: false`): the API refuses fields it does
  not know (core.serializers.ClosedInput);
- links from a create's 201 to the operations on what it created (`id` from the body), which
  Schemathesis follows in stateful testing and docs show.
"""

from __future__ import annotations

from typing import Any

from project.api_errors import ERROR_CODES

# DRF's codes for its own exceptions, plus `conflict`, `request_too_large` and `server_error`.
ERROR_REF = {"$ref": "#/components/schemas/Error"}

ERROR_SCHEMAS: dict[str, Any] = {
    "ErrorCodeEnum": {"type": "string", "enum": list(ERROR_CODES)},
    "ErrorDetail": {
        "type": "object",
        "properties": {
            "code": {"$ref": "#/components/schemas/ErrorCodeEnum"},
            "message": {"type": "string"},
            "fields": {
                "type": "object",
                "description": "For `validation_error`: each refused field (dotted when nested) and what is wrong.",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
        },
        "required": ["code", "message"],
    },
    "Error": {
        "type": "object",
        "properties": {"error": {"$ref": "#/components/schemas/ErrorDetail"}},
        "required": ["error"],
    },
}

# status: (the name of its shared response in components.responses, its description)
ERRORS = {
    400: ("BadRequest", "The input was refused: `fields` says which and why."),
    401: ("Unauthorized", "No valid credentials."),
    403: ("Forbidden", "Not allowed."),
    404: ("NotFound", "No such resource, or not one of yours."),
    406: ("NotAcceptable", "None of the accepted media types can be served."),
    409: ("Conflict", "In conflict with the resource's state."),
    413: ("ContentTooLarge", "The request body is too large."),
    415: ("UnsupportedMediaType", "The request body is not JSON."),
    429: ("TooManyRequests", "Over the rate limit: retry after `Retry-After` seconds."),
    500: ("ServerError", "Server error."),
}
ERROR_CONTENT = {"application/json": {"schema": ERROR_REF}}
EVERYWHERE = (401, 403, 404, 406, 429, 500)
WITH_INPUT = (400,)
WITH_BODY = (400, 413, 415)
ON_POST = (409,)


def _error_statuses(method: str, operation: dict[str, Any]) -> list[int]:
    statuses = list(EVERYWHERE)
    if operation.get("parameters"):
        statuses += WITH_INPUT
    if "requestBody" in operation:
        statuses += WITH_BODY
    if method == "post":
        statuses += ON_POST
    return sorted(set(statuses))


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {"description": ERRORS[status][1], "content": ERROR_CONTENT}
    if status == 429:
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}
    return response


def _links(paths: dict[str, Any], create_path: str) -> dict[str, Any]:
    links = {}
    for path, item in paths.items():
        if not path.startswith(f"{create_path}{{id}}/"):
            continue
        for operation in item.values():
            name = operation["operationId"]
            links[name] = {"operationId": name, "parameters": {"id": "$response.body#/id"}}
    return links


def _shared_enums(schemas: dict[str, Any], parameters: list[dict[str, Any]]) -> None:
    enums = {tuple(sorted(schema["enum"])): name for name, schema in schemas.items() if "enum" in schema}
    for parameter in parameters:
        name = enums.get(tuple(sorted(parameter.get("schema", {}).get("enum", ()))))
        if name:
            parameter["schema"] = {"$ref": f"#/components/schemas/{name}"}


def _closed_body(schemas: dict[str, Any], operation: dict[str, Any]) -> None:
    for media in operation.get("requestBody", {}).get("content", {}).values():
        ref = media.get("schema", {}).get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            schemas[ref.rsplit("/", 1)[1]]["additionalProperties"] = False


def postprocess_schema(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    components = result.setdefault("components", {})
    components.setdefault("schemas", {}).update(ERROR_SCHEMAS)
    components.setdefault("responses", {}).update(
        {name: _error_response(status) for status, (name, _) in ERRORS.items()}
    )
    paths = result.get("paths", {})
    for path, item in paths.items():
        for method, operation in item.items():
            _shared_enums(components["schemas"], operation.get("parameters", []))
            _closed_body(components["schemas"], operation)
            responses = operation.setdefault("responses", {})
            for status in _error_statuses(method, operation):
                responses.setdefault(str(status), {"$ref": f"#/components/responses/{ERRORS[status][0]}"})
            for status, response in responses.items():
                # An error a view declares by its description alone gets the error shape too.
                if status[0] in "45" and "$ref" not in response and "content" not in response:
                    response["content"] = ERROR_CONTENT
            created = responses.get("201")
            if created and (links := _links(paths, path)):
                created["links"] = links
    return result
