"""`Idempotency-Key` on POST /api/v1/runs/ and /api/v1/workflows/: a retry gets the first try's run."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents import services, tasks
from agents.models import AgentRun, IdempotencyKey, RunStatus, Workflow

RUN = {"agent": "marcus", "prompt": "A /health endpoint"}


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def api(user) -> APIClient:
    return client_for(user)


def post(client: APIClient, path: str, body: dict, key: str):
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_a_retry_with_the_same_key_and_body_answers_with_the_first_run_and_enqueues_it_once(
    api, agents, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = post(api, "/api/v1/runs/", RUN, "retry-1")
    AgentRun.objects.filter(pk=first.json()["id"]).update(status=RunStatus.RUNNING)
    with django_capture_on_commit_callbacks(execute=True):
        again = post(api, "/api/v1/runs/", RUN, "retry-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in first
    assert again["Idempotent-Replayed"] == "true"
    run = AgentRun.objects.get()
    assert (first.json()["id"], again.json()["id"]) == (run.pk, run.pk)
    assert again.json()["status"] == "running"  # the run as it is now
    assert enqueued == [run.pk]


def test_the_body_is_compared_as_json_not_as_text(api, agents):
    first = api.generic(
        "POST",
        "/api/v1/runs/",
        '{"agent": "marcus", "prompt": "x"}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    again = api.generic(
        "POST",
        "/api/v1/runs/",
        '{"prompt":"x","agent":"marcus"}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert (again.status_code, again.json()["id"]) == (201, first.json()["id"])


def test_the_same_key_with_another_body_is_a_409_and_creates_nothing(api, agents):
    post(api, "/api/v1/runs/", RUN, "retry-1")
    response = post(api, "/api/v1/runs/", {**RUN, "prompt": "Something else"}, "retry-1")
    assert response.status_code == 409
    assert response["Content-Type"] == "application/json"
    assert "was used in the last 24 hours with a different request body" in response.content.decode()
    assert AgentRun.objects.count() == 1


def test_another_users_same_key_is_their_own(api, agents, staff_user):
    mine = post(api, "/api/v1/runs/", RUN, "shared-key")
    theirs = post(client_for(staff_user), "/api/v1/runs/", {**RUN, "prompt": "Other"}, "shared-key")
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert "Idempotent-Replayed" not in theirs


def test_a_key_expires_after_24_hours(api, agents):
    first = post(api, "/api/v1/runs/", RUN, "old-key")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=24, seconds=1))
    again = post(api, "/api/v1/runs/", {**RUN, "prompt": "A new task"}, "old-key")
    assert again.status_code == 201
    assert again.json()["id"] != first.json()["id"]
    assert "Idempotent-Replayed" not in again
    assert IdempotencyKey.objects.get().run_id == again.json()["id"]


def test_the_sweeper_deletes_expired_keys(api, agents):
    post(api, "/api/v1/runs/", RUN, "old-key")
    post(api, "/api/v1/runs/", RUN, "new-key")
    IdempotencyKey.objects.filter(key="old-key").update(created_at=timezone.now() - timedelta(hours=25))
    assert tasks.runs_sweep.run()["idempotency_keys_expired"] == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new-key"]


def test_a_refused_request_does_not_use_up_its_key(api, agents):
    agents["marcus"].enabled = False
    agents["marcus"].save()
    assert post(api, "/api/v1/runs/", RUN, "k").status_code == 400
    agents["marcus"].enabled = True
    agents["marcus"].save()
    response = post(api, "/api/v1/runs/", RUN, "k")
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response


@pytest.mark.parametrize(
    ("key", "length"),
    [("", 0), ("x" * 256, 256), ("tab\there", 8), (" lead", 5)],
)
def test_a_malformed_key_is_a_400_naming_the_header(api, agents, key, length):
    response = post(api, "/api/v1/runs/", RUN, key)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "Idempotency-Key": [f"An Idempotency-Key is 1 to 255 printable ASCII characters (got {length} characters)."]
    }
    assert not AgentRun.objects.exists()


def test_a_key_of_255_printable_characters_is_taken(api, agents):
    key = "".join(chr(32 + i % 95) for i in range(1, 256))
    assert post(api, "/api/v1/runs/", RUN, key).status_code == 201


def test_a_workflow_retry_answers_with_the_first_workflow(api, agents, enqueued, django_capture_on_commit_callbacks):
    body = {"feature": "Invite a teammate", "agents": ["marcus", "jordan"]}
    with django_capture_on_commit_callbacks(execute=True):
        first = post(api, "/api/v1/workflows/", body, "wf-1")
    with django_capture_on_commit_callbacks(execute=True):
        again = post(api, "/api/v1/workflows/", body, "wf-1")
    assert (again.status_code, again["Idempotent-Replayed"]) == (201, "true")
    assert again.json()["id"] == first.json()["id"] == Workflow.objects.get().pk
    assert sorted(enqueued) == sorted(AgentRun.objects.values_list("pk", flat=True))
    assert len(enqueued) == 2


def test_a_key_used_for_a_run_is_free_for_a_workflow(api, agents):
    assert post(api, "/api/v1/runs/", RUN, "same").status_code == 201
    response = post(api, "/api/v1/workflows/", {"feature": "F", "agents": ["alex"]}, "same")
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response


@pytest.mark.django_db(transaction=True)
def test_two_retries_at_once_create_one_run_and_both_answer_with_it(agents, user, enqueued, monkeypatch):
    submit = services.run_submit

    def slow_submit(**kwargs):
        run = submit(**kwargs)
        time.sleep(0.5)  # the first request's transaction stays open while the second arrives
        return run

    monkeypatch.setattr(services, "run_submit", slow_submit)
    token = Token.objects.create(user=user).key
    start = threading.Barrier(2)
    answers = []

    def retry() -> None:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
            start.wait()
            answers.append(post(client, "/api/v1/runs/", RUN, "at-once"))
        finally:
            connection.close()  # this thread's connection, or the test database cannot be dropped

    threads = [threading.Thread(target=retry) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    run = AgentRun.objects.get()
    assert [answer.status_code for answer in answers] == [201, 201]
    assert [answer.json()["id"] for answer in answers] == [run.pk, run.pk]
    assert sorted(answer.get("Idempotent-Replayed", "") for answer in answers) == ["", "true"]
    assert enqueued == [run.pk]
