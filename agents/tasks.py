"""Celery tasks: thin wrappers that take ids and call `agents.execution`.

acks_late + reject_on_worker_lost: a message is acknowledged only when the task ends, so a worker
killed mid-run has its message delivered again; the claim and lease in `execution.run_execute`
make that redelivery take the run over exactly once. A claim that cannot reach the database is
retried with a backoff, never acknowledged as done.

The time limits are this worker's own (SWITCHYARD_RUN_TIME_LIMIT): `agents.queue` sends no limits.
Housekeeping (the sweeper, which also deletes expired idempotency keys) goes to its own queue
(settings.CELERY_TASK_ROUTES).
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from agents import execution, idempotency
from agents.queue import RUN_EXECUTE_TASK, RUNS_SWEEP_TASK

SOFT_LIMIT_S = settings.SWITCHYARD_RUN_TIME_LIMIT
HARD_LIMIT_S = SOFT_LIMIT_S + execution.TIME_LIMIT_MARGIN_S
CLAIM_RETRY_S = (1, 30)  # first and longest pause before a claim that met a database error is tried again


@shared_task(
    bind=True,
    name=RUN_EXECUTE_TASK,
    soft_time_limit=SOFT_LIMIT_S,
    time_limit=HARD_LIMIT_S,
    max_retries=None,
    acks_late=True,
    reject_on_worker_lost=True,
)
def run_execute(self, run_id: int) -> str:
    try:
        done = execution.run_execute(run_id=run_id)
    except execution.DatabaseUnavailable as error:
        # Acknowledging it would drop the run until the sweeper's requeue: try again, further apart
        # each time, until the database answers.
        pause = min(CLAIM_RETRY_S[1], CLAIM_RETRY_S[0] * 2**self.request.retries)
        raise self.retry(countdown=pause, exc=error) from error
    if done.retry_in is not None:
        # Another worker holds the run's lease: look again once it would have expired.
        raise self.retry(countdown=done.retry_in)
    return done.outcome


@shared_task(name=RUNS_SWEEP_TASK, soft_time_limit=120, time_limit=150)
def runs_sweep() -> dict:
    report = execution.runs_sweep()
    return {**report.__dict__, "idempotency_keys_expired": idempotency.keys_expire()}
