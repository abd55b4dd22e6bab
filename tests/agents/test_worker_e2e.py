"""End to end: submit through the API, a real Celery worker process runs the run through the router.

PostgreSQL (the test database, shared with the worker), Redis and the worker are real. The upstream
is the real local model (llama.cpp + Gemma 3 270M) for the happy path, and the fake OpenAI server
where a test needs to hold a call open long enough to kill the worker in the middle of it.
"""

from __future__ import annotations

import time

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents.models import AgentRun, RunStatus
from routing.models import CallOutcome, LedgerEntry
from tests.agents.worker import wait_for, worker_process
from tests.routing.conftest_router import fresh_routing, make_provider

__all__ = ["fresh_routing", "worker_process"]

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def submit(
    api: APIClient, agent: str = "marcus", prompt: str = "Write a Python function that adds two numbers."
) -> int:
    response = api.post("/api/v1/runs/", {"agent": agent, "prompt": prompt}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def finished(run_id: int) -> AgentRun | None:
    run = AgentRun.objects.get(pk=run_id)
    return run if run.is_finished else None


def outcomes(run_id: int) -> list[str]:
    return list(LedgerEntry.objects.filter(run_id=run_id).order_by("id").values_list("outcome", flat=True))


def success_entries(run_id: int) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(run_id=run_id, outcome=CallOutcome.SUCCESS))


@pytest.mark.local_model
def test_it_runs_a_submitted_run_on_a_worker_against_the_local_model(
    api, agents, fresh_routing, local_model_server, worker_process
):
    make_provider(
        "local-gemma",
        base_url=local_model_server.base_url,
        model=local_model_server.model,
        request_timeout_s=120,
    )
    agents["marcus"].max_tokens = 48  # a short answer keeps the test quick on two cores
    agents["marcus"].temperature = 0  # greedy: the same answer every time
    agents["marcus"].save()
    worker = worker_process()
    run_id = submit(api)
    run = wait_for(lambda: finished(run_id), timeout_s=180, what="the run to finish", worker=worker)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output.strip()
    assert (run.provider_name, run.model_name, run.deliveries) == ("local-gemma", local_model_server.model, 1)
    assert run.prompt_tokens > 0 and run.completion_tokens > 0
    # The tiny model answers in prose: the check records that the answer is not Python.
    assert (run.quality_ok, run.quality_detail) == (
        False,
        "the output (no code block) is not valid Python: invalid syntax (line 1)",
    )
    [entry] = success_entries(run_id)
    assert (entry.is_local, entry.agent, entry.prompt_tokens) == (True, "marcus", run.prompt_tokens)
    body = api.get(f"/api/v1/runs/{run_id}/").json()
    assert body["status"] == "succeeded"
    assert [attempt["outcome"] for attempt in body["attempts"]] == ["success"]


def test_it_finishes_a_run_exactly_once_when_its_worker_is_killed_mid_call(
    api, agents, fresh_routing, fake_openai, worker_process
):
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", request_timeout_s=60)
    fake_openai.reply = "```python\nprint('done')\n```"
    fake_openai.behave("ok", delay=30)  # the first call hangs until the worker is dead
    # A short lease and visibility timeout so the redelivery comes in seconds, not minutes.
    env = {"CELERY_VISIBILITY_TIMEOUT": "3", "SWITCHYARD_RUN_LEASE_SECONDS": "2"}
    first = worker_process(**env)
    run_id = submit(api)
    wait_for(lambda: fake_openai.requests, timeout_s=30, what="the worker to call the upstream", worker=first)
    assert AgentRun.objects.get(pk=run_id).status == RunStatus.RUNNING

    first.kill()
    fake_openai.behave("ok")
    # Killed before the charge: the call is in the ledger as started, not charged.
    assert outcomes(run_id) == [CallOutcome.STARTED]
    # A starting worker puts back messages left unacknowledged longer than the visibility timeout
    # (a running one sweeps only every ~100 s): start the next one once that has passed.
    time.sleep(3.5)

    second = worker_process(**env)
    run = wait_for(lambda: finished(run_id), timeout_s=60, what="the redelivered run to finish", worker=second)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output == "```python\nprint('done')\n```"
    assert run.deliveries == 2
    assert len(fake_openai.requests) == 2  # called again, because the first call never finished
    # Charged once; the killed call is in the ledger too, as an unknown outcome: every upstream
    # request has its row.
    assert outcomes(run_id) == [CallOutcome.UNKNOWN, CallOutcome.SUCCESS]


def test_it_finishes_a_run_exactly_once_when_the_pool_process_running_it_is_killed(
    api, agents, fresh_routing, fake_openai, worker_process
):
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", request_timeout_s=60)
    fake_openai.behave("ok", delay=30)
    # The main process requeues the task at once (reject_on_worker_lost) while the dead call's
    # lease is still fresh: the new delivery must wait for the lease to lapse, then take over.
    worker = worker_process(SWITCHYARD_RUN_LEASE_SECONDS="2")
    run_id = submit(api)
    wait_for(lambda: fake_openai.requests, timeout_s=30, what="the worker to call the upstream", worker=worker)
    fake_openai.behave("ok")
    worker.kill_pool_process()
    run = wait_for(lambda: finished(run_id), timeout_s=60, what="the requeued run to finish", worker=worker)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.deliveries == 2
    assert outcomes(run_id) == [CallOutcome.UNKNOWN, CallOutcome.SUCCESS]
    assert len(fake_openai.requests) == 2


def test_it_never_runs_a_run_cancelled_while_queued(api, agents, fresh_routing, fake_openai, worker_process):
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini")
    run_id = submit(api)  # no worker yet: it waits on the broker
    assert api.post(f"/api/v1/runs/{run_id}/cancel/").json()["status"] == "cancelled"
    marker = submit(api, prompt="after the cancelled one")
    worker = worker_process()
    wait_for(lambda: finished(marker), timeout_s=30, what="the next run to finish", worker=worker)
    assert AgentRun.objects.get(pk=run_id).status == RunStatus.CANCELLED
    assert len(fake_openai.requests) == 1  # only the second run reached the upstream
    assert not LedgerEntry.objects.filter(run_id=run_id).exists()


def test_it_cuts_the_call_of_a_run_cancelled_while_running_and_books_no_success(
    api, agents, fresh_routing, fake_openai, worker_process
):
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", request_timeout_s=30)
    fake_openai.behave("ok", delay=2)
    worker = worker_process()
    run_id = submit(api)
    wait_for(lambda: fake_openai.requests, timeout_s=30, what="the upstream call", worker=worker)
    assert api.post(f"/api/v1/runs/{run_id}/cancel/").json()["status"] == "cancelled"
    # The stream is closed at its first chunk; the call is recorded as cancelled, never as a success.
    entry = wait_for(
        lambda: LedgerEntry.objects.filter(run_id=run_id).exclude(outcome=CallOutcome.STARTED).first(),
        timeout_s=30,
        what="the call's row, completed",
        worker=worker,
    )
    assert entry.outcome == CallOutcome.CANCELLED
    assert not success_entries(run_id)
    run = AgentRun.objects.get(pk=run_id)
    assert (run.status, run.output) == (RunStatus.CANCELLED, "")
