"""The API's lists: GET /api/v1/runs/ and /api/v1/workflows/ (cursor pages, ordering, filters)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents.models import AgentRun, RunStatus, Workflow
from tests.factories import run_create

pytestmark = pytest.mark.usefixtures("enqueued")

KNOWN_RUN_PARAMS = "agent, cursor, format, ordering, page_size, since, status, user, workflow"


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


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


def walk(client: APIClient, url: str) -> list[list[int]]:
    pages = []
    while url:
        body = client.get(url).json()
        pages.append([item["id"] for item in body["results"]])
        url = body["next"]
    return pages


def test_a_run_added_between_pages_neither_repeats_nor_hides_one(api, agents, user):
    runs = [run_create(agent=agents["marcus"], user=user) for _ in range(5)]
    first = api.get("/api/v1/runs/?page_size=2").json()
    run_create(agent=agents["emily"], user=user)  # newest first: it lands before page 1
    rest = walk(api, first["next"])
    seen = [item["id"] for item in first["results"]] + [pk for page in rest for pk in page]
    assert seen == [run.pk for run in reversed(runs)]


@pytest.mark.parametrize(
    ("ordering", "order"),
    [("-created_at", [1, 2, 0]), ("created_at", [0, 2, 1]), ("-id", [2, 1, 0]), ("id", [0, 1, 2])],
)
def test_it_orders_runs_as_asked_page_after_page(api, agents, user, ordering, order):
    runs = [run_create(agent=agents["marcus"], user=user) for _ in range(3)]
    now = timezone.now()
    for run, minutes_ago in zip(runs, [3, 1, 2], strict=True):  # so time and id orders differ
        AgentRun.objects.filter(pk=run.pk).update(created_at=now - timedelta(minutes=minutes_ago))
    pages = walk(api, f"/api/v1/runs/?ordering={ordering}&page_size=1")
    assert pages == [[runs[i].pk] for i in order]


def test_it_refuses_an_unknown_ordering(api, agents):
    response = api.get("/api/v1/runs/?ordering=prompt")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"ordering": ['"prompt" is not a valid choice.']}


def test_it_refuses_unknown_query_parameters_naming_each(api, agents):
    response = api.get("/api/v1/runs/?agnet=marcus&page=2&status=queued")
    assert response.status_code == 400
    hint = [f"Unknown query parameter; known: {KNOWN_RUN_PARAMS}."]
    assert response.json()["error"]["fields"] == {"agnet": hint, "page": hint}


@pytest.mark.parametrize("size", ["0", "501", "many"])
def test_it_refuses_a_page_size_out_of_bounds(api, agents, size):
    response = api.get(f"/api/v1/runs/?page_size={size}")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["page_size"]


@pytest.mark.parametrize("cursor", ["garbage", "cD15ZXN0ZXJkYXk%3D"])  # the second: "p=yesterday", no time
def test_it_answers_400_for_a_cursor_it_did_not_give_out(api, agents, user, cursor):
    run_create(agent=agents["marcus"], user=user)
    response = api.get(f"/api/v1/runs/?cursor={cursor}")
    assert response.status_code == 400
    refused = response.json()["error"]["fields"]
    assert refused == {"cursor": ["Not a cursor this list gave out; start again without it."]}


def test_a_cursor_of_one_ordering_is_refused_by_another(api, agents, user):
    for _ in range(2):
        run_create(agent=agents["marcus"], user=user)
    cursor = api.get("/api/v1/runs/?page_size=1").json()["next"].split("cursor=")[1].split("&")[0]
    response = api.get(f"/api/v1/runs/?ordering=id&cursor={cursor}")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["cursor"]


def test_it_filters_runs_by_workflow(api, agents, user):
    workflow = Workflow.objects.create(feature="Search", created_by=user)
    inside = run_create(agent=agents["marcus"], user=user, workflow=workflow)
    run_create(agent=agents["marcus"], user=user)
    assert ids(api.get(f"/api/v1/runs/?workflow={workflow.pk}")) == [inside.pk]
    assert api.get("/api/v1/runs/?workflow=abc").status_code == 400


def test_a_plain_user_may_filter_by_their_own_name(api, agents, user, stranger):
    mine = run_create(agent=agents["marcus"], user=user)
    run_create(agent=agents["marcus"], user=stranger)
    assert ids(api.get("/api/v1/runs/?user=dana")) == [mine.pk]


# -- workflows ------------------------------------------------------------------------------


def test_it_lists_your_workflows_newest_first_without_their_runs(api, agents, user, stranger):
    older = Workflow.objects.create(feature="Search", created_by=user)
    newer = Workflow.objects.create(feature="Billing", created_by=user, status=RunStatus.SUCCEEDED)
    Workflow.objects.create(feature="Theirs", created_by=stranger)
    body = api.get("/api/v1/workflows/").json()
    assert [item["id"] for item in body["results"]] == [newer.pk, older.pk]
    first = body["results"][0]
    assert (first["feature"], first["status"], first["user"]) == ("Billing", "succeeded", "dana")
    assert first["url"] == f"http://testserver/api/v1/workflows/{newer.pk}/"
    assert "runs" not in first


def test_staff_see_every_workflow_and_filter_them(agents, user, stranger, staff_user):
    Workflow.objects.create(feature="Mine", created_by=user)
    theirs = Workflow.objects.create(feature="Theirs", created_by=stranger, status=RunStatus.FAILED)
    staff = client_for(staff_user)
    assert len(ids(staff.get("/api/v1/workflows/"))) == 2
    assert ids(staff.get("/api/v1/workflows/?user=sam")) == [theirs.pk]
    assert ids(staff.get("/api/v1/workflows/?status=failed")) == [theirs.pk]


def test_the_workflow_list_pages_by_cursor_and_refuses_what_it_does_not_know(api, user):
    made = [Workflow.objects.create(feature=f"F{i}", created_by=user) for i in range(3)]
    assert walk(api, "/api/v1/workflows/?page_size=2&ordering=id") == [[made[0].pk, made[1].pk], [made[2].pk]]
    response = api.get("/api/v1/workflows/?agent=marcus")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["agent"]
    assert api.get("/api/v1/workflows/?user=sam").json()["results"] == []  # not theirs to see
