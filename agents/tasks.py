"""Celery tasks: thin wrappers that take ids and call `agents.services`.

acks_late + reject_on_worker_lost (project settings): a message is acknowledged only when the
task ends, so a worker killed mid-run has its message delivered again; the claim and lease in
`services.run_execute` make that redelivery take the run over exactly once.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import close_old_connections, connection

from agents import services

SOFT_LIMIT_S = settings.SWITCHYARD_RUN_TIME_LIMIT
HARD_LIMIT_S = SOFT_LIMIT_S + services.TIME_LIMIT_MARGIN_S


@shared_task(
    bind=True,
    name="agents.tasks.run_execute",
    soft_time_limit=SOFT_LIMIT_S,
    time_limit=HARD_LIMIT_S,
    max_retries=None,
    acks_late=True,
    reject_on_worker_lost=True,
)
def run_execute(self, run_id: int) -> str:
    # The worker keeps its database connection across tasks (CELERY_DB_REUSE_MAX): drop it here,
    # as Django does per request, when it broke (a database restart) or outlived CONN_MAX_AGE.
    # (Never inside a transaction: a test's, or an eager caller's.)
    if not connection.in_atomic_block:
        close_old_connections()
    execution = services.run_execute(run_id=run_id)
    if execution.retry_in is not None and not self.request.is_eager:
        # Another worker holds the run's lease: look again once it would have expired.
        raise self.retry(countdown=execution.retry_in)
    return execution.outcome


@shared_task(name="agents.tasks.runs_sweep", soft_time_limit=120, time_limit=150)
def runs_sweep() -> dict:
    report = services.runs_sweep()
    return report.__dict__
