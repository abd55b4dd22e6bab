"""The workflows API: POST /api/v1/workflows/, GET /api/v1/workflows/{id}/ and its cancel."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents.models import AgentRun, RunStatus, Workflow
from tests.factories import run_create

pytestmark = pytest.mark.usefixtures("enqueued")  # run ids are recorded, not sent to the broker


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def api(user) -> APIClient:
    return client_for(user)


def test_it_answers_401_without_a_token(db):
    assert APIClient().post("/api/v1/workflows/", {"feature": "x"}, format="json").status_code == 401
    assert APIClient().get("/api/v1/workflows/1/").status_code == 401
    assert APIClient().post("/api/v1/workflows/1/cancel/").status_code == 401


def test_it_fans_a_feature_out_to_all_four_agents_by_default(api, agents, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/workflows/", {"feature": "Invite a teammate by email"}, format="json")
    assert response.status_code == 201
    body = response.json()
    workflow = Workflow.objects.get()
    assert (body["id"], body["status"], body["user"]) == (workflow.pk, "queued", "dana")
    assert body["url"] == f"http://testserver/api/v1/workflows/{workflow.pk}/"
    assert response["Location"] == body["url"]
    assert [run["agent"] for run in body["runs"]] == ["marcus", "emily", "alex", "jordan"]
    assert sorted(enqueued) == sorted(run["id"] for run in body["runs"])
    assert (body["finished_at"], body["wall_time_s"]) == (None, None)


def test_it_runs_only_the_agents_asked_for(api, agents):
    response = api.post("/api/v1/workflows/", {"feature": "Billing", "agents": ["jordan", "marcus"]}, format="json")
    assert response.status_code == 201
    assert sorted(run["agent"] for run in response.json()["runs"]) == ["jordan", "marcus"]


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        ({}, {"feature": ["This field is required."]}),
        ({"feature": ""}, {"feature": ["This field may not be blank."]}),
        ({"feature": "x", "agents": []}, {"agents": ["Choose at least one agent."]}),
        ({"feature": "x", "agents": ["marcus", "ghost"]}, {"agents": ["There is no agent named 'ghost'."]}),
        ({"feature": "x", "agents": "marcus"}, {"agents": ['Expected a list of items but got type "str".']}),
        ({"feature": "x", "agents": [{"slug": "marcus"}]}, {"agents.0": ["Not a valid string."]}),
    ],
)
def test_it_refuses_bad_input_with_a_json_400_and_creates_nothing(api, agents, payload, errors):
    response = api.post("/api/v1/workflows/", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == errors
    assert not Workflow.objects.exists()
    assert not AgentRun.objects.exists()


def test_it_refuses_a_disabled_agent(api, agents):
    agents["alex"].enabled = False
    agents["alex"].save()
    response = api.post("/api/v1/workflows/", {"feature": "x", "agents": ["alex"]}, format="json")
    assert (response.status_code, response.json()["error"]["fields"]) == (400, {"agents": ["Alex is disabled."]})


def test_it_shows_a_finished_workflow_with_its_runs_and_totals(api, agents, user):
    workflow = Workflow.objects.create(
        feature="Search",
        created_by=user,
        status=RunStatus.SUCCEEDED,
        cost_usd=Decimal("0.25"),
        baseline_cost_usd=Decimal("1.75"),
        savings_usd=Decimal("1.50"),  # as workflow_finish_if_done writes it
    )
    Workflow.objects.filter(pk=workflow.pk).update(finished_at=workflow.created_at + timezone.timedelta(seconds=42))
    run = run_create(agent=agents["marcus"], user=user, workflow=workflow, status=RunStatus.SUCCEEDED)
    body = api.get(f"/api/v1/workflows/{workflow.pk}/").json()
    assert (body["status"], body["feature"], body["wall_time_s"]) == ("succeeded", "Search", 42.0)
    assert (body["cost_usd"], body["baseline_cost_usd"], body["savings_usd"]) == (
        "0.2500000000",
        "1.7500000000",
        "1.5000000000",
    )
    assert [(item["id"], item["agent"], item["status"]) for item in body["runs"]] == [(run.pk, "marcus", "succeeded")]


def test_it_answers_404_for_someone_elses_workflow_but_staff_see_it(api, agents, django_user_model, staff_user):
    stranger = django_user_model.objects.create_user("sam", password="another-long-password")
    workflow = Workflow.objects.create(feature="theirs", created_by=stranger)
    assert api.get(f"/api/v1/workflows/{workflow.pk}/").status_code == 404
    assert client_for(staff_user).get(f"/api/v1/workflows/{workflow.pk}/").status_code == 200


@pytest.mark.parametrize("workflow_id", ["nope", "12345678", str(10**20)])
def test_it_answers_a_json_404_for_a_workflow_that_does_not_exist(api, db, workflow_id):
    response = api.get(f"/api/v1/workflows/{workflow_id}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_it_cancels_a_workflows_unfinished_runs(api, agents, user):
    workflow_id = api.post("/api/v1/workflows/", {"feature": "Search", "agents": ["marcus", "jordan"]}, format="json")
    workflow_id = workflow_id.json()["id"]

    response = api.post(f"/api/v1/workflows/{workflow_id}/cancel/")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["finished_at"] is not None
    assert [item["status"] for item in body["runs"]] == ["cancelled", "cancelled"]


def test_it_answers_409_with_its_status_when_every_run_finished_by_itself(api, agents, user):
    workflow = Workflow.objects.create(feature="Search", created_by=user, status=RunStatus.SUCCEEDED)
    run_create(agent=agents["marcus"], user=user, workflow=workflow, status=RunStatus.SUCCEEDED)
    response = api.post(f"/api/v1/workflows/{workflow.pk}/cancel/")
    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "conflict",
            "message": f"Workflow #{workflow.pk} has no run left to cancel (succeeded).",
            "status": "succeeded",
        }
    }


def test_a_repeated_workflow_cancel_answers_200_with_the_workflow_as_it_is(api, agents, user):
    created = api.post("/api/v1/workflows/", {"feature": "Search", "agents": ["marcus", "jordan"]}, format="json")
    url = f"/api/v1/workflows/{created.json()['id']}/cancel/"
    first = api.post(url)
    second = api.post(url)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["status"] == "cancelled"
    assert second.json()["finished_at"] == first.json()["finished_at"]


def test_a_repeated_cancel_of_a_partly_finished_workflow_answers_200(api, agents, user):
    created = api.post("/api/v1/workflows/", {"feature": "Search", "agents": ["marcus", "jordan"]}, format="json")
    workflow = Workflow.objects.get(pk=created.json()["id"])
    workflow.runs.filter(agent__slug="marcus").update(status=RunStatus.SUCCEEDED, finished_at=timezone.now())
    url = f"/api/v1/workflows/{workflow.pk}/cancel/"
    assert api.post(url).json()["status"] == "succeeded"  # what was asked for ran; the rest is cancelled
    second = api.post(url)
    assert second.status_code == 200
    assert [run["status"] for run in second.json()["runs"]] == ["succeeded", "cancelled"]


def test_it_answers_404_when_cancelling_someone_elses_workflow(api, agents, django_user_model):
    stranger = django_user_model.objects.create_user("sam", password="another-long-password")
    workflow = Workflow.objects.create(feature="theirs", created_by=stranger)
    run = run_create(agent=agents["marcus"], user=stranger, workflow=workflow)
    assert api.post(f"/api/v1/workflows/{workflow.pk}/cancel/").status_code == 404
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
