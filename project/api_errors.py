"""One error shape for the API, `{"error": {"code", "message", "fields"}}`, from DRF's EXCEPTION_HANDLER.

The codes are ERROR_CODES (the schema's `ErrorCodeEnum`, project/api_schema.py): DRF's own codes for
its exceptions, and `invalid` with `fields` (field name, dotted for nested ones, to its messages)
for a refused input.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

ERROR_CODES = (
    "invalid",
    "parse_error",
    "authentication_failed",
    "not_authenticated",
    "permission_denied",
    "not_found",
    "method_not_allowed",
    "not_acceptable",
    "conflict",
    "request_too_large",
    "unsupported_media_type",
    "throttled",
    "server_error",
)


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            flat.update(_flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
        return flat
    if isinstance(detail, list) and any(isinstance(item, dict | list) for item in detail):
        flat = {}
        for index, value in enumerate(detail):
            flat.update(_flatten(value, f"{prefix}.{index}" if prefix else str(index)))
        return flat
    items = detail if isinstance(detail, list) else [detail]
    return {prefix or "non_field_errors": [str(item) for item in items]}


def error_body(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # DRF's handler turns these into its own exceptions, and so does this one, to know their codes.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        general = fields.pop("non_field_errors", None) or fields.pop("detail", None)
        message = " ".join(general) if general else "Invalid input."
        response.data = error_body("invalid", message, fields)
    else:
        code = exc.default_code if exc.default_code in ERROR_CODES else "invalid"
        response.data = error_body(code, str(exc.detail))
    return response
