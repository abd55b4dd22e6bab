"""Real worker processes under faults: a killed worker, Redis gone, PostgreSQL refusing connections,
a backlog in front of the sweeper, and the worker's own time limit.

PostgreSQL (the test database, shared with the worker), Redis and the workers are real; Redis is
stopped only as a throw-away redis-server of the test's own (tests/redis_server.py), and
PostgreSQL refuses new connections only to this test database (ALLOW_CONNECTIONS false).
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import psycopg
import pytest
from celery import current_app
from django.conf import settings
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents.execution import TIME_LIMIT_MARGIN_S
from agents.models import AgentRun, RunStatus
from agents.queue import RUN_EXECUTE_TASK, RUNS_SWEEP_TASK
from routing.models import CallOutcome, LedgerEntry
from tests.agents.worker import wait_for, worker_process
from tests.factories import run_create
from tests.redis_server import throwaway_redis
from tests.routing.conftest_router import fresh_routing, make_provider, set_policy

__all__ = ["fresh_routing", "throwaway_redis", "worker_process"]

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_routing")]


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def submit(api: APIClient, prompt: str = "Write a Python function that adds two numbers.") -> int:
    response = api.post("/api/v1/runs/", {"agent": "marcus", "prompt": prompt}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def finished(run_id: int) -> AgentRun | None:
    run = AgentRun.objects.get(pk=run_id)
    return run if run.is_finished else None


def all_finished(run_ids: list[int]) -> list[AgentRun] | None:
    runs = list(AgentRun.objects.filter(pk__in=run_ids).order_by("pk"))
    return runs if all(run.is_finished for run in runs) else None


def chats(server) -> int:
    return sum(1 for request in server.requests if request.path.endswith("/chat/completions"))


def test_a_run_keeps_its_answer_when_redis_stops_during_the_call(
    api, agents, fake_openai, throwaway_redis, worker_process
):
    # The worker's cache (slots, cool-downs, the table's version) is the throw-away Redis; its
    # broker stays the test's.
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", max_in_flight=1, request_timeout_s=30)
    fake_openai.behave("ok", delay=2)
    worker = worker_process(REDIS_URL=throwaway_redis.url, CELERY_BROKER_URL=settings.CELERY_BROKER_URL)
    during = submit(api)
    wait_for(lambda: fake_openai.requests, timeout_s=30, what="the upstream call", worker=worker)

    throwaway_redis.stop()
    after = submit(api, prompt="submitted while Redis is down")

    runs = wait_for(lambda: all_finished([during, after]), timeout_s=40, what="both runs to finish", worker=worker)
    assert [(run.status, run.error, run.output) for run in runs] == [(RunStatus.SUCCEEDED, "", fake_openai.reply)] * 2
    outcomes = LedgerEntry.objects.filter(run_id__in=[during, after]).values_list("outcome", flat=True)
    assert list(outcomes) == [CallOutcome.SUCCESS] * 2


def test_a_killed_workers_slot_comes_back_within_seconds(api, agents, fake_openai, worker_process):
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", max_in_flight=1, request_timeout_s=60)
    set_policy(slot_wait_seconds=30)
    fake_openai.behave("ok", delay=30)  # the first call holds the only slot until its worker dies
    first = worker_process()
    submit(api)
    wait_for(lambda: fake_openai.requests, timeout_s=30, what="the first call", worker=first)

    first.kill()
    killed = time.monotonic()
    fake_openai.behave("ok")
    second = worker_process()
    run_id = submit(api, prompt="after the crash")

    run = wait_for(lambda: finished(run_id), timeout_s=25, what="the next run to finish", worker=second)
    assert (run.status, run.provider_name) == (RunStatus.SUCCEEDED, "local")
    assert time.monotonic() - killed < 20  # the slot's lease lapsed: not the old 91 s expiry


def test_a_sweep_runs_promptly_behind_a_backlog_of_runs(api, agents, fake_openai, worker_process):
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", request_timeout_s=30)
    fake_openai.behave("ok", delay=1)
    lost_since = timezone.now() - timedelta(seconds=settings.SWITCHYARD_RUN_TIME_LIMIT + 3 * TIME_LIMIT_MARGIN_S)
    lost = run_create(agent=agents["marcus"], status=RunStatus.RUNNING, started_at=lost_since, heartbeat_at=lost_since)
    worker = worker_process()
    backlog = [submit(api, prompt=f"backlog {index}") for index in range(15)]  # 15 s of work for one process
    wait_for(lambda: fake_openai.requests, timeout_s=30, what="the backlog to start", worker=worker)

    current_app.send_task(RUNS_SWEEP_TASK)  # as beat sends it
    swept = time.monotonic()

    wait_for(lambda: finished(lost.pk), timeout_s=6, what="the sweeper to fail the lost run", worker=worker)
    assert time.monotonic() - swept < 6
    assert AgentRun.objects.get(pk=lost.pk).error.startswith("Still running after the time limit")
    assert AgentRun.objects.filter(pk__in=backlog, status=RunStatus.QUEUED).count() >= 8  # the backlog is still there


@pytest.fixture
def database_refusing_connections():
    """Make PostgreSQL refuse new connections to this test database and cut every other one (the
    worker's kept connection); this test process's own connection keeps working. PostgreSQL takes
    ALTER DATABASE on a database only from a connection to another one."""
    db = connection.settings_dict
    admin = psycopg.connect(
        dbname="postgres",
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        autocommit=True,
    )
    name = db["NAME"]
    connection.ensure_connection()
    ours = connection.connection.info.backend_pid

    def refuse() -> None:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s", (name, ours)
        )

    def allow() -> None:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')

    try:
        yield refuse, allow
    finally:
        allow()
        admin.close()


def test_runs_queued_during_a_database_outage_all_run_when_it_ends(
    api, agents, fake_openai, worker_process, database_refusing_connections
):
    refuse, allow = database_refusing_connections
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", request_timeout_s=30)
    worker = worker_process()
    warm = submit(api, prompt="before the outage")  # the worker now holds a database connection
    wait_for(lambda: finished(warm), timeout_s=30, what="the first run", worker=worker)

    refuse()
    queued = [submit(api, prompt=f"during the outage {index}") for index in range(4)]
    received = lambda: len(re.findall(r"run_execute\[[0-9a-f-]+\] received", worker.log())) >= 5  # noqa: E731
    wait_for(received, timeout_s=15, what="the worker to receive the runs", worker=worker)
    time.sleep(2)  # time to fail every claim (and, acknowledged, to lose the messages)
    assert AgentRun.objects.filter(pk__in=queued, status=RunStatus.QUEUED).count() == 4
    allow()

    runs = wait_for(lambda: all_finished(queued), timeout_s=40, what="every queued run to run", worker=worker)
    assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * 4
    assert chats(fake_openai) == 5


def test_a_worker_stops_a_slow_run_at_its_own_time_limit(api, agents, fake_openai, worker_process):
    # This process (it enqueues the run) knows the task with its own limit, as a worker's sweeper does.
    assert current_app.tasks[RUN_EXECUTE_TASK].soft_time_limit == settings.SWITCHYARD_RUN_TIME_LIMIT == 600
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", request_timeout_s=60)
    fake_openai.behave("ok", delay=30)
    worker = worker_process(SWITCHYARD_RUN_TIME_LIMIT="2")
    run_id = submit(api)
    wait_for(lambda: fake_openai.requests, timeout_s=30, what="the upstream call", worker=worker)
    called = time.monotonic()

    run = wait_for(lambda: finished(run_id), timeout_s=15, what="the time limit to stop the run", worker=worker)
    assert (run.status, run.error) == (RunStatus.FAILED, "Stopped: it ran longer than the time limit of 2 s.")
    assert time.monotonic() - called < 6
