"""Every error under /api/ has one JSON shape, with a code a script can branch on (project/api_errors.py):

    {"error": {"code": "...", "message": "...", "fields": {...}}}

Each status comes from a real request through the whole stack (middleware, URL resolver, DRF)."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from agents.models import AgentRun, RunStatus
from project.api_errors import bad_request
from tests.factories import agents_create, run_create, user_create


@pytest.fixture
def env(db, settings, monkeypatch) -> SimpleNamespace:
    monkeypatch.setattr("agents.queue.run_enqueue", lambda *, run_id: None)  # no broker needed here
    user = user_create("dana")
    cache.delete(f"throttle_user_{user.pk}")  # a fresh test database reuses ids; the cache outlives it
    return SimpleNamespace(
        settings=settings,
        monkeypatch=monkeypatch,
        user=user,
        agents=agents_create(),
        api=client_for(user),
        anonymous=Client(raise_request_exception=False),
    )


def client_for(user) -> Client:
    token = Token.objects.create(user=user).key
    return Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {token}")


def post_json(client: Client, path: str, body: str):
    return client.generic("POST", path, body, content_type="application/json")


TOO_BIG = json.dumps({"agent": "marcus", "prompt": "x" * 3_000_000})  # over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB)


def throttled(env):
    env.settings.REST_FRAMEWORK = {
        **env.settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": "1/minute", "anon": "60/minute"},
    }
    # DRF copies the rates into a class attribute at import; point it at the overridden ones.
    env.monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", api_settings.DEFAULT_THROTTLE_RATES)
    env.api.get("/api/v1/agents/")
    return env.api.get("/api/v1/agents/")


def failing(exception: Exception) -> Callable:
    def request(env):
        def run_list(**kwargs):
            raise exception

        env.monkeypatch.setattr("agents.selectors.run_list", run_list)
        return env.api.get("/api/v1/runs/")

    return request


def finished_run_cancelled(env):
    run = run_create(agent=env.agents["marcus"], user=env.user, status=RunStatus.SUCCEEDED)
    return env.api.post(f"/api/v1/runs/{run.pk}/cancel/")


CASES = [
    (400, "validation_error", lambda env: post_json(env.api, "/api/v1/runs/", '{"agent": "marcus"}')),
    (400, "parse_error", lambda env: post_json(env.api, "/api/v1/runs/", "{not json")),
    (401, "not_authenticated", lambda env: env.anonymous.get("/api/v1/runs/")),
    (401, "authentication_failed", lambda env: env.anonymous.get("/api/v1/runs/", HTTP_AUTHORIZATION="Token nope")),
    (403, "permission_denied", lambda env: env.api.get("/api/v1/reports/monthly/2026-10/")),
    (404, "not_found", lambda env: env.api.get("/api/v1/no-such-thing/")),
    (404, "not_found", lambda env: env.api.get("/api/v1/runs/987654321/")),
    (405, "method_not_allowed", lambda env: env.api.delete("/api/v1/runs/")),
    (406, "not_acceptable", lambda env: env.api.get("/api/v1/runs/", HTTP_ACCEPT="text/csv")),
    (409, "conflict", finished_run_cancelled),
    (413, "payload_too_large", lambda env: post_json(env.api, "/api/v1/runs/", TOO_BIG)),
    (415, "unsupported_media_type", lambda env: env.api.post("/api/v1/runs/", "x", content_type="text/plain")),
    (429, "throttled", throttled),
    (500, "server_error", failing(RuntimeError("a bug"))),
    (503, "service_unavailable", failing(OperationalError("connection refused"))),
]  # fmt: skip


@pytest.mark.parametrize(("status", "code", "request_it"), CASES, ids=[f"{s}-{c}" for s, c, _ in CASES])
def test_every_api_error_has_the_one_json_shape_with_its_code(env, status, code, request_it):
    response = request_it(env)

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert set(error) <= {"code", "message", "fields", "status"}
    assert not AgentRun.objects.exclude(status=RunStatus.SUCCEEDED).exists()  # no refusal wrote a run


def test_a_validation_error_names_each_field_with_its_messages(env):
    response = post_json(env.api, "/api/v1/runs/", '{"agent": "ghost", "prompt": "x", "max_tokens": 0}')

    assert response.json() == {
        "error": {
            "code": "validation_error",
            "message": "Invalid input: max_tokens: Ensure this value is greater than or equal to 1.",
            "fields": {"max_tokens": ["Ensure this value is greater than or equal to 1."]},
        }
    }


def test_a_services_refusal_is_a_validation_error_on_its_field(env):
    response = post_json(env.api, "/api/v1/runs/", '{"agent": "ghost", "prompt": "x"}')

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"agent": ["There is no agent named 'ghost'."]}


def test_a_list_items_error_is_named_by_its_place(env):
    response = post_json(env.api, "/api/v1/workflows/", '{"feature": "x", "agents": ["marcus", ["nested"]]}')

    assert response.json()["error"]["fields"] == {"agents.1": ["Not a valid string."]}


def test_a_401_carries_its_challenge_and_a_429_its_retry_after(env):
    assert env.anonymous.get("/api/v1/runs/")["WWW-Authenticate"] == 'Bearer realm="api"'
    assert 1 <= int(throttled(env)["Retry-After"]) <= 60


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_an_auth_error_is_json_even_when_csv_was_asked_for(env, who):
    client = env.anonymous if who == "anonymous" else env.api

    response = client.get("/api/v1/reports/monthly/2026-10/", {"format": "csv"})

    assert response.status_code == (401 if who == "anonymous" else 403)
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == ("not_authenticated" if who == "anonymous" else "permission_denied")


def test_a_bad_month_is_a_json_validation_error_even_when_csv_was_asked_for(env):
    env.user.is_staff = True
    env.user.save()

    response = env.api.get("/api/v1/reports/monthly/2026-13/", {"format": "csv"})

    assert (response.status_code, response["Content-Type"]) == (400, "application/json")
    assert response.json()["error"]["fields"] == {"month": ["Month must look like 2026-03 (YYYY-MM), got '2026-13'."]}


def test_pages_outside_the_api_keep_their_html_error_pages(env):
    browser = Client(raise_request_exception=False)
    browser.force_login(env.user)

    response = browser.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_body_too_big_for_django_itself_is_a_413_under_the_api_and_a_page_elsewhere(rf):
    api = bad_request(rf.post("/api/v1/runs/"), RequestDataTooBig("too big"))
    page = bad_request(rf.post("/runs/new/"), RequestDataTooBig("too big"))

    assert (api.status_code, json.loads(api.content)["error"]["code"]) == (413, "payload_too_large")
    assert (page.status_code, page["Content-Type"]) == (400, "text/html; charset=utf-8")


@pytest.mark.parametrize("method", ["OPTIONS", "POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", ["/api/docs/", "/api/schema/"])
def test_the_api_documents_answer_any_method_without_a_500(env, path, method):
    # OPTIONS on the Swagger UI page was a 500: DRF rendered its metadata with the page's HTML
    # template renderer, which has no template for it.
    response = env.api.generic(method, path)

    assert response.status_code < 500
    if response.status_code >= 400:
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("path", "body", "unknown"),
    [
        ("/api/v1/runs/", '{"agent": "marcus", "prompt": "x", "max_token": 5}', "max_token"),
        ("/api/v1/runs/", '{"agent": "marcus", "prompt": "x", "where": "local"}', "where"),
        ("/api/v1/workflows/", '{"feature": "x", "agents": ["marcus"], "agent": "alex"}', "agent"),
    ],
)
def test_a_create_refuses_a_field_it_does_not_know_rather_than_dropping_it(env, path, body, unknown):
    # A misspelt max_tokens was dropped in silence: the run went ahead with no limit.
    response = post_json(env.api, path, body)

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert list(fields) == [unknown]
    assert fields[unknown][0].startswith("Unknown field; known: ")
    assert not AgentRun.objects.exists()


@pytest.mark.parametrize("path", ["/api", "/api/", "/api/v1", "/api/v1/"])
def test_the_apis_own_root_is_a_json_404(env, path):
    response = env.api.get(path)

    assert (response.status_code, response["Content-Type"]) == (404, "application/json")
    assert response.json()["error"]["code"] == "not_found"
