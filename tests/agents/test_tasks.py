"""Executing a run on a worker (agents.execution.run_execute and the Celery tasks), and the sweeper.

The provider is the fake OpenAI-compatible server on loopback (tests/fakes); the router, the
ledger and PostgreSQL are real. The worker process itself is tested in test_worker_e2e.py.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from celery.exceptions import Retry, SoftTimeLimitExceeded
from django.db import connection
from django.utils import timezone

from agents import execution, services, tasks
from agents.models import AgentRun, QualityCheck, RunStatus
from routing import table as routing_table
from routing.models import CallOutcome, LedgerEntry
from tests.factories import run_create
from tests.routing.conftest_router import fresh_routing, make_provider, set_baseline

__all__ = ["fresh_routing"]

PYTHON_ANSWER = "Here it is:\n```python\n@app.get('/health')\ndef health():\n    return {'ok': True}\n```"


@pytest.fixture
def upstream(db, fresh_routing, fake_openai):
    """One local OpenAI-compatible provider on the fake server, and a priced cloud baseline."""
    fake_openai.reply = PYTHON_ANSWER
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", capabilities=[])
    cloud = make_provider(
        "cloud", base_url="http://127.0.0.1:9", kind="openai", is_local=False, priority=2, price=("3", "15")
    )
    cloud.enabled = False  # only here to price the baseline
    cloud.save()
    set_baseline(cloud)
    routing_table.invalidate_routing_cache()
    return fake_openai


@pytest.fixture
def queued_run(agents, user):
    return run_create(agent=agents["marcus"], user=user, prompt="A health endpoint, please.")


def ledger(run: AgentRun) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(run_id=run.pk).order_by("id"))


def test_it_runs_the_agent_through_the_router_and_records_the_result(upstream, queued_run, user):
    queued_run.agent.system_prompt = "You write FastAPI endpoints."
    queued_run.agent.save()
    assert execution.run_execute(run_id=queued_run.pk).outcome == "succeeded"
    run = AgentRun.objects.get(pk=queued_run.pk)
    assert run.status == RunStatus.SUCCEEDED
    assert run.output == PYTHON_ANSWER
    assert (run.provider_name, run.model_name, run.deliveries) == ("local", "gpt-4o-mini", 1)
    # The fake reports a token per word, plus 4 per message: (4 + 4) + (4 + 4) in, 11 out.
    assert (run.prompt_tokens, run.completion_tokens) == (16, 11)
    assert run.cost_usd == Decimal(0)
    assert run.baseline_cost_usd == Decimal("0.000213")  # 16 x $3 + 11 x $15 per million tokens
    assert run.savings_usd == Decimal("0.000213")
    assert (run.quality_ok, run.quality_detail) == (True, "the code block parses as Python (3 lines)")
    assert run.started_at <= run.finished_at
    [entry] = ledger(run)
    assert (entry.outcome, entry.agent, entry.user, entry.latency_ms) == (
        CallOutcome.SUCCESS,
        "marcus",
        user,
        run.latency_ms,
    )
    sent = upstream.requests[-1].json
    assert sent["messages"] == [
        {"role": "system", "content": "You write FastAPI endpoints."},
        {"role": "user", "content": "A health endpoint, please."},
    ]
    assert (sent["max_tokens"], sent["temperature"]) == (1500, 0.2)  # marcus in config/llm_routing.yaml


def test_it_passes_the_runs_own_limits_and_capability(upstream, agents, user):
    run = run_create(agent=agents["alex"], user=user, prompt="tests", max_tokens=64)
    execution.run_execute(run_id=run.pk)
    assert upstream.requests[-1].json["max_tokens"] == 64


def test_it_records_a_failed_quality_check(upstream, queued_run):
    upstream.reply = "I would rather not write code today."
    execution.run_execute(run_id=queued_run.pk)
    run = AgentRun.objects.get(pk=queued_run.pk)
    assert run.status == RunStatus.SUCCEEDED
    assert run.quality_ok is False
    assert run.agent.quality_check == QualityCheck.PYTHON_CODE


def test_it_fails_the_run_with_the_routers_reason_when_no_provider_can_take_it(upstream, queued_run):
    upstream.behave("bad_request")
    assert execution.run_execute(run_id=queued_run.pk).outcome == "failed"
    run = AgentRun.objects.get(pk=queued_run.pk)
    assert run.status == RunStatus.FAILED
    assert run.error.startswith("no provider could take the request: ")
    assert "local: 400 context_length_exceeded" in run.error
    assert "maximum context length" in run.error
    assert run.output == ""
    assert [entry.outcome for entry in ledger(run)] == [CallOutcome.PERMANENT]


def test_it_refuses_a_prompt_over_the_runs_token_limit_without_calling_anyone(upstream, agents, user):
    run = run_create(agent=agents["marcus"], user=user, prompt="word " * 500, max_prompt_tokens=10)
    execution.run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "over this request's limit of 10" in run.error
    assert upstream.requests == []


def test_it_executes_a_run_only_once_when_the_message_comes_twice(upstream, queued_run):
    assert execution.run_execute(run_id=queued_run.pk).outcome == "succeeded"
    assert execution.run_execute(run_id=queued_run.pk).outcome == "skipped"
    assert len(upstream.requests) == 1
    assert AgentRun.objects.get(pk=queued_run.pk).deliveries == 1


def test_it_leaves_a_run_with_a_live_lease_to_its_worker_and_asks_to_check_back(upstream, queued_run, settings):
    settings.SWITCHYARD_RUN_LEASE_SECONDS = 30
    AgentRun.objects.filter(pk=queued_run.pk).update(
        status=RunStatus.RUNNING, claim_token="other", heartbeat_at=timezone.now(), deliveries=1
    )
    done = execution.run_execute(run_id=queued_run.pk)
    assert done.outcome == "busy"
    assert 29 <= done.retry_in <= 31
    assert upstream.requests == []
    run = AgentRun.objects.get(pk=queued_run.pk)
    assert (run.status, run.claim_token, run.deliveries) == (RunStatus.RUNNING, "other", 1)


def test_it_takes_over_a_run_whose_workers_heartbeat_stopped(upstream, queued_run, settings):
    settings.SWITCHYARD_RUN_LEASE_SECONDS = 30
    AgentRun.objects.filter(pk=queued_run.pk).update(
        status=RunStatus.RUNNING, claim_token="dead", heartbeat_at=timezone.now() - timedelta(seconds=31), deliveries=1
    )
    assert execution.run_execute(run_id=queued_run.pk).outcome == "succeeded"
    run = AgentRun.objects.get(pk=queued_run.pk)
    assert (run.status, run.deliveries) == (RunStatus.SUCCEEDED, 2)
    assert len(ledger(run)) == 1


def test_it_gives_up_on_a_run_whose_worker_was_lost_too_often(upstream, queued_run):
    stale = timezone.now() - timedelta(minutes=10)
    AgentRun.objects.filter(pk=queued_run.pk).update(
        status=RunStatus.RUNNING, heartbeat_at=stale, deliveries=execution.MAX_DELIVERIES
    )
    assert execution.run_execute(run_id=queued_run.pk).outcome == "failed"
    run = AgentRun.objects.get(pk=queued_run.pk)
    assert run.status == RunStatus.FAILED
    assert run.error == "The worker running it was lost 3 times; giving up."
    assert upstream.requests == []


def test_it_discards_the_late_result_of_a_run_cancelled_while_it_ran_and_books_no_savings(
    upstream, queued_run, user, monkeypatch
):
    real_route = execution.route

    def cancel_then_route(request, **kwargs):
        services.run_cancel(run=AgentRun.objects.get(pk=request.run_id), user=user)  # the user clicks cancel
        return real_route(request, **kwargs)

    monkeypatch.setattr(execution, "route", cancel_then_route)
    assert execution.run_execute(run_id=queued_run.pk).outcome == "discarded"
    run = AgentRun.objects.get(pk=queued_run.pk)
    assert (run.status, run.output, run.provider_name) == (RunStatus.CANCELLED, "", "")
    # The call did happen and is charged, but its answer was not wanted: cancelled, no baseline, no savings.
    (entry,) = ledger(run)
    assert entry.outcome == CallOutcome.CANCELLED
    assert entry.completion_tokens > 0 and entry.cost_usd is not None
    assert (entry.baseline_cost_usd, entry.baseline_price_id) == (None, None)


def test_it_fails_a_run_that_hits_the_soft_time_limit(upstream, queued_run, monkeypatch, settings):
    settings.SWITCHYARD_RUN_TIME_LIMIT = 42

    def too_slow(request, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(execution, "route", too_slow)
    execution.run_execute(run_id=queued_run.pk)
    run = AgentRun.objects.get(pk=queued_run.pk)
    assert (run.status, run.error) == (RunStatus.FAILED, "Stopped: it ran longer than the time limit of 42 s.")


def test_it_fails_the_run_with_a_plain_reason_when_something_unexpected_breaks(upstream, queued_run, monkeypatch):
    def broken(request, **kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(execution, "route", broken)
    assert execution.run_execute(run_id=queued_run.pk).outcome == "failed"
    run = AgentRun.objects.get(pk=queued_run.pk)
    assert (run.status, run.error) == (RunStatus.FAILED, "Internal error on the worker: KeyError.")


def test_it_closes_the_workflow_when_its_last_run_finishes_on_the_worker(upstream, agents, user, enqueued):
    workflow = services.workflow_submit(feature="Health checks", user=user, agents=["marcus", "alex"])
    first, second = workflow.runs.all()
    execution.run_execute(run_id=first.pk)
    workflow.refresh_from_db()
    assert (workflow.status, workflow.finished_at) == (RunStatus.RUNNING, None)
    execution.run_execute(run_id=second.pk)
    workflow.refresh_from_db()
    assert workflow.status == RunStatus.SUCCEEDED
    baselines = sorted(workflow.runs.values_list("baseline_cost_usd", flat=True))
    assert len(baselines) == 2 and all(baselines)
    assert (workflow.cost_usd, workflow.baseline_cost_usd) == (Decimal(0), baselines[0] + baselines[1])
    assert workflow.wall_time_s > 0


# -- the Celery tasks -----------------------------------------------------------------------


def test_the_task_asks_celery_to_retry_while_another_worker_holds_the_run(upstream, queued_run, monkeypatch):
    AgentRun.objects.filter(pk=queued_run.pk).update(status=RunStatus.RUNNING, heartbeat_at=timezone.now())
    asked: list[float] = []

    def retry(*, countdown: float) -> Retry:
        asked.append(countdown)
        return Retry("held elsewhere")

    monkeypatch.setattr(tasks.run_execute, "retry", retry)
    with pytest.raises(Retry):
        tasks.run_execute.run(queued_run.pk)
    assert asked and asked[0] >= 1


def test_the_task_runs_the_service_and_declares_its_limits(upstream, queued_run, settings):
    assert tasks.run_execute.run(queued_run.pk) == "succeeded"
    assert tasks.run_execute.soft_time_limit == settings.SWITCHYARD_RUN_TIME_LIMIT
    assert tasks.run_execute.time_limit > tasks.run_execute.soft_time_limit
    assert tasks.run_execute.acks_late and tasks.run_execute.reject_on_worker_lost


def test_the_sweeper_is_scheduled_with_an_expiry(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["agents-runs-sweep"]
    assert entry["task"] == tasks.runs_sweep.name
    assert 0 < entry["options"]["expires"] <= entry["schedule"]


# -- the sweeper ----------------------------------------------------------------------------


def make_run(agents, user, *, status=RunStatus.QUEUED, heartbeat_ago=0.0, started_ago=None):
    now = timezone.now()
    return run_create(
        agent=agents["marcus"],
        user=user,
        status=status,
        heartbeat_at=now - timedelta(seconds=heartbeat_ago),
        started_at=None if started_ago is None else now - timedelta(seconds=started_ago),
    )


def test_the_sweeper_re_enqueues_runs_left_queued_too_long_once(agents, user, enqueued, settings):
    settings.SWITCHYARD_REQUEUE_AFTER_SECONDS = 300
    lost = make_run(agents, user, heartbeat_ago=301)
    make_run(agents, user, heartbeat_ago=10)  # just waiting its turn
    report = execution.runs_sweep()
    assert (report.requeued, enqueued) == (1, [lost.pk])
    assert execution.runs_sweep().requeued == 0  # the clock restarted: not sent again at once


def test_the_sweeper_fails_runs_left_running_past_the_time_limit(agents, user, enqueued, settings):
    settings.SWITCHYARD_RUN_TIME_LIMIT = 60
    stuck = make_run(agents, user, status=RunStatus.RUNNING, heartbeat_ago=500, started_ago=500)
    young = make_run(agents, user, status=RunStatus.RUNNING, heartbeat_ago=1, started_ago=100)
    assert execution.runs_sweep().failed == 1
    stuck.refresh_from_db()
    assert stuck.status == RunStatus.FAILED
    assert stuck.error == "Still running after the time limit of 60 s: the worker was lost."
    young.refresh_from_db()
    assert young.status == RunStatus.RUNNING


def test_the_sweeper_hands_a_run_whose_worker_died_to_another_worker(agents, user, enqueued, settings):
    settings.SWITCHYARD_RUN_LEASE_SECONDS = 30
    orphan = make_run(agents, user, status=RunStatus.RUNNING, heartbeat_ago=45, started_ago=45)
    make_run(agents, user, status=RunStatus.RUNNING, heartbeat_ago=5, started_ago=45)
    assert execution.runs_sweep().taken_over == 1
    assert enqueued == [orphan.pk]


def test_the_sweeper_closes_a_workflow_whose_runs_all_ended(agents, user, enqueued, settings):
    workflow = services.workflow_submit(feature="F", user=user, agents=["marcus"])
    workflow.runs.update(status=RunStatus.FAILED, finished_at=timezone.now())  # its worker died before closing it
    assert execution.runs_sweep().workflows_finished == 1
    workflow.refresh_from_db()
    assert workflow.status == RunStatus.FAILED


def test_the_sweeper_task_reports_what_it_did(agents, user, enqueued):
    assert tasks.runs_sweep.run() == {
        "requeued": 0,
        "taken_over": 0,
        "failed": 0,
        "workflows_finished": 0,
        "idempotency_keys_expired": 0,
    }


@pytest.mark.django_db(transaction=True)
def test_it_keeps_the_lease_of_a_long_call_alive_so_a_second_delivery_waits(upstream, queued_run, settings):
    settings.SWITCHYARD_RUN_LEASE_SECONDS = 0.6  # beats every 0.2 s
    upstream.behave("ok", delay=1.5)
    outcome: list[execution.Execution] = []

    def execute() -> None:
        try:
            outcome.append(execution.run_execute(run_id=queued_run.pk))
        finally:
            connection.close()  # this thread's connection, or the test database cannot be dropped

    worker = threading.Thread(target=execute)
    worker.start()
    try:
        time.sleep(1.0)  # longer than the lease: only the heartbeat keeps it held
        run = AgentRun.objects.get(pk=queued_run.pk)
        assert run.status == RunStatus.RUNNING
        assert run.heartbeat_at > run.started_at
        assert execution.run_execute(run_id=queued_run.pk).outcome == "busy"
    finally:
        worker.join(timeout=10)
    assert outcome[0].outcome == "succeeded"
    assert len(upstream.requests) == 1
    assert AgentRun.objects.get(pk=queued_run.pk).deliveries == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("task", "args"), [(tasks.run_execute, [2**31]), (tasks.runs_sweep, [])])
def test_every_task_first_drops_a_database_connection_that_outlived_its_age(task, args):
    connection.ensure_connection()
    old = connection.connection
    connection.close_at = time.monotonic() - 1  # CONN_MAX_AGE has passed since it was opened
    task.apply(args=args).get()
    assert connection.connection is not None
    assert connection.connection is not old
