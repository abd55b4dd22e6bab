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
    """Send one run's id to a worker; raises when the broker cannot take it."""
    current_app.send_task(RUN_EXECUTE_TASK, args=[run_id])


def runs_enqueue(*, run_ids: Iterable[int]) -> None:
    """Send each run to a worker. A broker that is down leaves the runs queued: they are already
    committed, and the sweeper sends them again later."""
    for run_id in run_ids:
        try:
            run_enqueue(run_id=run_id)
        except Exception:
            logger.exception("could not enqueue run %s; the sweeper will retry", run_id)
