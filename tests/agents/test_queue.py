"""agents.queue: a run's id reaches the broker by the task's name (real Redis), and a hung broker
never holds a submit."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
import redis
from celery import current_app
from rest_framework.authtoken.models import Token

from agents import queue, services, tasks
from agents.models import AgentRun, RunStatus
from project.celery import app
from tests.agents.worker import BASE_DIR, database_url
from tests.redis_server import free_port, throwaway_redis

__all__ = ["throwaway_redis"]


@pytest.fixture
def broker_queue():
    """The default queue on the test's broker, emptied before and after the test."""
    # A worker an earlier test killed may have left messages unacknowledged (a retry waiting for
    # its countdown); any consumer, this one too, would put them back in the queue mid-test.
    broker = redis.Redis.from_url(app.conf.broker_url)
    broker.delete("unacked", "unacked_index")
    broker.close()
    app.control.purge()
    with app.connection_for_read() as connection:
        messages = connection.SimpleQueue(app.conf.task_default_queue)
        messages.clear()
        yield messages
        messages.close()
    app.control.purge()


def next_message(messages, *, timeout: float = 5) -> tuple[str, list]:
    message = messages.get(timeout=timeout)
    message.ack()
    args, _kwargs, _embed = message.payload
    return message.headers["task"], args


def messages_for(messages, run_id: int, *, wait_s: float = 0.5) -> list[tuple[str, list]]:
    """The messages about this run that reach the queue within `wait_s` (other tests' stragglers,
    such as a retry a killed worker left behind, are not this test's business)."""
    found = []
    while True:
        try:
            task, args = next_message(messages, timeout=wait_s)
        except messages.Empty:
            return found
        if args == [run_id]:
            found.append((task, args))


def test_it_sends_a_run_id_under_the_name_of_the_task_that_executes_it(broker_queue):
    queue.run_enqueue(run_id=42)
    assert next_message(broker_queue) == ("agents.tasks.run_execute", [42])
    assert current_app.tasks["agents.tasks.run_execute"].name == tasks.run_execute.name


def test_it_sends_a_submitted_run_only_once_its_transaction_commits(
    agents, user, broker_queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        run = services.run_submit(agent="marcus", prompt="A health endpoint.", user=user)
        before_commit = messages_for(broker_queue, run.pk)  # nothing reaches a worker before the row is committed
    assert len(callbacks) == 1
    assert before_commit == []
    assert messages_for(broker_queue, run.pk) == [("agents.tasks.run_execute", [run.pk])]  # once
    assert AgentRun.objects.get(pk=run.pk).status == RunStatus.QUEUED


def test_the_sweeper_is_scheduled_under_the_name_of_its_task(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["agents-runs-sweep"]
    assert (entry["task"], current_app.tasks[entry["task"]].name) == ("agents.tasks.runs_sweep", tasks.runs_sweep.name)


@pytest.fixture
def web_on_throwaway_broker(throwaway_redis, tmp_path):
    """A real web process (runserver) on the test database whose broker is the throw-away Redis."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": throwaway_redis.url, "DEBUG": "true"}
    with (tmp_path / "web.log").open("ab") as log:
        web = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base_url}/api/v1/runs/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base_url, throwaway_redis
    finally:
        throwaway_redis.resume()
        web.terminate()
        web.wait(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_a_submit_answers_at_once_with_the_run_queued_when_the_broker_hangs(agents, user, web_on_throwaway_broker):
    base_url, broker = web_on_throwaway_broker
    token = Token.objects.create(user=user).key
    broker.pause()  # SIGSTOP: connections are accepted, nothing is answered
    started = time.monotonic()

    response = httpx.post(
        f"{base_url}/api/v1/runs/",
        json={"agent": "marcus", "prompt": "A health endpoint."},
        headers={"Authorization": f"Token {token}"},
        timeout=30,
    )

    assert response.status_code == 201, response.text
    assert time.monotonic() - started < 8  # the broker's socket timeout, perhaps twice: not the request's whole life
    assert AgentRun.objects.get(pk=response.json()["id"]).status == RunStatus.QUEUED  # the sweeper sends it


def test_every_scheduled_housekeeping_task_goes_to_its_own_queue_and_runs_to_the_run_queue(settings):
    route = app.amqp.router.route
    scheduled = sorted(entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values())
    assert scheduled == [
        "agents.tasks.runs_sweep",
        "metrics.tasks.monthly_report_send_task",
        "metrics.tasks.rollup_refresh_task",
    ]
    assert {name: route({}, name)["queue"].name for name in scheduled} == dict.fromkeys(scheduled, "housekeeping")
    assert route({}, queue.RUN_EXECUTE_TASK)["queue"].name == app.conf.task_default_queue == "celery"
