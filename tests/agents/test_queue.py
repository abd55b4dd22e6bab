"""agents.queue: a run's id reaches the broker by the task's name (real Redis), and a hung broker
never holds a submit."""

from __future__ import annotations

import threading
import time

import pytest
from celery import current_app
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents import queue, services, tasks
from agents.models import AgentRun, RunStatus
from project.celery import app
from tests.redis_server import throwaway_redis

__all__ = ["throwaway_redis"]


@pytest.fixture
def broker_queue():
    """The default queue on the test's broker, emptied before and after the test."""
    app.control.purge()
    with app.connection_for_read() as connection:
        messages = connection.SimpleQueue(app.conf.task_default_queue)
        yield messages
        messages.close()
    app.control.purge()


def next_message(messages) -> tuple[str, list]:
    message = messages.get(timeout=5)
    message.ack()
    args, _kwargs, _embed = message.payload
    return message.headers["task"], args


def test_it_sends_a_run_id_under_the_name_of_the_task_that_executes_it(broker_queue):
    queue.run_enqueue(run_id=42)
    assert next_message(broker_queue) == ("agents.tasks.run_execute", [42])
    assert current_app.tasks["agents.tasks.run_execute"].name == tasks.run_execute.name


def test_it_sends_a_submitted_run_only_once_its_transaction_commits(
    agents, user, broker_queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        run = services.run_submit(agent="marcus", prompt="A health endpoint.", user=user)
        with pytest.raises(broker_queue.Empty):  # nothing reaches a worker before the row is committed
            broker_queue.get(timeout=0.5)
    assert len(callbacks) == 1
    assert next_message(broker_queue) == ("agents.tasks.run_execute", [run.pk])
    with pytest.raises(broker_queue.Empty):
        broker_queue.get(timeout=0.5)
    assert AgentRun.objects.get(pk=run.pk).status == RunStatus.QUEUED


def test_the_sweeper_is_scheduled_under_the_name_of_its_task(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["agents-runs-sweep"]
    assert (entry["task"], current_app.tasks[entry["task"]].name) == ("agents.tasks.runs_sweep", tasks.runs_sweep.name)


@pytest.fixture
def broker_on_throwaway_redis(throwaway_redis):
    """This process sends tasks to the throw-away Redis (with the project's broker timeouts)."""
    previous = app.conf.broker_url
    app.conf.broker_url = throwaway_redis.url
    app.close()  # drop pooled connections to the previous broker
    yield throwaway_redis
    throwaway_redis.resume()
    app.close()
    app.conf.broker_url = previous


@pytest.mark.django_db(transaction=True)
def test_a_submit_answers_at_once_with_the_run_queued_when_the_broker_hangs(agents, user, broker_on_throwaway_redis):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    broker_on_throwaway_redis.pause()  # SIGSTOP: connections are accepted, nothing is answered
    responses = []

    def post_run() -> None:
        try:
            responses.append(client.post("/api/v1/runs/", {"agent": "marcus", "prompt": "A test."}, format="json"))
        finally:
            connection.close()  # this thread's own

    started = time.monotonic()
    post = threading.Thread(target=post_run)
    post.start()
    post.join(timeout=20)
    elapsed = time.monotonic() - started
    broker_on_throwaway_redis.resume()  # lets a request still blocked end, pass or fail
    post.join(timeout=20)

    assert [response.status_code for response in responses] == [201]
    assert elapsed < 8  # the broker's socket timeout, twice: not the request's whole life
    assert AgentRun.objects.get(pk=responses[0].json()["id"]).status == RunStatus.QUEUED  # the sweeper sends it
