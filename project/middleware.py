"""Middleware for the API."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse
from django.urls import is_valid_path

from project.api_errors import API_PREFIX


class ApiTrailingSlashMiddleware:
    """Serves /api/v1/runs as /api/v1/runs/, for every method.

    Django's APPEND_SLASH answers a 301, which HTTP clients (requests, httpx) repeat as a GET: a
    POST without the slash came back 200 with the run list and created nothing. The API's URLs
    keep their one, slashed, form (what reverse() and the schema give); this only reads the other.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path.startswith(API_PREFIX) and not path.endswith("/"):
            urlconf = getattr(request, "urlconf", None)
            if not is_valid_path(path, urlconf) and is_valid_path(f"{path}/", urlconf):
                request.path_info = f"{path}/"
                request.path = f"{request.path}/"
        return self.get_response(request)


class NulInQueryMiddleware:
    """A NUL in a query parameter outside /api/ is a 400, before any view sees it.

    PostgreSQL cannot hold NUL in text, so a lookup with one fails when the query runs: the
    admin's list filters on text fields (`?status__exact=%00`, on every changelist with one,
    django-axes' too) were 500s. Forms refuse NUL already; the API refuses it per field, in its
    JSON error shape, so it is left to do so.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(API_PREFIX) and any(
            "\x00" in name or "\x00" in value for name, values in request.GET.lists() for value in values
        ):
            raise BadRequest("A query parameter holds a NUL character.")
        return self.get_response(request)
