"""A run is charged once: a takeover is fenced by the claim token, and every call is in the ledger.

In-process executions (agents.execution.run_execute) against the fake OpenAI-compatible server,
on the real router, ledger and PostgreSQL; the worker processes themselves are in
test_worker_exactly_once.py.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from agents import execution
from agents.models import AgentRun, RunStatus
from routing.models import CallOutcome, LedgerEntry
from tests.factories import attempt_create, run_create
from tests.routing.conftest_router import fresh_routing, make_provider

__all__ = ["fresh_routing"]


@pytest.fixture
def local(db, fresh_routing, fake_openai):
    fake_openai.reply = "```python\nprint('hi')\n```"
    return make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini")


@pytest.fixture
def queued_run(agents, user):
    return run_create(agent=agents["marcus"], user=user, prompt="A health endpoint, please.")


def outcomes(run: AgentRun) -> list[str]:
    return list(LedgerEntry.objects.filter(run_id=run.pk).order_by("id").values_list("outcome", flat=True))


def execute_in_background(run: AgentRun, outcome: list[execution.Execution]) -> threading.Thread:
    def execute() -> None:
        try:
            outcome.append(execution.run_execute(run_id=run.pk))
        finally:
            connection.close()  # this thread's connection, or the test database cannot be dropped

    worker = threading.Thread(target=execute)
    worker.start()
    return worker


def take_over(run: AgentRun) -> None:
    """What another worker's claim writes once the lease lapsed (agents.execution._claim)."""
    AgentRun.objects.filter(pk=run.pk).update(claim_token="new-owner", heartbeat_at=timezone.now(), deliveries=2)


def wait_for_requests(server, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(server.requests) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(server.requests) >= count


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_lost_its_run_during_the_call_stores_no_result_and_charges_nothing(
    local, fake_openai, queued_run, settings
):
    settings.SWITCHYARD_RUN_LEASE_SECONDS = 0.6
    fake_openai.behave("ok", delay=1.5)
    outcome: list[execution.Execution] = []
    worker = execute_in_background(queued_run, outcome)
    try:
        wait_for_requests(fake_openai, 1)
        take_over(queued_run)
    finally:
        worker.join(timeout=10)
    assert outcome[0].outcome == "discarded"
    run = AgentRun.objects.get(pk=queued_run.pk)
    assert (run.status, run.claim_token, run.output) == (RunStatus.RUNNING, "new-owner", "")
    assert outcomes(run) == [CallOutcome.STARTED]  # in the ledger, not charged: the new owner marks it unknown


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_lost_its_run_makes_no_further_attempt(fresh_routing, fake_server, queued_run, settings):
    settings.SWITCHYARD_RUN_LEASE_SECONDS = 0.6
    first, second = fake_server("openai_compatible"), fake_server("openai_compatible")
    make_provider("first", base_url=first.base_url, model="gpt-4o-mini", priority=1)
    make_provider("second", base_url=second.base_url, model="gpt-4o-mini", priority=2)
    first.behave("unavailable", delay=1.0)  # fails after the run was taken over
    outcome: list[execution.Execution] = []
    worker = execute_in_background(queued_run, outcome)
    try:
        wait_for_requests(first, 1)
        take_over(queued_run)
    finally:
        worker.join(timeout=10)
    assert outcome[0].outcome == "discarded"
    assert second.requests == []
    assert outcomes(queued_run) == [CallOutcome.TRANSIENT]  # the failure it did get is recorded


def test_a_takeover_marks_the_lost_workers_started_attempt_unknown_and_runs_once_more(
    local, fake_openai, queued_run, settings
):
    AgentRun.objects.filter(pk=queued_run.pk).update(
        status=RunStatus.RUNNING, claim_token="dead", heartbeat_at=timezone.now() - timedelta(minutes=10), deliveries=1
    )
    lost = attempt_create(
        run=queued_run,
        provider=local,
        outcome=CallOutcome.STARTED,
        idempotency_key=f"run:{queued_run.pk}:claim:dead:attempt:1",
    )

    assert execution.run_execute(run_id=queued_run.pk).outcome == "succeeded"

    assert outcomes(queued_run) == [CallOutcome.UNKNOWN, CallOutcome.SUCCESS]
    run = AgentRun.objects.get(pk=queued_run.pk)
    charged = LedgerEntry.objects.get(run_id=run.pk, outcome=CallOutcome.SUCCESS)
    assert charged.idempotency_key == f"run:{run.pk}:claim:{run.claim_token}:attempt:1"
    assert charged.pk != lost.pk


def test_the_sweeper_marks_a_started_attempt_older_than_the_time_limit_unknown(local, queued_run, settings):
    settings.SWITCHYARD_RUN_TIME_LIMIT = 60
    old = timezone.now() - timedelta(seconds=60 + 2 * execution.TIME_LIMIT_MARGIN_S + 5)
    stale = attempt_create(run=queued_run, provider=local, outcome=CallOutcome.STARTED, created_at=old)
    recent = attempt_create(run=queued_run, provider=local, outcome=CallOutcome.STARTED)

    execution.runs_sweep()

    stale.refresh_from_db()
    recent.refresh_from_db()
    assert (stale.outcome, recent.outcome) == (CallOutcome.UNKNOWN, CallOutcome.STARTED)


def test_a_truncated_answer_is_a_success_shown_as_stopped_at_the_token_limit(
    local, fake_openai, queued_run, user, client
):
    fake_openai.finish_reason = "length"

    assert execution.run_execute(run_id=queued_run.pk).outcome == "succeeded"

    run = AgentRun.objects.get(pk=queued_run.pk)
    assert (run.status, run.finish_reason, run.truncated) == (RunStatus.SUCCEEDED, "length", True)
    api = APIClient()
    api.force_authenticate(user)
    body = api.get(f"/api/v1/runs/{run.pk}/").json()
    assert (body["finish_reason"], body["truncated"], body["refused"]) == ("length", True, False)
    assert body["attempts"][0]["finish_reason"] == "length"
    client.force_login(user)
    assert "stopped at the token limit" in client.get(f"/runs/{run.pk}/").content.decode()
