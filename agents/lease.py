"""A running run's lease: how long it lasts, and the one heartbeat thread per process that renews it.

A worker that stops renewing (killed, or cut off from the database) loses its runs to the sweeper
and a takeover once the lease lapses (see agents.execution).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q
from django.utils import timezone

from agents.models import AgentRun, RunStatus

logger = logging.getLogger(__name__)


def lease() -> timedelta:
    return timedelta(seconds=settings.SWITCHYARD_RUN_LEASE_SECONDS)


class _Heartbeats:
    """One thread per process renews the lease of every run the process is executing.

    While the provider call blocks, this thread writes `heartbeat_at` every lease/3 seconds. One
    thread for the process rather than one per run keeps a thread start off every run's path; a
    forked pool process starts its own on first use (threads do not survive fork).

    The thread keeps its own database connection between beats and reconnects only when it broke:
    a PostgreSQL that refuses new connections (at its connection limit, or during a failover) must
    not stop the beats of runs in flight, or their leases lapse and another worker runs them again.
    It closes the connection once no run has been held for a lease, so an idle process holds none.
    """

    TICK_S = 0.2

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[int, tuple[str, float]] = {}  # run id -> (claim token, last beat, monotonic)
        self.pid: int | None = None
        self.last_held = time.monotonic()

    @contextmanager
    def hold(self, run_id: int, token: str) -> Iterator[None]:
        with self.lock:
            self.held[run_id] = (token, time.monotonic())
            if self.pid != os.getpid():
                self.pid = os.getpid()
                threading.Thread(target=self._run, name="run-heartbeats", daemon=True).start()
        try:
            yield
        finally:
            with self.lock:
                self.held.pop(run_id, None)
                self.last_held = time.monotonic()

    def _run(self) -> None:
        while True:
            time.sleep(self.TICK_S)
            self.beat()

    def beat(self) -> None:
        interval = lease().total_seconds() / 3
        now = time.monotonic()
        with self.lock:
            due = [(run_id, token) for run_id, (token, last) in self.held.items() if now - last >= interval]
            for run_id, token in due:
                self.held[run_id] = (token, now)
            idle = not self.held and now - self.last_held >= interval * 3
        if idle and connection.connection is not None:
            connection.close()
        if not due:
            return
        try:
            ours = Q()
            for run_id, token in due:
                ours |= Q(pk=run_id, claim_token=token)
            AgentRun.objects.filter(ours, status=RunStatus.RUNNING).update(heartbeat_at=timezone.now())
        except Exception:  # a missed beat only shortens the lease; never kill the runs over it
            logger.exception("could not renew the lease of runs %s", [run_id for run_id, _ in due])
            self._drop_broken_connection()

    @staticmethod
    def _drop_broken_connection() -> None:
        # Only a broken connection is replaced: a new one may be refused while this one still works.
        try:
            usable = connection.connection is not None and connection.is_usable()
        except DatabaseError:
            usable = False
        if not usable:
            connection.close()


heartbeats = _Heartbeats()
