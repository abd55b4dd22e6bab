"""The ASGI application (uvicorn, bin/run): the web app, and the gateway's endpoints on a short path.

Django's handler runs every request through the web app's middleware (sessions, CSRF, auth,
messages, axes, WhiteNoise, ...). Most of it is sync-only, so under ASGI each request's chain runs
in a thread started for that request, the async view is called back on the event loop from there
(async_to_sync), and the request_started / request_finished signals hop to that thread too: about
2 ms of CPU and a sixth of the gateway process's CPU a call (BENCHMARKS.md, "The gateway's overhead,
round 2").

The gateway's views (the `gateway` app: bearer keys, JSON bodies, errors in their own format, no
session, no cookie, no CSRF) need none of it, so the requests they answer are served by
`ShortPathHandler`: the body read, the host checked against ALLOWED_HOSTS, SecurityMiddleware's
redirect and headers applied in the event loop (it does no I/O), the view called, the response
sent; a client that goes away cancels the view as under Django's handler. Everything else, the
gateway's unknown paths included, goes to Django's handler unchanged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
web_application = get_asgi_application()  # django.setup() first: the imports below read settings

from asgiref.sync import SyncToAsync, iscoroutinefunction, sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.exceptions import DisallowedHost, RequestAborted, RequestDataTooBig  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.db import connections  # noqa: E402
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse  # noqa: E402
from django.middleware.security import SecurityMiddleware  # noqa: E402
from django.urls import Resolver404, ResolverMatch, resolve, set_script_prefix  # noqa: E402
from django.urls.exceptions import NoReverseMatch  # noqa: E402

from gateway.services import in_worker_thread  # noqa: E402

logger = logging.getLogger("django.request")

SHORT_PATH_APPS = frozenset({"gateway"})  # apps whose views are served without the web app's middleware


@functools.lru_cache(maxsize=1024)
def short_path_match(path_info: str) -> ResolverMatch | None:
    """The path's view if a short-path app answers it (by the view's module: `gateway.views`, ...)."""
    try:
        match = resolve(path_info)
    except (Resolver404, NoReverseMatch):
        return None
    return match if match.func.__module__.partition(".")[0] in SHORT_PATH_APPS else None


def _error(status: int, message: str, type_: str, code: str, *, path: str = "") -> JsonResponse:
    # OpenAI's error shape, which the official clients turn into their own exception classes; under
    # /api/ Ollama's ({"error": "..."}), which the ollama package reads into ResponseError.
    if path.startswith("/api/"):
        return JsonResponse({"error": message}, status=status)
    return JsonResponse({"error": {"message": message, "type": type_, "param": None, "code": code}}, status=status)


def _method_not_allowed(request: HttpRequest, refused: HttpResponse) -> JsonResponse:
    """require_POST's and require_safe's empty text/html 405 in the client's JSON shape, its Allow kept."""
    allowed = refused["Allow"]
    message = f"Invalid method for URL ({request.method} {request.path}): use {allowed}."
    response = _error(405, message, "invalid_request_error", "method_not_allowed", path=request.path_info)
    response["Allow"] = allowed
    return response


def _no_response(request: HttpRequest) -> HttpResponse:  # SecurityMiddleware wants a next step; it is never called
    raise AssertionError("SecurityMiddleware is called step by step here")


class ShortPathHandler(ASGIHandler):
    """Django's ASGI handler without the middleware chain and the request signals (see the module)."""

    def load_middleware(self, is_async: bool = False) -> None:
        self.security = SecurityMiddleware(_no_response)
        self._middleware_chain = self.respond

    async def respond(self, request: HttpRequest) -> HttpResponse:
        try:
            request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it for the web app
            response = self.security.process_request(request)  # SECURE_SSL_REDIRECT
            if response is None:
                match = short_path_match(request.path_info)  # remembered: the dispatch resolved it
                request.resolver_match = match
                view = match.func
                if not iscoroutinefunction(view):  # a sync view: in a worker thread, its connections closed after
                    view = in_worker_thread(view)
                response = await view(request, *match.args, **match.kwargs)
                if isinstance(response, HttpResponseNotAllowed):
                    response = _method_not_allowed(request, response)
        except DisallowedHost:
            message = "The Host header is not one of ALLOWED_HOSTS."
            response = _error(400, message, "invalid_request_error", "bad_host", path=request.path_info)
        except RequestDataTooBig:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            message = f"The request body is larger than {limit:,} bytes."
            response = _error(413, message, "invalid_request_error", "payload_too_large", path=request.path_info)
        except Exception:  # never Django's HTML error page: the clients read JSON
            logger.exception("Internal Server Error: %s", request.path)
            response = _error(500, "Internal server error.", "server_error", "internal_error", path=request.path_info)
        if not response.streaming and not response.has_header("Content-Length"):  # as CommonMiddleware sets it
            response.headers["Content-Length"] = str(len(response.content))
        return self.security.process_response(request, response)

    async def handle(self, scope, receive, send) -> None:
        # Django's ASGIHandler.handle less the request_started and request_finished signals: their
        # receivers (closing the thread's database connections) hop to a thread started for the
        # request. The views close what they open: gateway.services.in_worker_thread.
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:  # the client left before the body was in
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            return

        async def process_request() -> None:
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client disconnected during the response
            finally:
                for close in response._resource_closers:  # what response.close() does, less its signal
                    close()
                response.closed = True

        # As in Django's handler: a client that goes away cancels the view (a stream stops its upstream call).
        tasks = [asyncio.create_task(self.listen_for_disconnect(receive)), asyncio.create_task(process_request())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        try:
            for task in tasks:
                if not task.done():
                    task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, RequestAborted):
                    pass
        finally:
            body_file.close()
            # A view that used Django's async ORM (aget, asave, ...) ran it in a thread kept for this
            # request: close the connections it took there, as request_finished does for the web app
            # (a pooled one left open would never go back to the pool).
            context = SyncToAsync.thread_sensitive_context.get(None)
            if context is not None and context in SyncToAsync.context_to_thread_executor:
                await sync_to_async(connections.close_all)()


class Application:
    """The short path for the gateway's endpoints, Django's handler for everything else."""

    def __init__(self) -> None:
        self.web = web_application
        self.short_path = ShortPathHandler()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            prefix = get_script_prefix(scope)
            path = scope["path"].removeprefix(prefix) if prefix else scope["path"]
            if short_path_match(path) is not None:
                await self.short_path(scope, receive, send)
                return
        await self.web(scope, receive, send)


application = Application()
