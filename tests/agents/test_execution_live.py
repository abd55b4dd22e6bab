"""A run's call, as the executor makes it: streamed, its output written as it arrives (throttled and
fenced by the claim token), and stopped when the run is cancelled or taken over.

In this process (agents.execution.run_execute), against the fake OpenAI-compatible server on
loopback; PostgreSQL and the Redis cache are real. The same with a real worker process is in
test_worker_cancel.py.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents import execution, services
from agents.models import AgentRun, RunStatus
from routing.models import CallOutcome, LedgerEntry
from tests.factories import run_create
from tests.routing.conftest_router import fresh_routing, make_provider

__all__ = ["fresh_routing"]

LONG_REPLY = " ".join(f"word{index}" for index in range(100))


@pytest.fixture
def streaming(db, fresh_routing, fake_openai):
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", request_timeout_s=30)
    return fake_openai


@pytest.fixture
def queued_run(agents, user):
    return run_create(agent=agents["marcus"], user=user, prompt="A health endpoint, please.")


def ledger(run: AgentRun) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(run_id=run.pk).order_by("id"))


def in_background(action) -> threading.Thread:
    def run() -> None:
        try:
            action()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_for(predicate, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout_s:g} s"
        time.sleep(0.02)


def test_it_calls_the_provider_streamed_and_records_the_time_to_first_token(streaming, queued_run):
    streaming.behave("ok", chunk_delay=0.02)

    assert execution.run_execute(run_id=queued_run.pk).outcome == "succeeded"

    [request] = streaming.requests
    assert request.json["stream"] is True
    [entry] = ledger(queued_run)
    assert entry.outcome == CallOutcome.SUCCESS
    assert entry.ttft_ms is not None and entry.ttft_ms < entry.latency_ms
    assert AgentRun.objects.get(pk=queued_run.pk).output == streaming.reply


@pytest.mark.django_db(transaction=True)
def test_it_writes_the_output_as_it_arrives_with_a_few_throttled_writes(streaming, queued_run):
    streaming.reply = LONG_REPLY  # 100 chunks over ~2 s
    streaming.behave("ok", chunk_delay=0.02)
    partial: list[str] = []
    watcher = in_background(
        lambda: wait_for(
            lambda: partial.append(AgentRun.objects.get(pk=queued_run.pk).output) or partial[-1], timeout_s=10
        )
    )

    with CaptureQueriesContext(connection) as queries:
        assert execution.run_execute(run_id=queued_run.pk).outcome == "succeeded"
    watcher.join()

    assert partial[-1] and LONG_REPLY.startswith(partial[-1]) and partial[-1] != LONG_REPLY  # seen mid-stream
    output_writes = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "agents_agentrun" SET "output"')
    ]
    # One write per LIVE_SYNC_S (0.5 s) of a ~2 s stream, not one per chunk (100): each fenced by the claim.
    assert 2 <= len(output_writes) <= 5
    assert all('"claim_token" =' in sql and '"status" =' in sql for sql in output_writes)
    assert AgentRun.objects.get(pk=queued_run.pk).output == LONG_REPLY


@pytest.mark.django_db(transaction=True)
def test_it_closes_the_stream_of_a_run_cancelled_mid_call_and_books_no_success(streaming, queued_run, user):
    streaming.reply = LONG_REPLY
    streaming.behave("ok", chunk_delay=0.05)  # ~5 s if it ran to the end

    def cancel_once_streaming() -> None:
        wait_for(lambda: AgentRun.objects.get(pk=queued_run.pk).output, timeout_s=10)
        services.run_cancel(run=AgentRun.objects.get(pk=queued_run.pk), user=user)

    canceller = in_background(cancel_once_streaming)
    started = time.monotonic()
    outcome = execution.run_execute(run_id=queued_run.pk).outcome
    canceller.join()

    assert outcome == "discarded"
    assert time.monotonic() - started < 2.5  # cut, not run to the end
    assert [entry.outcome for entry in ledger(queued_run)] == [CallOutcome.CANCELLED]
    run = AgentRun.objects.get(pk=queued_run.pk)
    assert run.status == RunStatus.CANCELLED
    assert (run.cost_usd, run.baseline_cost_usd, run.savings_usd) == (None, None, None)


@pytest.mark.django_db(transaction=True)
def test_it_stops_the_call_of_a_run_another_worker_took_over(streaming, queued_run):
    streaming.reply = LONG_REPLY
    streaming.behave("ok", chunk_delay=0.05)

    def take_over() -> None:
        wait_for(lambda: AgentRun.objects.get(pk=queued_run.pk).output, timeout_s=10)
        AgentRun.objects.filter(pk=queued_run.pk).update(claim_token="another-worker", output="")

    thief = in_background(take_over)
    outcome = execution.run_execute(run_id=queued_run.pk).outcome
    thief.join()

    assert outcome == "discarded"
    assert [entry.outcome for entry in ledger(queued_run)] == [CallOutcome.CANCELLED]
    run = AgentRun.objects.get(pk=queued_run.pk)
    assert (run.status, run.claim_token, run.output) == (RunStatus.RUNNING, "another-worker", "")  # left to its holder
