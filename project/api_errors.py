"""Every error under /api/ in one JSON shape, with a code a script can branch on:

    {"error": {"code": "validation_error", "message": "Invalid input: prompt: This field is required.",
               "fields": {"prompt": ["This field is required."]}}}

`fields` (field -> messages) comes with validation errors only; what is not about one field is in
`message`. A conflict adds the state that refused it (`"status": "succeeded"`). A 401 carries
WWW-Authenticate, a 429 Retry-After.

DRF calls `api_exception_handler` (REST_FRAMEWORK["EXCEPTION_HANDLER"]) for whatever a view or DRF
raises. What never reaches DRF (an unknown path, an unhandled exception, the database down) goes
through Django's error handlers, which project/urls.py points here: under /api/ they answer the
same shape, elsewhere Django's HTML pages. The answer is a plain JsonResponse, never a DRF
renderer's, so `?format=csv` cannot turn an error into CSV.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, RequestDataTooBig
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.serializers import as_serializer_error
from rest_framework.settings import api_settings
from rest_framework.views import set_rollback

from core.errors import Conflict

API_PREFIX = "/api/"
OPENAI_PREFIX = "/v1/"  # the OpenAI-compatible gateway: OpenAI's error shape

# Codes for statuses whose exception has no code of its own (DRF's bare APIException says "error").
CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "server_error",
    503: "service_unavailable",
}
# Every code an error under /api/ may carry (the OpenAPI schema's ErrorCodeEnum is this list).
ERROR_CODES = (
    "validation_error",
    "parse_error",
    *CODES.values(),
    "authentication_failed",
)
# Keys whose messages are about the input as a whole: DRF's, Django's, and "detail".
_GENERAL = {api_settings.NON_FIELD_ERRORS_KEY, NON_FIELD_ERRORS, "detail", ""}


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "payload_too_large"

    def __init__(self) -> None:
        super().__init__(f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes.")


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    fields: dict[str, list[str]] | None = None,
    extra: dict[str, object] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    error: dict[str, object] = {"code": code, "message": message, **(extra or {})}
    if fields is not None:
        error["fields"] = fields
    return JsonResponse({"error": error}, status=status, headers=headers)


# -- DRF ------------------------------------------------------------------------------------


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> JsonResponse | None:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: None leaves the exception to Django (logged, then `server_error`)."""
    if isinstance(exc, Conflict):
        set_rollback()
        return error_response(409, "conflict", exc.message, extra=exc.state)
    error = _as_api_exception(exc)
    if error is None:
        return None
    set_rollback()
    headers = {}
    if getattr(error, "auth_header", None):
        headers["WWW-Authenticate"] = error.auth_header
    if getattr(error, "wait", None):
        headers["Retry-After"] = str(error.wait)
    if isinstance(error, exceptions.ValidationError):
        message, fields = _validation(error.detail)
        return error_response(400, "validation_error", message, fields=fields, headers=headers)
    code = error.default_code if error.default_code in ERROR_CODES else CODES.get(error.status_code, "server_error")
    message = " ".join(text for _, text in _flatten(error.detail))
    return error_response(error.status_code, code, message, headers=headers)


def _as_api_exception(exc: Exception) -> exceptions.APIException | None:
    if isinstance(exc, exceptions.APIException):
        return exc
    if isinstance(exc, Http404):
        return exceptions.NotFound(*exc.args)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(*exc.args)
    if isinstance(exc, DjangoValidationError):  # a service's refusal
        return exceptions.ValidationError(as_serializer_error(exc))
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge()
    return None


def _validation(detail: Any) -> tuple[str, dict[str, list[str]]]:
    general: list[str] = []
    fields: dict[str, list[str]] = {}
    for name, text in _flatten(detail):
        if name in _GENERAL:
            general.append(text)
        else:
            fields.setdefault(name, []).append(text)
    if general:
        return " ".join(general), fields
    return "Invalid input: " + "; ".join(f"{name}: {' '.join(texts)}" for name, texts in fields.items()), fields


def _flatten(detail: Any, name: str = "") -> Iterator[tuple[str, str]]:
    """(field, message) pairs; a nested field is named by its path, like `agents.1`."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            yield from _flatten(value, f"{name}.{key}" if name and name not in _GENERAL else str(key))
    elif isinstance(detail, list):
        for value in detail:
            yield from _flatten(value, name)
    else:
        yield name, str(detail)


# -- Django's handlers (project/urls.py) ----------------------------------------------------


def _is_api(request: HttpRequest) -> bool:
    # "/api" itself too: an API client that dropped the slash is answered as one.
    return request.path_info.startswith(API_PREFIX) or request.path_info == API_PREFIX.rstrip("/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return error_response(413, "payload_too_large", str(PayloadTooLarge().detail))
    return error_response(400, "bad_request", "The request could not be read.")


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _is_api(request):
        return defaults.permission_denied(request, exception)
    return error_response(403, "permission_denied", str(exception) or "You may not do that.")


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path_info.startswith(OPENAI_PREFIX):  # what OpenAI answers, which its clients raise as NotFoundError
        message = f"Invalid URL ({request.method} {request.path})"
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
        return JsonResponse({"error": error}, status=404)
    if not _is_api(request):
        return defaults.page_not_found(request, exception)
    return error_response(404, "not_found", "Nothing is at this address.")


def server_error(request: HttpRequest) -> HttpResponse:
    if not _is_api(request):
        return defaults.server_error(request)
    # Django calls this handler inside its `except` block: the exception being answered is at hand.
    if isinstance(sys.exception(), OperationalError | InterfaceError):
        return error_response(503, "service_unavailable", "The database is unreachable; try again in a moment.")
    return error_response(500, "server_error", "Something went wrong on our side; it has been logged.")
