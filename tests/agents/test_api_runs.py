"""The runs API: POST/GET /api/v1/runs/, GET /api/v1/runs/{id}/, POST /api/v1/runs/{id}/cancel/."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents.models import AgentRun, RunStatus
from routing.models import CallOutcome, LedgerEntry
from tests.factories import run_create

NOT_JSON = "JSON parse error - Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"

pytestmark = pytest.mark.usefixtures("enqueued")  # run ids are recorded, not sent to the broker


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def api(user) -> APIClient:
    return client_for(user)


@pytest.fixture
def stranger(django_user_model):
    return django_user_model.objects.create_user("sam", password="another-long-password")


def make_run(agent, user, **fields) -> AgentRun:
    return run_create(agent=agent, user=user, **fields)


# -- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/runs/"),
        ("post", "/api/v1/runs/"),
        ("get", "/api/v1/runs/1/"),
        ("post", "/api/v1/runs/1/cancel/"),
    ],
)
def test_it_answers_401_with_a_challenge_without_a_token(db, method, path):
    response = getattr(APIClient(), method)(path, {}, format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.json() == {
        "error": {"code": "not_authenticated", "message": "Authentication credentials were not provided."}
    }


def test_it_answers_401_for_a_wrong_token(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get("/api/v1/runs/")
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "authentication_failed", "message": "Invalid API key."}}


# -- create ---------------------------------------------------------------------------------


def test_it_creates_a_run_and_answers_201_with_its_id_status_and_url(
    api, agents, user, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/runs/", {"agent": "marcus", "prompt": "A /health endpoint"}, format="json")
    assert response.status_code == 201
    body = response.json()
    run = AgentRun.objects.get()
    assert (body["id"], body["status"], body["agent"], body["user"]) == (run.pk, "queued", "marcus", "dana")
    assert body["url"] == f"http://testserver/api/v1/runs/{run.pk}/"
    assert response["Location"] == body["url"]
    assert body["page_url"] == f"http://testserver/runs/{run.pk}/"
    assert body["prompt"] == "A /health endpoint"
    assert body["attempts"] == []
    assert enqueued == [run.pk]
    assert run.created_by == user


def test_it_accepts_the_optional_capability_and_limits(api, agents, providers):
    payload = {"agent": "alex", "prompt": "tests", "capability": "testing", "max_tokens": 300, "max_prompt_tokens": 900}
    response = api.post("/api/v1/runs/", payload, format="json")
    assert response.status_code == 201
    run = AgentRun.objects.get()
    assert (run.capability, run.max_tokens, run.max_prompt_tokens) == ("testing", 300, 900)


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        ({"prompt": "x"}, {"agent": ["This field is required."]}),
        ({"agent": "marcus"}, {"prompt": ["This field is required."]}),
        ({"agent": "marcus", "prompt": ""}, {"prompt": ["This field may not be blank."]}),
        ({"agent": "marcus", "prompt": "   "}, {"prompt": ["The prompt is empty."]}),
        ({"agent": "ghost", "prompt": "x"}, {"agent": ["There is no agent named 'ghost'."]}),
        ({"agent": "marcus", "prompt": "a\x00b"}, {"prompt": ["Null characters are not allowed."]}),
        ({"agent": "marcus", "prompt": ["x"]}, {"prompt": ["Not a valid string."]}),
        ({"agent": "marcus", "prompt": "x", "capability": "BAD"}, {"capability": [
            "A capability is a lowercase word like code_generation."
        ]}),
        ({"agent": "marcus", "prompt": "x", "max_tokens": 0}, {"max_tokens": [
            "Ensure this value is greater than or equal to 1."
        ]}),
        ({"agent": "marcus", "prompt": "x", "max_tokens": 10**30}, {"max_tokens": [
            "Ensure this value is less than or equal to 1000000."
        ]}),
        ({"agent": "marcus", "prompt": "x", "max_tokens": "many"}, {"max_tokens": ["A valid integer is required."]}),
    ],
)  # fmt: skip
def test_it_refuses_bad_input_with_a_json_400_naming_the_field(api, agents, payload, errors):
    response = api.post("/api/v1/runs/", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == errors
    assert not AgentRun.objects.exists()


def test_it_refuses_a_disabled_agent(api, agents):
    agents["emily"].enabled = False
    agents["emily"].save()
    response = api.post("/api/v1/runs/", {"agent": "emily", "prompt": "x"}, format="json")
    assert (response.status_code, response.json()["error"]["fields"]) == (400, {"agent": ["Emily is disabled."]})


def test_it_refuses_a_prompt_over_the_limit(api, agents, settings):
    settings.SWITCHYARD_MAX_PROMPT_CHARS = 100
    response = api.post("/api/v1/runs/", {"agent": "marcus", "prompt": "x" * 101}, format="json")
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert fields == {"prompt": ["The prompt is too long: 101 characters, the limit is 100."]}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "answer"),
    [
        (
            "{not json",
            "application/json",
            400,
            {"code": "parse_error", "message": NOT_JSON},
        ),
        (
            "[1, 2]",
            "application/json",
            400,
            {"code": "validation_error", "message": "Invalid data. Expected a dictionary, but got list.", "fields": {}},
        ),
        (
            "agent=marcus",
            "text/plain",
            415,
            {"code": "unsupported_media_type", "message": 'Unsupported media type "text/plain" in request.'},
        ),
    ],
)
def test_it_answers_a_json_4xx_for_a_body_it_cannot_read(api, agents, body, content_type, status, answer):
    response = api.generic("POST", "/api/v1/runs/", body, content_type=content_type)
    assert (response.status_code, response.json()["error"]) == (status, answer)
    assert not AgentRun.objects.exists()


# -- read -----------------------------------------------------------------------------------


def test_it_shows_a_run_with_its_result_and_every_attempt(api, agents, user, providers):
    run = make_run(
        agents["marcus"],
        user,
        status=RunStatus.SUCCEEDED,
        output="```python\nprint(1)\n```",
        provider_name="anthropic",
        model_name="claude-sonnet-4-5",
        prompt_tokens=120,
        completion_tokens=80,
        latency_ms=2300,
        cost_usd=Decimal("0.00156"),
        baseline_cost_usd=Decimal("0.00156"),
        quality_ok=True,
        quality_detail="the code block parses as Python (1 lines)",
    )
    now = timezone.now()
    common = {"run_id": run.pk, "agent": "marcus", "created_at": now}
    LedgerEntry.objects.create(
        provider=providers["ollama"],
        model_name="mistral:latest",
        is_local=True,
        outcome=CallOutcome.TRANSIENT,
        error="503 server busy",
        reason="priority 1, local",
        latency_ms=12,
        **common,
    )
    LedgerEntry.objects.create(
        provider=providers["anthropic"],
        model_name="claude-sonnet-4-5",
        is_local=False,
        outcome=CallOutcome.SUCCESS,
        reason="fallback: ollama 503 server busy; priority 2, cloud",
        attempt=2,
        latency_ms=2300,
        prompt_tokens=120,
        completion_tokens=80,
        cost_usd=Decimal("0.00156"),
        **common,
    )
    body = api.get(f"/api/v1/runs/{run.pk}/").json()
    assert body["status"] == "succeeded"
    assert body["output"] == "```python\nprint(1)\n```"
    assert (body["provider"], body["model"]) == ("anthropic", "claude-sonnet-4-5")
    assert (body["prompt_tokens"], body["completion_tokens"], body["latency_ms"]) == (120, 80, 2300)
    assert (body["cost_usd"], body["baseline_cost_usd"], body["savings_usd"]) == (
        "0.0015600000",
        "0.0015600000",
        "0.0000000000",
    )
    assert (body["quality_ok"], body["quality_detail"]) == (True, "the code block parses as Python (1 lines)")
    first, second = body["attempts"]
    assert (first["provider"], first["model"], first["outcome"], first["latency_ms"]) == (
        "ollama",
        "mistral:latest",
        "transient_error",
        12,
    )
    assert (first["reason"], first["error"]) == ("priority 1, local", "503 server busy")
    assert (second["provider"], second["outcome"], second["reason"]) == (
        "anthropic",
        "success",
        "fallback: ollama 503 server busy; priority 2, cloud",
    )


def test_it_lists_only_your_own_runs_newest_first(api, agents, user, stranger):
    older = make_run(agents["marcus"], user)
    newer = make_run(agents["emily"], user)
    make_run(agents["marcus"], stranger)
    body = api.get("/api/v1/runs/").json()
    assert [item["id"] for item in body["results"]] == [newer.pk, older.pk]
    assert (body["next"], body["previous"]) == (None, None)
    assert "output" not in body["results"][0]  # the list stays light; the detail has the output


def test_it_lists_everyones_runs_for_staff_and_filters_by_user(agents, user, stranger, staff_user):
    make_run(agents["marcus"], user)
    theirs = make_run(agents["marcus"], stranger)
    staff = client_for(staff_user)
    assert len(staff.get("/api/v1/runs/").json()["results"]) == 2
    assert [item["id"] for item in staff.get("/api/v1/runs/?user=sam").json()["results"]] == [theirs.pk]


def test_a_filter_by_another_user_finds_nothing_for_non_staff(api, agents, stranger):
    make_run(agents["marcus"], stranger)  # sam's run: not theirs to see, filtered or not
    response = api.get("/api/v1/runs/?user=sam")
    assert (response.status_code, response.json()["results"]) == (200, [])


def test_it_filters_runs_by_agent_status_and_since(api, agents, user):
    marcus_done = make_run(agents["marcus"], user, status=RunStatus.SUCCEEDED)
    make_run(agents["marcus"], user)
    emily_done = make_run(agents["emily"], user, status=RunStatus.SUCCEEDED)
    old = make_run(agents["emily"], user)
    AgentRun.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))

    def ids(query: str) -> list[int]:
        return [item["id"] for item in api.get(f"/api/v1/runs/?{query}").json()["results"]]

    assert ids("agent=marcus&status=succeeded") == [marcus_done.pk]
    assert ids("status=succeeded") == [emily_done.pk, marcus_done.pk]
    since = (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert old.pk not in ids(f"since={since}")
    assert old.pk in ids("since=2000-01-01T00:00:00Z")


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=exploded", "status"), ("since=yesterday", "since"), ("since=2026-13-45T99:00", "since")],
)
def test_it_refuses_a_bad_filter_with_a_json_400(api, agents, query, field):
    response = api.get(f"/api/v1/runs/?{query}")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


def test_it_paginates_the_list_by_cursor(api, agents, user):
    runs = [make_run(agents["marcus"], user) for _ in range(3)]
    first = api.get("/api/v1/runs/?page_size=2").json()
    assert [item["id"] for item in first["results"]] == [runs[2].pk, runs[1].pk]
    assert first["next"].startswith("http://testserver/api/v1/runs/?cursor=")
    assert "page_size=2" in first["next"]
    second = api.get(first["next"]).json()
    assert ([item["id"] for item in second["results"]], second["next"]) == ([runs[0].pk], None)
    assert api.get(second["previous"]).json()["results"] == first["results"]


@pytest.mark.parametrize("run_id", ["abc", "99999999", str(2**64), "-1"])
def test_it_answers_a_json_404_for_a_run_that_does_not_exist(api, db, run_id):
    response = api.get(f"/api/v1/runs/{run_id}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_it_answers_404_for_someone_elses_run_and_shows_it_to_staff(api, agents, stranger, staff_user):
    theirs = make_run(agents["marcus"], stranger)
    assert api.get(f"/api/v1/runs/{theirs.pk}/").status_code == 404
    assert client_for(staff_user).get(f"/api/v1/runs/{theirs.pk}/").json()["user"] == "sam"


# -- cancel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.RUNNING])
def test_it_cancels_a_queued_or_running_run(api, agents, user, status):
    run = make_run(agents["marcus"], user, status=status)
    response = api.post(f"/api/v1/runs/{run.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


@pytest.mark.parametrize("status", [RunStatus.SUCCEEDED, RunStatus.FAILED])
def test_it_refuses_to_cancel_a_finished_run_with_a_409_carrying_its_status(api, agents, user, status):
    run = make_run(agents["marcus"], user, status=status, output="kept")
    response = api.post(f"/api/v1/runs/{run.pk}/cancel/")
    assert response.status_code == 409
    assert response.json() == {
        "error": {"code": "conflict", "message": f"Run #{run.pk} has already finished ({status}).", "status": status}
    }
    run.refresh_from_db()
    assert (run.status, run.output) == (status, "kept")


def test_a_repeated_cancel_answers_200_with_the_run_as_it_is(api, agents, user):
    run = make_run(agents["marcus"], user)
    first = api.post(f"/api/v1/runs/{run.pk}/cancel/")
    second = api.post(f"/api/v1/runs/{run.pk}/cancel/")
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["status"] == "cancelled"
    assert second.json()["finished_at"] == first.json()["finished_at"]


def test_it_does_not_let_you_cancel_someone_elses_run_but_staff_can(api, agents, stranger, staff_user):
    theirs = make_run(agents["marcus"], stranger)
    assert api.post(f"/api/v1/runs/{theirs.pk}/cancel/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == RunStatus.QUEUED
    assert client_for(staff_user).post(f"/api/v1/runs/{theirs.pk}/cancel/").json()["status"] == "cancelled"


def test_it_answers_405_in_json_for_a_wrong_method(api, agents, user):
    run = make_run(agents["marcus"], user)
    response = api.delete(f"/api/v1/runs/{run.pk}/")
    assert response.status_code == 405
    assert response.json() == {"error": {"code": "method_not_allowed", "message": 'Method "DELETE" not allowed.'}}
