"""A real Celery worker process for end-to-end tests, on the test's PostgreSQL database and Redis.

    from tests.agents.worker import worker_process   # a fixture; list it in __all__ or use it

    def test_it_runs(transactional_db, worker_process):
        worker = worker_process()                     # started and ready; stopped after the test
        worker = worker_process(CELERY_VISIBILITY_TIMEOUT="3")   # extra environment (wins over the test's)
        worker.kill()                                 # SIGKILL the whole worker (main process and pool)

The worker must see what the test commits, so tests using it need `transactional_db` (pytest-django's
plain `db` keeps everything in a transaction the worker cannot see); the worker gets
DATABASE_URL pointing at the test database (`test_<name>`). It needs PostgreSQL: an SQLite test
database lives in the test process's memory. Redis is used when REDIS_URL is set, else the
filesystem broker under SWITCHYARD_VAR_DIR, shared the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
QUEUES = "celery,housekeeping"  # runs and housekeeping, as bin/run's and compose's workers


def database_url() -> str:
    """The URL of the database this test process is using (pytest-django's test database)."""
    db = connection.settings_dict
    if db["ENGINE"] != "django.db.backends.postgresql":
        raise RuntimeError(
            "a worker process needs PostgreSQL (set DATABASE_URL): it cannot share an SQLite test database"
        )
    user = quote(db.get("USER") or "")
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{db['NAME']}"


class WorkerProcess:
    """`celery -A project worker` in its own session, so it can be killed as a whole."""

    def __init__(self, *, log_path: Path, env: dict[str, str], concurrency: int = 1, pool: str = "prefork") -> None:
        self.log_path = log_path
        self.name = f"e2e-{uuid.uuid4().hex[:8]}@localhost"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "DATABASE_CONN_MAX_AGE": "0",
            "PYTHONUNBUFFERED": "1",
            **({"REDIS_URL": settings.REDIS_URL} if settings.REDIS_URL else {}),
            **env,  # last: a test may give the worker its own cache or broker
        }
        self.command = [
            sys.executable, "-m", "celery", "-A", "project", "worker",
            "--pool", pool, "--concurrency", str(concurrency), "--loglevel", "INFO", "--queues", QUEUES,
            "--hostname", self.name, "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.wait_until_ready()
        return self

    def wait_until_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited ({self.process.returncode}):\n{self.log_tail()}")
            if f"{self.name} ready." in self.log():
                return
            time.sleep(0.1)
        raise RuntimeError(f"the worker was not ready within {timeout_s:g} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the main process and its pool at once, as a machine dying would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def pool_pids(self) -> list[int]:
        """The pool's child processes (Linux /proc)."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def kill_pool_process(self) -> int:
        """SIGKILL the pool process running the task; the main process stays and reports it lost."""
        [pid] = self.pool_pids()
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # warm shutdown: finish the current task
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


def purge_queue() -> None:
    """Drop messages earlier tests left on the broker, so the worker sees only this test's."""
    from project.celery import app

    app.control.purge()


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []
    purge_queue()

    def start(concurrency: int = 1, **env: str) -> WorkerProcess:
        worker = WorkerProcess(log_path=tmp_path / f"worker-{len(started)}.log", env=env, concurrency=concurrency)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


def wait_for(predicate: Callable[[], object], *, timeout_s: float, what: str, worker: WorkerProcess | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    detail = f"\nworker log:\n{worker.log_tail()}" if worker else ""
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}{detail}")
