"""The API answers its paths with and without the trailing slash, for every method.

Django's APPEND_SLASH answered a POST to /api/v1/runs with a 301, which HTTP clients repeat as a
GET: the caller got the run list with a 200 and no run was created."""

from __future__ import annotations

import httpx
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents.models import AgentRun, RunStatus
from tests.factories import agents_create, run_create, user_create


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_a_post_without_the_slash_creates_the_run(api, agents, enqueued):
    response = api.post("/api/v1/runs", {"agent": "marcus", "prompt": "A /health endpoint"}, format="json")

    assert response.status_code == 201
    run = AgentRun.objects.get()
    assert response.json()["url"] == f"http://testserver/api/v1/runs/{run.pk}/"  # links keep the slash


def test_every_api_path_answers_without_the_slash(api, agents, user, enqueued):
    run = run_create(agent=agents["marcus"], user=user)

    assert len(api.get("/api/v1/runs").json()["results"]) == 1
    assert api.get(f"/api/v1/runs/{run.pk}").json()["id"] == run.pk
    assert api.post(f"/api/v1/runs/{run.pk}/cancel").json()["status"] == "cancelled"
    assert api.post("/api/v1/workflows", {"feature": "Search", "agents": ["marcus"]}, format="json").status_code == 201
    assert api.get("/api/v1/agents").status_code == 200


def test_an_unknown_api_path_without_the_slash_is_still_a_json_404(api, db):
    response = api.get("/api/v1/nothing-here")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_pages_outside_the_api_keep_djangos_redirect_to_the_slash(client, user):
    client.force_login(user)

    response = client.get("/runs")

    assert (response.status_code, response["Location"]) == (301, "/runs/")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("follow_redirects", [False, True])
def test_httpx_posting_without_the_slash_creates_exactly_one_run(live_server, monkeypatch, follow_redirects):
    monkeypatch.setattr("agents.queue.run_enqueue", lambda *, run_id: None)
    agents_create()
    token = Token.objects.create(user=user_create("dana")).key

    response = httpx.post(
        f"{live_server.url}/api/v1/runs",
        json={"agent": "marcus", "prompt": "A /health endpoint"},
        headers={"Authorization": f"Token {token}"},
        follow_redirects=follow_redirects,
        timeout=30,
    )

    assert response.status_code == 201
    assert AgentRun.objects.count() == 1
    assert AgentRun.objects.get().status == RunStatus.QUEUED
