"""Faults under load: kill a worker, stop or hang Redis, refuse or stop PostgreSQL, then count.

    .venv/bin/python bench/faults.py [--scenario kill ...] [--runs 30] [--delay 0.5 2.0] [--slow 0.25 10 14]

Everything runs on this machine, on loopback, and stops by itself: the script's own PostgreSQL
cluster (initdb + pg_ctl, as the `postgres` user when run as root) and its own redis-server,
each on a free port in a temporary directory, so it can stop, pause and kill them (never the
shared ones); two counting OpenAI-compatible upstreams (bench/faults_upstream.py): a local
provider (3 slots) and a paid cloud provider (kind `openai`, with a key) as its fallback;
gunicorn serving the API; two Celery workers (`celery -A project worker`, consuming every queue
the settings route to); and a loop sending the sweeper task every 3 s, as beat would.

Per scenario: a fresh database (a copy of a migrated template loaded with `load_routing`), a
fresh Redis, new workers. --runs runs are POSTed through the REST API: two thirds in the 6 s
before the fault (so some are queued when it strikes), the rest while it lasts; a quarter of the
upstream calls outlive the run lease (--slow). A worker that exits on its own is restarted, as
docker-compose does. Then the script waits until every run has ended and no upstream call is in
flight (at most 90 s), and counts:

- none:        no fault (the same load, for comparison: how many calls go to the cloud anyway).
- kill:        SIGKILL one worker (main process and pool) mid-load; start a new one at once.
- redis-stop:  Redis stopped (SHUTDOWN SAVE) for 20 s, then started again on its snapshot.
- redis-hang:  Redis paused (SIGSTOP) for 20 s, then SIGCONT.
- db-refuse:   PostgreSQL refuses new connections to the database for 20 s (ALTER DATABASE ...
               ALLOW_CONNECTIONS false from a kept superuser connection); open ones keep working.
- db-stop:     PostgreSQL stopped (pg_ctl stop -m fast) for 15 s, then started.

What is counted (nothing is asserted: today's code is expected to show failures):

- POSTs: answered 201, other answers, timeouts; latency; runs that exist although their POST
  did not answer 201 (a client that retries makes a duplicate).
- runs: succeeded, failed, cancelled, stuck (not ended when the script stopped waiting).
- upstream requests received (local, cloud) and ledger rows by outcome (whatever values appear);
  calls with no ledger row (per run: requests received beyond the run's ledger rows).
- charged twice: runs with more than one success ledger row, or whose success rows cost more
  than the run's own cost.
- failed after an answer arrived: failed runs for which an upstream delivered a complete answer
  (in the Redis scenarios: runs failed by the Redis blip after their answer arrived).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.faults_services import Postgres, Process, Redis, free_port  # noqa: E402

FAULT_AT_S = 6.0  # the fault starts this long after the first POST
SETTLE_S = 90.0  # after the fault and the last POST, wait at most this long for every run to end
QUIET_S = 2.0  # after that, for the last writes of an answer that has just arrived
POST_TIMEOUT_S = 60.0
SWEEP_EVERY_S = 3.0
LEASE_S = 6
REQUEUE_AFTER_S = 10
WORKERS = 2
CONCURRENCY = 4
LOCAL_SLOTS = 3
SLOT_WAIT_S = 5
CLOUD_KEY_ENV = "SWITCHYARD_FAULTS_API_KEY"  # a name SWITCHYARD_API_KEY_ENV_ALLOWED allows by default
DATABASE = "switchyard_faults"
TEMPLATE = "switchyard_faults_template"
LOCAL_MODEL, CLOUD_MODEL = "faults-local", "gpt-4o"
WATCHDOG_S = 25 * 60  # the whole script, whatever happens
LEDGER_OUTCOMES = "ledger rows by outcome"


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    fault_s: float
    inject: Callable[[Bench, float], None]


# -- the environment ------------------------------------------------------------------------


ROUTING_YAML = """
cost_optimization:
  local_model_target_percentage: 85
  baseline_model: cloud/{cloud_model}
routing:
  failures_before_cooldown: 3
  cooldown_seconds: 20
  slot_wait_seconds: {slot_wait}
local:
  kind: openai_compatible
  local: true
  base_url: http://127.0.0.1:{local_port}
  priority: 1
  capabilities: [code_generation]
  default_model: {local_model}
  connect_timeout_s: 2.0
  request_timeout_s: 20.0
  max_in_flight: {slots}
  models:
    - name: {local_model}
      capabilities: [code_generation]
      cost: {{input_per_mtok: 0, output_per_mtok: 0}}
cloud:
  kind: openai
  local: false
  base_url: http://127.0.0.1:{cloud_port}
  api_key_env: {key_env}
  priority: 2
  capabilities: [code_generation]
  default_model: {cloud_model}
  connect_timeout_s: 2.0
  request_timeout_s: 20.0
  models:
    - name: {cloud_model}
      capabilities: [code_generation]
      prices:
        - {{effective_from: 2024-08-06, input_per_mtok: 2.50, output_per_mtok: 10.00}}
agents:
  probe:
    name: Probe
    role: Fault probe
    capability: code_generation
    quality_check: none
    max_tokens: 64
    system_prompt: You write small Python functions.
"""


class Bench:
    """Owns every process and server the script starts; `close()` ends them all."""

    def __init__(self, *, logs: Path, delay: tuple[float, float], slow: tuple[float, float, float]) -> None:
        self.logs = logs
        self.tmp = Path(tempfile.mkdtemp(prefix="switchyard-faults-"))
        os.chmod(self.tmp, 0o755)  # noqa: S103 - the postgres user must reach its cluster's directory
        self.pg = Postgres(root=self.tmp / "pg", port=free_port())
        self.redis = Redis(root=self.tmp / "redis", port=free_port(), logs=logs)
        self.local_port, self.cloud_port, self.api_port = free_port(), free_port(), free_port()
        self.delay, self.slow = delay, slow
        self.upstreams: list[Process] = []
        self.processes: list[Process] = []  # per scenario: web, workers, sweeper
        self.workers: list[Process] = []
        self.workers_lock = threading.Lock()
        self.supervising = threading.Event()
        self.worker_exits = 0  # workers that exited on their own during the scenario (and were restarted)
        self.fault_notes: list[str] = []  # what the fault itself observed, for the scenario's notes
        self.token = ""
        self.scenario = "prepare"  # names the log files
        self.closed = False
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DATABASE_", "REDIS_", "CELERY_", "SWITCHYARD_"))
        }
        self.env.update(
            {
                "DATABASE_URL": self.pg.url(DATABASE),
                "REDIS_URL": f"redis://127.0.0.1:{self.redis.port}/0",
                "SECRET_KEY": "faults-bench-only-secret-key",
                "DEBUG": "0",
                "ALLOWED_HOSTS": "127.0.0.1",
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
                "SWITCHYARD_VAR_DIR": str(self.tmp / "var"),
                "SWITCHYARD_ALLOWED_PROVIDER_HOSTS": "127.0.0.1",  # the fake upstreams
                "SWITCHYARD_RUN_LEASE_SECONDS": str(LEASE_S),
                "SWITCHYARD_REQUEUE_AFTER_SECONDS": str(REQUEUE_AFTER_S),
                CLOUD_KEY_ENV: "sk-faults-0123456789abcdef",
            }
        )

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    # -- once ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Upstreams, the cluster, and a migrated template database with routing, a user and a token."""
        for label, port, model in (("local", self.local_port, LOCAL_MODEL), ("cloud", self.cloud_port, CLOUD_MODEL)):
            command = [
                sys.executable, str(BASE_DIR / "bench" / "faults_upstream.py"), "--port", str(port),
                "--label", label, "--model", model, "--delay", *map(str, self.delay), "--slow", *map(str, self.slow),
            ]  # fmt: skip
            self.upstreams.append(Process(f"upstream-{label}", command, env=self.env, log=self.logs / f"{label}.log"))
        self.pg.init()
        self.redis.start(fresh=True)
        self.admin_sql(f'CREATE DATABASE "{TEMPLATE}"')
        config = self.tmp / "routing.yaml"
        config.write_text(
            ROUTING_YAML.format(
                local_port=self.local_port,
                cloud_port=self.cloud_port,
                local_model=LOCAL_MODEL,
                cloud_model=CLOUD_MODEL,
                slots=LOCAL_SLOTS,
                slot_wait=SLOT_WAIT_S,
                key_env=CLOUD_KEY_ENV,
            )
        )
        env = {**self.env, "DATABASE_URL": self.pg.url(TEMPLATE), "DJANGO_SUPERUSER_PASSWORD": "faults-bench-pw-1"}
        self.manage(["migrate", "--no-input", "-v", "0"], env=env)
        self.manage(["load_routing", str(config)], env=env)
        self.manage(["createsuperuser", "--no-input", "--username", "faults", "--email", "faults@localhost"], env=env)
        found = re.search(r"\b([0-9a-f]{40})\b", self.manage(["drf_create_token", "faults"], env=env))
        if not found:
            raise RuntimeError("drf_create_token printed no token")
        self.token = found.group(1)
        self.redis.close()
        for upstream in self.upstreams:
            wait_http(f"http://127.0.0.1:{self.local_port if 'local' in upstream.name else self.cloud_port}/v1/models")

    def manage(self, args: list[str], *, env: dict[str, str]) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def admin_sql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.pg.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    # -- per scenario -------------------------------------------------------------------------

    def scenario_start(self, name: str) -> None:
        import httpx
        from django.db import connection

        self.scenario = name
        connection.close()
        self.admin_sql(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        self.admin_sql(f'CREATE DATABASE "{DATABASE}" TEMPLATE "{TEMPLATE}"')
        self.redis.start(fresh=True)
        for port in (self.local_port, self.cloud_port):
            httpx.post(f"http://127.0.0.1:{port}/_reset", timeout=5).raise_for_status()
        web = [
            sys.executable, "-m", "gunicorn", "project.wsgi", "--bind", f"127.0.0.1:{self.api_port}",
            "--workers", "2", "--worker-class", "gthread", "--threads", "4", "--log-level", "warning",
            "--timeout", "120",
        ]  # fmt: skip
        self.processes.append(Process("gunicorn", web, env=self.env, log=self.logs / f"{self.scenario}-gunicorn.log"))
        self.workers = [self.worker_start() for _ in range(WORKERS)]
        sweeper = [sys.executable, str(Path(__file__).resolve()), "--sweep-every", str(SWEEP_EVERY_S)]
        self.processes.append(Process("sweeper", sweeper, env=self.env, log=self.logs / f"{self.scenario}-sweeper.log"))
        wait_http(f"{self.api_url}/healthz")
        for worker in self.workers:
            worker_wait_ready(worker)
        self.worker_exits = 0
        self.supervising = threading.Event()
        threading.Thread(target=self._supervise, args=(self.supervising,), daemon=True).start()

    def _supervise(self, stop: threading.Event) -> None:
        """Start a new worker when one exits on its own, as docker-compose's `restart: unless-stopped` does
        (a worker the kill scenario kills is replaced by the scenario itself, under the same lock)."""
        while not stop.wait(1.0):
            with self.workers_lock:
                for index, worker in enumerate(self.workers):
                    if not worker.alive() and not stop.is_set() and not self.closed:
                        self.worker_exits += 1
                        self.workers[index] = self.worker_start()

    def worker_start(self) -> Process:
        if self.closed:
            raise RuntimeError("the bench is closing: no new worker")
        number = sum(1 for process in self.processes if process.name.startswith("worker")) + 1
        name = f"faults{number}-{os.getpid()}@localhost"
        command = [
            sys.executable, "-m", "celery", "-A", "project", "worker", "--pool", "prefork",
            "--concurrency", str(CONCURRENCY), "--loglevel", "INFO", "--hostname", name, "-Q", ",".join(queues()),
        ]  # fmt: skip
        worker = Process(f"worker {name}", command, env=self.env, log=self.logs / f"{self.scenario}-worker{number}.log")
        self.processes.append(worker)
        return worker

    def scenario_stop(self) -> None:
        self.supervising.set()
        with self.workers_lock:  # the supervisor's current round is over: it starts nothing more
            pass
        self.redis.resume()  # whatever happened, nothing stays paused
        for process in reversed(self.processes):
            process.stop(timeout_s=5)
        self.processes, self.workers = [], []
        self.redis.close()

    def close(self) -> None:
        """End everything at once (the figures are taken already). Safe from a signal handler: it
        takes no lock, and a worker the supervisor was starting meanwhile is caught by a later pass."""
        if self.closed:
            return
        self.closed = True
        self.supervising.set()
        with contextlib.suppress(Exception):
            self.redis.resume()
        for _ in range(3):
            for process in [*self.processes, *self.upstreams]:
                with contextlib.suppress(Exception):  # cleaning up: end everything else anyway
                    process.kill()
            time.sleep(0.2)
        try:
            self.redis.close()
        finally:
            try:
                self.pg.close()
            finally:
                shutil.rmtree(self.tmp, ignore_errors=True)


def queues() -> list[str]:
    """The default queue and every queue the settings route a task to (a housekeeping queue, if any)."""
    from project.celery import app

    names = {app.conf.task_default_queue or "celery"}
    routes = app.conf.task_routes or {}
    for route in routes.values() if isinstance(routes, dict) else ():
        if isinstance(route, dict) and route.get("queue"):
            names.add(route["queue"])
    for queue in app.conf.task_queues or ():
        names.add(getattr(queue, "name", queue))
    for entry in (app.conf.beat_schedule or {}).values():
        if (entry.get("options") or {}).get("queue"):
            names.add(entry["options"]["queue"])
    return sorted(names)


def worker_wait_ready(worker: Process, timeout_s: float = 90.0) -> None:
    host = worker.name.removeprefix("worker ")
    deadline = time.monotonic() + timeout_s
    while f"{host} ready." not in worker.log_text():
        if not worker.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{worker.name} did not start:\n{worker.log_text()[-3000:]}")
        time.sleep(0.2)


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout_s:g} s") from None
            time.sleep(0.1)


def sweeper_loop(every_s: float) -> None:
    """What beat does for the sweeper, every few seconds: send its scheduled task with its options."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.conf import settings

    from project.celery import app

    entry = next((e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"].endswith("runs_sweep")), None)
    while True:
        time.sleep(every_s)
        try:
            if entry is not None:
                app.send_task(entry["task"], **(entry.get("options") or {}))
            else:  # no scheduled sweeper: call it here
                from agents.execution import runs_sweep

                runs_sweep()
        except Exception as error:  # a broker or database fault: beat would try again too
            print(f"{time.strftime('%H:%M:%S')} sweep not sent: {type(error).__name__}: {error}", flush=True)


# -- the faults -----------------------------------------------------------------------------


def no_fault(bench: Bench, seconds: float) -> None:
    time.sleep(seconds)


def kill_worker(bench: Bench, _: float) -> None:
    """SIGKILL the worker with the most upstream calls in flight (waiting up to 5 s for one)."""
    deadline = time.monotonic() + 5
    while True:
        calling = {record["client_port"] for record in upstream_records(bench) if record["finished_at"] is None}
        busy = [len(calling & worker.client_ports()) for worker in bench.workers]
        if max(busy) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    index = busy.index(max(busy))
    with bench.workers_lock:
        bench.workers[index].kill()
        bench.workers[index] = bench.worker_start()  # not waited for: its start is part of the recovery
    bench.fault_notes.append(f"the killed worker had {busy[index]} upstream calls in flight")


def upstream_records(bench: Bench) -> list[dict]:
    import httpx

    records = []
    for port in (bench.local_port, bench.cloud_port):
        records += httpx.get(f"http://127.0.0.1:{port}/_records", timeout=10).json()
    return records


def redis_stop(bench: Bench, seconds: float) -> None:
    bench.redis.stop()
    try:
        time.sleep(seconds)
    finally:
        bench.redis.start()


def redis_hang(bench: Bench, seconds: float) -> None:
    bench.redis.pause()
    try:
        time.sleep(seconds)
    finally:
        bench.redis.resume()


def db_refuse(bench: Bench, seconds: float) -> None:
    import psycopg

    with psycopg.connect(bench.pg.url("postgres"), autocommit=True) as admin:  # kept open: it can undo
        admin.execute(f'ALTER DATABASE "{DATABASE}" WITH ALLOW_CONNECTIONS false')
        try:
            time.sleep(seconds)
        finally:
            admin.execute(f'ALTER DATABASE "{DATABASE}" WITH ALLOW_CONNECTIONS true')


def db_stop(bench: Bench, seconds: float) -> None:
    bench.pg.stop("fast")
    try:
        time.sleep(seconds)
    finally:
        bench.pg.start()


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("none", "no fault: the same load, for comparison", 10, no_fault),
        Scenario("kill", "SIGKILL a worker mid-load, start a new one", 0, kill_worker),
        Scenario("redis-stop", "Redis stopped 20 s, then started", 20, redis_stop),
        Scenario("redis-hang", "Redis paused (SIGSTOP) 20 s", 20, redis_hang),
        Scenario("db-refuse", "PostgreSQL refuses new connections 20 s", 20, db_refuse),
        Scenario("db-stop", "PostgreSQL stopped 15 s, then started", 15, db_stop),
    )
}


# -- one scenario ---------------------------------------------------------------------------


@dataclass
class Post:
    marker: str
    status: str  # "201", "500", "ReadTimeout", ...
    sent_at: float  # time.time()
    seconds: float
    run_id: int | None = None


@dataclass
class Outcome:
    scenario: Scenario
    posts: list[Post] = field(default_factory=list)
    fault_started: float = 0.0
    fault_ended: float = 0.0
    waited_s: float = 0.0
    figures: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def db_retry(query: Callable[[], object], *, attempts: int = 30) -> object:
    """Run an ORM query, reconnecting after a database restart (the script's own connection broke)."""
    from django.db import Error, connection

    for attempt in range(attempts):
        try:
            return query()
        except Error:
            connection.close()
            if attempt == attempts - 1:
                raise
            time.sleep(1)
    return None


def scenario_run(bench: Bench, scenario: Scenario, *, runs: int) -> Outcome:
    import httpx

    from agents.models import FINISHED_STATUSES, AgentRun

    outcome = Outcome(scenario)
    bench.scenario_start(scenario.name)
    headers = {"Authorization": f"Token {bench.token}"}
    client = httpx.Client(headers=headers, timeout=POST_TIMEOUT_S, limits=httpx.Limits(max_connections=runs + 4))
    # Two thirds of the runs before the fault, so that some are queued when it strikes; the rest
    # while it lasts (at least 10 s), so that the API is tried during the fault too.
    before = round(runs * 2 / 3)
    during_s = max(scenario.fault_s, 10.0)
    post_at = [FAULT_AT_S * index / before for index in range(before)]
    post_at += [FAULT_AT_S + during_s * index / (runs - before) for index in range(runs - before)]
    lock = threading.Lock()
    started = time.monotonic()

    def post(index: int) -> None:
        time.sleep(max(0.0, started + post_at[index] - time.monotonic()))
        marker = f"{scenario.name}-{index}"
        body = {"agent": "probe", "prompt": f"Write a health check function. probe:{marker}"}
        sent_at, began = time.time(), time.perf_counter()
        run_id = None
        try:
            response = client.post(f"{bench.api_url}/api/v1/runs/", json=body)
            status = str(response.status_code)
            if response.status_code == 201:
                run_id = response.json().get("id")
        except httpx.HTTPError as error:
            status = type(error).__name__
        with lock:
            outcome.posts.append(Post(marker, status, sent_at, time.perf_counter() - began, run_id))

    try:
        with ThreadPoolExecutor(runs) as pool:
            futures = [pool.submit(post, index) for index in range(runs)]
            time.sleep(max(0.0, started + FAULT_AT_S - time.monotonic()))
            unfinished = db_retry(lambda: AgentRun.objects.exclude(status__in=FINISHED_STATUSES).count())
            outcome.notes.append(f"runs not yet ended when the fault began: {unfinished}")
            outcome.fault_started = time.time()
            bench.fault_notes = []
            scenario.inject(bench, scenario.fault_s)
            outcome.fault_ended = time.time()
            outcome.notes += bench.fault_notes
            for future in futures:
                future.result()
        settle_from = time.monotonic()
        while time.monotonic() - settle_from < SETTLE_S:
            # Every run ended and no upstream call is still in flight (a duplicate executor's call
            # would otherwise land in the ledger after the count).
            calling = any(record["finished_at"] is None for record in upstream_records(bench))
            if not calling and not db_retry(lambda: AgentRun.objects.exclude(status__in=FINISHED_STATUSES).exists()):
                break
            time.sleep(1)
        outcome.waited_s = time.monotonic() - settle_from
        time.sleep(QUIET_S)
        outcome.figures = measure(bench, outcome)
    finally:
        client.close()
        bench.scenario_stop()
    return outcome


def measure(bench: Bench, outcome: Outcome) -> dict:
    from agents.models import FINISHED_STATUSES, AgentRun
    from routing.models import LedgerEntry

    runs = db_retry(lambda: list(AgentRun.objects.values("id", "prompt", "status", "cost_usd", "finished_at", "error")))
    ledger = db_retry(lambda: list(LedgerEntry.objects.values("run_id", "outcome", "cost_usd", "is_local")))
    records = upstream_records(bench)
    prefix = f"{outcome.scenario.name}-"
    records = [record for record in records if record["marker"].startswith(prefix)]
    marker_of = {}
    for run in runs:
        found = re.search(r"probe:([A-Za-z0-9_-]+)", run["prompt"])
        marker_of[run["id"]] = found.group(1) if found else ""

    posts = outcome.posts
    accepted = {post.marker for post in posts if post.status == "201"}
    statuses = Counter(run["status"] for run in runs)
    calls_by_marker: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        calls_by_marker[record["marker"]].append(record)
    rows_by_run: dict[int, list[dict]] = defaultdict(list)
    for row in ledger:
        rows_by_run[row["run_id"]].append(row)

    charged_twice = unrecorded = unrecorded_cloud = failed_after_answer = 0
    for run in runs:
        calls = calls_by_marker.get(marker_of[run["id"]], [])
        rows = rows_by_run.get(run["id"], [])
        successes = [row for row in rows if row["outcome"] == "success"]
        success_cost = sum((row["cost_usd"] or Decimal(0) for row in successes), Decimal(0))
        if len(successes) > 1 or success_cost > (run["cost_usd"] or Decimal(0)):
            charged_twice += 1
        unrecorded += max(0, len(calls) - len(rows))
        cloud_calls = sum(1 for call in calls if call["upstream"] == "cloud")
        unrecorded_cloud += max(0, cloud_calls - sum(1 for row in rows if not row["is_local"]))
        if run["status"] == "failed" and any(call["delivered"] for call in calls):
            failed_after_answer += 1

    in_flight = sum(
        1
        for record in records
        if record["received_at"] <= outcome.fault_started
        and (record["finished_at"] is None or record["finished_at"] > outcome.fault_started)
    )
    ended = [run["finished_at"].timestamp() for run in runs if run["status"] in FINISHED_STATUSES]
    seconds = [post.seconds for post in posts]
    during = [post.seconds for post in posts if outcome.fault_started <= post.sent_at <= outcome.fault_ended]
    errors = Counter(shorten(run["error"]) for run in runs if run["status"] == "failed")
    outcome.notes.append(f"upstream calls in flight when the fault began: {in_flight}")
    if errors:
        outcome.notes.append("failed runs: " + "; ".join(f"{count} x {text}" for text, count in errors.most_common(4)))
    return {
        "POSTs": len(posts),
        "  answered 201": len(accepted),
        "  other answers": ", ".join(
            f"{status} x{count}" for status, count in Counter(p.status for p in posts if p.status != "201").items()
        )
        or "-",
        "  POST p50 / max s": f"{statistics.median(seconds):.2f} / {max(seconds):.2f}" if seconds else "-",
        "  sent during the fault: p50 / max s": f"{statistics.median(during):.2f} / {max(during):.2f}"
        if during
        else "-",
        "runs created (submitted)": len(runs),
        "  created behind a failed POST": sum(1 for run in runs if marker_of[run["id"]] not in accepted),
        "succeeded": statuses.get("succeeded", 0),
        "failed": statuses.get("failed", 0),
        "cancelled": statuses.get("cancelled", 0),
        "stuck (not ended)": sum(count for status, count in statuses.items() if status not in FINISHED_STATUSES),
        "workers that died on their own": bench.worker_exits,
        "last run ended, s after fault": f"{max(ended) - outcome.fault_ended:.0f}" if ended else "-",
        "upstream requests received": len(records),
        "  local": sum(1 for record in records if record["upstream"] == "local"),
        "  cloud (paid)": sum(1 for record in records if record["upstream"] == "cloud"),
        "ledger rows": len(ledger),
        LEDGER_OUTCOMES: dict(Counter(row["outcome"] for row in ledger)),
        "calls with no ledger row": unrecorded,
        "  of them cloud (paid)": unrecorded_cloud,
        "charged twice (runs)": charged_twice,
        "ledger cloud cost $": f"{sum((r['cost_usd'] or 0 for r in ledger if not r['is_local']), Decimal(0)):.6f}",
        "failed after an answer arrived": failed_after_answer,
    }


def shorten(text: str) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= 90 else text[:87] + "..."


# -- the table ------------------------------------------------------------------------------


def table_print(outcomes: list[Outcome]) -> None:
    """One column per scenario; the ledger's outcome values (whatever appear) under "ledger rows"."""
    if not outcomes:
        print("no scenario ran")
        return
    values = sorted({value for o in outcomes for value in o.figures.get(LEDGER_OUTCOMES, {})})
    rows: list[tuple[str, list[str]]] = []
    for label in outcomes[0].figures if outcomes else ():
        if label == LEDGER_OUTCOMES:
            rows += [(f"  {value}", [str(o.figures[label].get(value, 0)) for o in outcomes]) for value in values]
        else:
            rows.append((label, [str(o.figures[label]) for o in outcomes]))
    width = max(len(label) for label, _ in rows) + 2
    column = max(len(cell) + 2 for _, cells in rows for cell in cells)
    column = max(column, *(len(o.scenario.name) + 2 for o in outcomes))
    print("".ljust(width) + "".join(o.scenario.name.rjust(column) for o in outcomes))
    for label, cells in rows:
        print(label.ljust(width) + "".join(cell.rjust(column) for cell in cells))
    print()
    for outcome in outcomes:
        print(f"{outcome.scenario.name}: {outcome.scenario.what}; waited {outcome.waited_s:.0f} s for the runs to end")
        for note in outcome.notes:
            print(f"  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="repeatable; default: all")
    parser.add_argument("--runs", type=int, default=30, help="runs POSTed per scenario (default 30)")
    parser.add_argument(
        "--delay", type=float, nargs=2, default=(0.5, 2.0), metavar=("MIN", "MAX"), help="upstream answer delay, s"
    )
    parser.add_argument(
        "--slow",
        type=float,
        nargs=3,
        default=(0.25, 10.0, 14.0),
        metavar=("SHARE", "MIN", "MAX"),
        help="this share of calls takes MIN-MAX s instead: longer than the run lease (default 0.25 10 14)",
    )
    parser.add_argument("--logs", type=Path, default=BASE_DIR / "var" / "faults", help="process logs go here")
    parser.add_argument("--sweep-every", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sweep_every:
        sweeper_loop(args.sweep_every)
        return

    args.logs.mkdir(parents=True, exist_ok=True)
    for old in args.logs.glob("*.log"):
        old.unlink()
    bench = Bench(logs=args.logs, delay=tuple(args.delay), slow=tuple(args.slow))
    os.environ.clear()
    os.environ.update(bench.env)  # this process reads the same database as the app
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    import django

    django.setup()
    atexit.register(bench.close)

    def interrupted(signum: int, _frame: object) -> None:
        # Straight to the cleanup: the main thread may be waiting on POSTs or a fault's sleep.
        print(f"interrupted ({signal.Signals(signum).name}): stopping everything", flush=True)
        bench.close()
        os._exit(128 + signum)

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    watchdog = threading.Timer(
        WATCHDOG_S, lambda: (print("watchdog: giving up", flush=True), bench.close(), os._exit(3))
    )
    watchdog.daemon = True
    watchdog.start()

    outcomes = []
    try:
        bench.prepare()
        for name in args.scenario or list(SCENARIOS):
            print(f"{time.strftime('%H:%M:%S')} {name}: {SCENARIOS[name].what} ...", flush=True)
            try:
                outcomes.append(scenario_run(bench, SCENARIOS[name], runs=args.runs))
            except Exception as error:  # the others can still run; the table says which is missing
                print(f"{name} could not run: {type(error).__name__}: {error}", flush=True)
    finally:
        bench.close()
    print()
    print(
        f"{args.runs} runs per scenario, 2/3 POSTed in the {FAULT_AT_S:g} s before the fault, 1/3 during it; "
        f"upstream delay {args.delay[0]:g}-{args.delay[1]:g} s "
        f"({args.slow[0]:.0%} of calls {args.slow[1]:g}-{args.slow[2]:g} s);\n"
        f"{WORKERS} workers x {CONCURRENCY}, local slots {LOCAL_SLOTS} (slot wait {SLOT_WAIT_S} s), "
        f"lease {LEASE_S} s, requeue after {REQUEUE_AFTER_S} s, sweeper every {SWEEP_EVERY_S:g} s"
    )
    table_print(outcomes)
    (args.logs / "results.json").write_text(
        json.dumps([{"scenario": o.scenario.name, **o.figures, "notes": o.notes} for o in outcomes], indent=2)
    )


if __name__ == "__main__":
    main()
