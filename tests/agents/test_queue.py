"""agents.queue: a run's id reaches the broker by the task's name (real Redis)."""

from __future__ import annotations

import pytest
from celery import current_app

from agents import queue, services, tasks
from agents.models import AgentRun, RunStatus
from project.celery import app


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
