"""Handing runs to Celery workers.

Messages are sent by task name, so the code that enqueues (submitting, the sweeper) never imports
`agents.tasks`, which imports it: imports point one way, tasks -> execution -> queue.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import current_app

logger = logging.getLogger(__name__)

RUN_EXECUTE_TASK = "agents.tasks.run_execute"
RUNS_SWEEP_TASK = "agents.tasks.runs_sweep"


def run_enqueue(*, run_id: int) -> None:
    """Send one run's id to a worker; raises when the broker cannot take it (within seconds: see
    the broker timeouts and publish retry policy in settings).

    No time limits travel with the message: Celery would copy them from this process's copy of the
    task, and the worker's own SWITCHYARD_RUN_TIME_LIMIT is the one that must govern its runs.
    """
    current_app.send_task(RUN_EXECUTE_TASK, args=[run_id], time_limit=None, soft_time_limit=None)


def runs_enqueue(*, run_ids: Iterable[int]) -> None:
    """Send each run to a worker. A broker that is down or hung leaves the runs queued: they are
    already committed, and the sweeper sends them again later. Never raises: it runs on commit,
    after the request's work is done, and a submit must answer at once."""
    pending = list(run_ids)
    for index, run_id in enumerate(pending):
        try:
            run_enqueue(run_id=run_id)
        except Exception:
            # The broker is down or hung: each further try would cost its timeout again.
            logger.exception("could not enqueue runs %s; the sweeper will send them again", pending[index:])
            return
