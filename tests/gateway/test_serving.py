"""How the gateway is served (project.asgi): its endpoints on a short path without the web app's
middleware, still checking the host, answering JSON for every failure, and metering every call
with its two ledger writes and no other query once the key is known."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.http import JsonResponse
from django.test.utils import CaptureQueriesContext
from django.urls import ResolverMatch

from accounts.services import key_create, key_revoke
from gateway.services import in_worker_thread, key_check
from gateway.views import _answer as answer
from routing.models import CallOutcome, LedgerEntry
from tests.gateway.test_models_and_outages import HELLO, client
from tests.routing.conftest_router import make_provider


def test_a_key_revoked_while_in_use_is_refused_on_its_next_call(empty_gateway):
    created = key_create(user=get_user_model().objects.get(pk=empty_gateway.user_id), name="laptop")
    assert [model.id for model in client(empty_gateway, key=created.secret).models.list()] == ["auto"]

    key_revoke(key=created.key)

    with pytest.raises(openai.AuthenticationError) as raised:
        client(empty_gateway, key=created.secret).models.list()
    assert raised.value.body["message"] == "This API key was revoked."


def test_an_answer_is_json_with_its_length_and_the_security_headers_and_sets_no_cookie(empty_gateway):
    response = httpx.get(f"{empty_gateway.base_url}/models", headers={"Authorization": f"Bearer {empty_gateway.key}"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "set-cookie" not in response.headers


def test_a_host_not_allowed_is_refused_in_json(empty_gateway):
    response = httpx.get(
        f"{empty_gateway.base_url}/models",
        headers={"Authorization": f"Bearer {empty_gateway.key}", "Host": "evil.example"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_host"


def test_a_body_over_the_upload_limit_is_a_413_in_openai_s_shape(empty_gateway, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    with pytest.raises(openai.APIStatusError) as raised:
        client(empty_gateway).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "x" * 2000}], max_tokens=4
        )

    assert raised.value.status_code == 413
    assert raised.value.code == "payload_too_large"


def test_an_unexpected_error_in_a_gateway_view_is_a_json_500(empty_gateway, monkeypatch):
    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("gateway.views.model_names", broken)

    with pytest.raises(openai.InternalServerError) as raised:
        client(empty_gateway).models.list()

    assert raised.value.status_code == 500
    assert (raised.value.code, raised.value.body["message"]) == ("internal_error", "Internal server error.")


def test_the_web_app_and_the_gateway_s_unknown_paths_keep_django_s_full_stack(asgi_server):
    page = httpx.get(f"{asgi_server}/login/")
    unknown = httpx.get(f"{asgi_server}/v1/nothing-here")

    assert page.status_code == 200
    assert "csrftoken" in page.headers["set-cookie"]
    assert page.headers["x-frame-options"] == "DENY"
    assert "content-security-policy" in page.headers
    assert unknown.status_code == 404 and "x-frame-options" in unknown.headers


@pytest.mark.django_db
def test_a_call_with_a_key_already_checked_makes_only_its_two_ledger_writes(fake_openai, django_user_model):
    make_provider("loopback", base_url=fake_openai.base_url, model="gpt-4o-mini")
    user = django_user_model.objects.create_user("grace")
    secret = key_create(user=user, name="laptop").secret
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}'
    answer(secret, body, "chatcmpl-warm", client="test")  # the key, its last use and the routing table read once

    with CaptureQueriesContext(connection) as queries:
        *_, result, _budgets = answer(secret, body, "chatcmpl-1", client="test")  # the view's worker thread

    assert [query["sql"].split()[0] for query in queries] == ["INSERT", "UPDATE"]  # started, then completed
    row = LedgerEntry.objects.get(idempotency_key="gateway:chatcmpl-1:attempt:1")
    assert (row.outcome, row.user_id, row.agent, result.completion.text) == (
        CallOutcome.SUCCESS,
        user.pk,
        "gateway",
        fake_openai.reply,
    )


def test_a_streamed_call_still_answers_through_the_short_path(empty_gateway, fake_openai):
    make_provider("loopback", base_url=fake_openai.base_url, model="gpt-4o-mini")

    stream = client(empty_gateway).chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == fake_openai.reply
    assert chunks[-1].usage is not None
    assert LedgerEntry.objects.get().outcome == CallOutcome.SUCCESS


def test_connections_a_view_takes_through_django_s_async_orm_are_closed_after_the_request(empty_gateway, monkeypatch):
    # Django's async ORM runs in a thread kept for the request; the short path has no request_finished
    # signal, so it closes that thread's connections itself (a pooled one would never go back).
    used = []

    def connect() -> None:
        wrapper = connections["default"]  # this thread's own, not the proxy
        wrapper.ensure_connection()
        used.append(wrapper)

    async def holder_through_the_async_orm(request):
        await sync_to_async(connect)()  # thread-sensitive, as aget() / asave() are
        return await in_worker_thread(key_check)(empty_gateway.key)

    monkeypatch.setattr("gateway.views._key_holder", holder_through_the_async_orm)

    assert [model.id for model in client(empty_gateway).models.list()] == ["auto"]
    [wrapper] = used
    deadline = time.monotonic() + 5  # closed just after the answer is sent
    while wrapper.connection is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert wrapper.connection is None


def test_a_sync_view_of_the_gateway_is_served_in_a_worker_thread(asgi_server, monkeypatch):
    import project.asgi

    def sync_view(request):
        return JsonResponse({"thread": threading.current_thread().name})

    monkeypatch.setattr(project.asgi, "short_path_match", lambda path: ResolverMatch(sync_view, (), {}))
    response = httpx.get(f"{asgi_server}/v1/models")

    assert response.status_code == 200
    assert response.json()["thread"] != "uvicorn"
