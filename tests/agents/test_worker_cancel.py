"""Cancel stops the model call behind a run, on a real Celery worker process; runs stream.

PostgreSQL (the test database, shared with the worker), Redis (broker, slots) and the worker are
real; the upstream is the fake OpenAI-compatible server on loopback, which counts what reaches it.
"""

from __future__ import annotations

import time

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents.models import AgentRun, RunStatus
from routing import health
from routing.models import CallOutcome, LedgerEntry
from tests.agents.worker import wait_for, worker_process
from tests.routing.conftest_router import fresh_routing, make_provider, set_policy

__all__ = ["fresh_routing", "worker_process"]

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

LONG_REPLY = " ".join(f"word{index}" for index in range(200))


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def submit(api: APIClient) -> int:
    response = api.post("/api/v1/runs/", {"agent": "marcus", "prompt": "A health endpoint."}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def cancel(api: APIClient, run_id: int) -> None:
    assert api.post(f"/api/v1/runs/{run_id}/cancel/").json()["status"] == "cancelled"


def run_status(run_id: int) -> str:
    return AgentRun.objects.values_list("status", flat=True).get(pk=run_id)


def test_a_run_cancelled_while_waiting_for_a_slot_never_calls_the_provider(
    api, agents, fresh_routing, fake_openai, worker_process
):
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", max_in_flight=1, request_timeout_s=30)
    set_policy(slot_wait_seconds=30)
    held = health.try_take_slot("local", limit=1)  # another call holds the only slot
    try:
        worker = worker_process()
        run_id = submit(api)
        wait_for(lambda: run_status(run_id) == RunStatus.RUNNING, timeout_s=30, what="the claim", worker=worker)
        time.sleep(1.0)  # waiting for the slot now
        cancel(api, run_id)
        # The task ends while the slot is still held: it stopped waiting.
        wait_for(lambda: "'discarded'" in worker.log(), timeout_s=2, what="the task to end", worker=worker)
    finally:
        health.release_slot(held)
    time.sleep(1.5)  # had it still been waiting, it would have taken the freed slot and called by now

    assert fake_openai.requests == []
    assert not LedgerEntry.objects.filter(run_id=run_id).exists()
    assert run_status(run_id) == RunStatus.CANCELLED


def test_a_run_cancelled_mid_stream_closes_the_connection_and_books_no_success(
    api, agents, fresh_routing, fake_openai, worker_process
):
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", request_timeout_s=60)
    fake_openai.reply = LONG_REPLY
    fake_openai.behave("ok", chunk_delay=0.1)  # 20 s if it ran to the end
    worker = worker_process()
    run_id = submit(api)
    # The run page has the answer so far while the call goes on.
    partial = wait_for(
        lambda: AgentRun.objects.values_list("output", flat=True).get(pk=run_id),
        timeout_s=30,
        what="the partial output",
        worker=worker,
    )
    assert LONG_REPLY.startswith(partial) and partial != LONG_REPLY

    cancel(api, run_id)
    cancelled_at = time.monotonic()
    wait_for(lambda: fake_openai.in_flight == 0, timeout_s=1.5, what="the upstream to see the client go", worker=worker)
    closed_after = time.monotonic() - cancelled_at

    entry = wait_for(
        lambda: LedgerEntry.objects.filter(run_id=run_id).first(), timeout_s=5, what="the ledger row", worker=worker
    )
    assert closed_after < 1.5
    assert len(fake_openai.requests) == 1
    assert entry.outcome == CallOutcome.CANCELLED
    assert entry.error.startswith("cancelled by the caller mid-stream")
    run = AgentRun.objects.get(pk=run_id)
    assert (run.status, run.cost_usd, run.baseline_cost_usd) == (RunStatus.CANCELLED, None, None)


def test_a_run_streams_its_output_and_records_the_time_to_first_token(
    api, agents, fresh_routing, fake_openai, worker_process
):
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", request_timeout_s=30)
    fake_openai.reply = " ".join(f"word{index}" for index in range(30))
    fake_openai.behave("ok", chunk_delay=0.1)  # ~3 s
    worker = worker_process()
    run_id = submit(api)

    partial = wait_for(
        lambda: AgentRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).values_list("output", flat=True).first(),
        timeout_s=30,
        what="output while running",
        worker=worker,
    )
    run = wait_for(
        lambda: AgentRun.objects.filter(pk=run_id, status=RunStatus.SUCCEEDED).first(),
        timeout_s=30,
        what="the run to succeed",
        worker=worker,
    )

    assert fake_openai.reply.startswith(partial) and partial != fake_openai.reply
    assert run.output == fake_openai.reply
    [entry] = LedgerEntry.objects.filter(run_id=run_id)
    assert entry.outcome == CallOutcome.SUCCESS
    assert entry.ttft_ms is not None and entry.ttft_ms < entry.latency_ms
