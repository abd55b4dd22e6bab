"""Agent runs per second through the REST API, Celery and the router, and the time a run adds
over calling the upstream directly (p50, p95), measured in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sw_bench REDIS_URL=redis://127.0.0.1:6379/7 \\
        .venv/bin/python bench/bench_runs.py [--runs 1000] [--latency-runs 200] [--workers 2] [--clients 8]

Everything is real and on this machine: gunicorn serving the API, Celery worker processes on
Redis, PostgreSQL, the router and its OpenAI-compatible adapter, against a loopback upstream (a
subprocess of this script) that answers at once. The database named by DATABASE_URL is created
if missing, migrated and EMPTIED: give it one of its own. The Redis database's Celery queue is
purged.

- direct: POST /v1/chat/completions to the upstream with a keep-alive httpx client, one at a time.
- run latency: one run at a time, from just before the API POST until the run's finished_at
  (written by the worker when the result is stored; same machine, same clock).
  added = run latency - direct latency, at p50 and p95.
- throughput: --runs runs submitted by --clients threads as fast as the API takes them; runs/s =
  runs / (last finished_at - first submit), every run checked succeeded with one ledger row.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

REPLY = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 0,
    "model": "bench-model",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "```python\ndef ok():\n    return True\n```"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 42, "completion_tokens": 12, "total_tokens": 54},
}

STREAM = [
    f"data: {json.dumps(event)}\n\n".encode()
    for event in [
        *(
            {"id": "chatcmpl-bench", "model": "bench-model", "choices": [{"index": 0, "delta": {"content": piece}}]}
            for piece in ("```python\n", "def ok():\n", "    return True\n", "```")
        ),
        {
            "id": "chatcmpl-bench",
            "model": "bench-model",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        },
        {"id": "chatcmpl-bench", "model": "bench-model", "choices": [], "usage": REPLY["usage"]},
    ]
] + [b"data: [DONE]\n\n"]

# -- the loopback upstream (its own process, so it does not share our GIL) -------------------


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server
    body = json.dumps(REPLY).encode()

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle + delayed ACK add 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if request.get("stream"):
            self.send_stream()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def send_stream(self) -> None:
        """The same reply as server-sent events (as the worker asks for it), one chunk per event, in one write."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"".join(b"%x\r\n%s\r\n" % (len(event), event) for event in STREAM) + b"0\r\n\r\n")

    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": "bench-model", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve_upstream(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), Upstream)
    server.daemon_threads = True
    server.serve_forever()


# -- helpers --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s:g} s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()


def prepare(upstream_url: str) -> str:
    """An empty, migrated database with one user, one agent and one loopback provider; the API token."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from agents.models import Agent, QualityCheck
    from routing.models import LLMModel, Price, Provider
    from routing.table import invalidate_routing_cache

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    user = get_user_model().objects.create_user("bench")  # API token only, no password
    Agent.objects.create(
        slug="marcus",
        name="Marcus",
        role="Backend engineer",
        capability="code_generation",
        system_prompt="You write FastAPI endpoints.",
        quality_check=QualityCheck.PYTHON_CODE,
        max_tokens=64,
    )
    provider = Provider.objects.create(
        name="loopback",
        kind="openai_compatible",
        base_url=upstream_url,
        is_local=True,
        priority=1,
        default_model="bench-model",
        capabilities=[],
    )
    model = LLMModel.objects.create(provider=provider, name="bench-model")
    Price.objects.create(model=model, effective_from="2020-01-01T00:00:00Z", input_per_mtok=0, output_per_mtok=0)
    invalidate_routing_cache()
    return Token.objects.create(user=user).key


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def cpu_seconds(root_pid: int) -> float:
    """User + system CPU of a process and all its descendants so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [root_pid]
    while pending:
        pid = pending.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            pending += [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


# -- measurements ---------------------------------------------------------------------------


def measure_direct(upstream_url: str, count: int) -> list[float]:
    import httpx

    body = {"model": "bench-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}
    with httpx.Client() as client:
        for _ in range(20):
            client.post(f"{upstream_url}/v1/chat/completions", json=body)
        times = []
        for _ in range(count):
            started = time.perf_counter()
            client.post(f"{upstream_url}/v1/chat/completions", json=body).json()
            times.append((time.perf_counter() - started) * 1000)
    return times


def wait_finished(run_id: int, timeout_s: float = 30.0):
    from agents.models import AgentRun

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = AgentRun.objects.filter(pk=run_id).values("status", "created_at", "started_at", "finished_at").first()
        if run["finished_at"] is not None:
            return run
        time.sleep(0.01)  # finished_at is the measure: polling only has to notice it, not time it
    raise RuntimeError(f"run {run_id} did not finish within {timeout_s:g} s")


def measure_run_latency(api_url: str, token: str, count: int) -> tuple[list[float], list[float], dict]:
    """Per run: ms from before the POST until finished_at, the POST's own response time, and phases."""
    import httpx

    headers = {"Authorization": f"Token {token}"}
    body = {"agent": "marcus", "prompt": "A health endpoint."}
    totals, posts = [], []
    phases: dict[str, list[float]] = {"POST to row created": [], "created to claimed": [], "claimed to finished": []}
    with httpx.Client(headers=headers, timeout=30) as client:
        for index in range(count + 10):
            started_wall, started = time.time(), time.perf_counter()
            response = client.post(f"{api_url}/api/v1/runs/", json=body)
            posted = time.perf_counter()
            response.raise_for_status()
            run = wait_finished(response.json()["id"])
            if run["status"] != "succeeded":
                raise RuntimeError(f"a run ended {run['status']}")
            if index >= 10:  # the first few warm up connections and caches
                totals.append((run["finished_at"].timestamp() - started_wall) * 1000)
                posts.append((posted - started) * 1000)
                created, claimed, done = (run[key].timestamp() for key in ("created_at", "started_at", "finished_at"))
                phases["POST to row created"].append((created - started_wall) * 1000)
                phases["created to claimed"].append((claimed - created) * 1000)
                phases["claimed to finished"].append((done - claimed) * 1000)
    return totals, posts, phases


def measure_throughput(api_url: str, token: str, runs: int, clients: int) -> dict:
    import httpx

    from agents.models import AgentRun
    from routing.models import LedgerEntry

    AgentRun.objects.all().delete()
    LedgerEntry.objects.all().delete()
    headers = {"Authorization": f"Token {token}"}
    body = {"agent": "marcus", "prompt": "A health endpoint."}
    local = threading.local()

    def submit(_: int) -> int:
        if not hasattr(local, "client"):
            local.client = httpx.Client(headers=headers, timeout=60)
        response = local.client.post(f"{api_url}/api/v1/runs/", json=body)
        response.raise_for_status()
        return response.json()["id"]

    started_wall = time.time()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        ids = list(pool.map(submit, range(runs)))
    submitted_s = time.perf_counter() - started
    deadline = time.monotonic() + 300
    while AgentRun.objects.filter(pk__in=ids, finished_at__isnull=True).exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the runs did not finish within 300 s")
        time.sleep(0.05)
    last = max(AgentRun.objects.filter(pk__in=ids).values_list("finished_at", flat=True))
    elapsed = last.timestamp() - started_wall
    succeeded = AgentRun.objects.filter(pk__in=ids, status="succeeded").count()
    charges = LedgerEntry.objects.filter(run_id__in=ids, outcome="success").count()
    return {
        "runs": runs,
        "elapsed_s": elapsed,
        "runs_per_s": runs / elapsed,
        "submit_per_s": runs / submitted_s,
        "succeeded": succeeded,
        "success_ledger_rows": charges,
        "max_deliveries": max(AgentRun.objects.filter(pk__in=ids).values_list("deliveries", flat=True)),
    }


def bench_environment() -> None:
    """Check DATABASE_URL and REDIS_URL, create the bench's database, and set what every process
    of the bench inherits."""
    database_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not database_url.startswith("postgres") or not redis_url:
        sys.exit("Set DATABASE_URL (a PostgreSQL database of its own: it is emptied) and REDIS_URL.")
    ensure_database(database_url)
    # The fake upstream is on loopback, which providers may only use where the operator allows it.
    os.environ.update(
        {
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-secret-key",
            "LOG_LEVEL": "WARNING",
            "SWITCHYARD_ALLOWED_PROVIDER_HOSTS": "127.0.0.1",
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs for the throughput phase")
    parser.add_argument("--latency-runs", type=int, default=200, help="runs, one at a time, for the latency phase")
    parser.add_argument("--workers", type=int, default=2, help="Celery pool processes")
    parser.add_argument("--web", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--clients", type=int, default=8, help="threads submitting runs at once")
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return

    bench_environment()
    setup_django()
    from project.celery import app

    logs = BASE_DIR / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    # The API's per-user throttle guards a shared deployment; here one user submits every run on purpose.
    env = {**os.environ, "ALLOWED_HOSTS": "127.0.0.1", "PYTHONUNBUFFERED": "1", "API_THROTTLE_USER": "1000000/minute"}
    upstream_port, api_port = free_port(), free_port()
    upstream_url, api_url = f"http://127.0.0.1:{upstream_port}", f"http://127.0.0.1:{api_port}"
    processes = [start([sys.executable, __file__, "--serve-upstream", str(upstream_port)], env, logs / "upstream.log")]
    try:
        wait_http(f"{upstream_url}/v1/models")
        token = prepare(upstream_url)
        app.control.purge()
        web = [
            sys.executable, "-m", "gunicorn", "project.wsgi", "--bind", f"127.0.0.1:{api_port}",
            "--workers", str(args.web), "--worker-class", "gthread", "--threads", "4", "--log-level", "warning",
        ]  # fmt: skip
        worker = [
            sys.executable, "-m", "celery", "-A", "project", "worker", "--pool", "prefork",
            "--concurrency", str(args.workers), "--loglevel", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        processes.append(start(web, env, logs / "gunicorn.log"))
        processes.append(start(worker, env, logs / "worker.log"))
        wait_http(f"{api_url}/healthz")

        direct = measure_direct(upstream_url, args.latency_runs)
        totals, posts, phases = measure_run_latency(api_url, token, args.latency_runs)
        roles = {"gunicorn (API)": processes[1].pid, "celery worker": processes[2].pid, "upstream": processes[0].pid}
        before = {role: cpu_seconds(pid) for role, pid in roles.items()}
        before["bench client"] = time.process_time()
        throughput = measure_throughput(api_url, token, args.runs, args.clients)
        cpu = {role: cpu_seconds(pid) - before[role] for role, pid in roles.items()}
        cpu["bench client"] = time.process_time() - before["bench client"]
    finally:
        for process in reversed(processes):
            stop(process)

    cores = os.cpu_count()
    print(f"machine: {cores} cores; {args.web} gunicorn processes x 4 threads, {args.workers} Celery pool processes")
    print(f"direct upstream call:      p50 {percentile(direct, 50):7.2f} ms   p95 {percentile(direct, 95):7.2f} ms")
    print(f"API POST (answers 201):    p50 {percentile(posts, 50):7.2f} ms   p95 {percentile(posts, 95):7.2f} ms")
    print(f"run, POST to finished:     p50 {percentile(totals, 50):7.2f} ms   p95 {percentile(totals, 95):7.2f} ms")
    added50 = percentile(totals, 50) - percentile(direct, 50)
    added95 = percentile(totals, 95) - percentile(direct, 95)
    print(f"added over direct:         p50 {added50:7.2f} ms   p95 {added95:7.2f} ms   (aim: p50 <= 20 ms)")
    print(f"  mean run {statistics.mean(totals):.2f} ms over {len(totals)} runs one at a time; p50 of each phase:")
    for phase, values in phases.items():
        print(f"    {phase:22s} {percentile(values, 50):7.2f} ms")
    print(
        f"throughput: {throughput['runs_per_s']:.1f} runs/s ({throughput['runs']} runs in "
        f"{throughput['elapsed_s']:.2f} s; API alone took them at {throughput['submit_per_s']:.1f}/s; aim: >= 100/s)"
    )
    per_run = ", ".join(f"{role} {seconds * 1000 / throughput['runs']:.1f}" for role, seconds in cpu.items())
    print(f"  CPU ms per run during the throughput phase: {per_run} (PostgreSQL and Redis not counted)")
    print(
        f"  checked: {throughput['succeeded']} succeeded, {throughput['success_ledger_rows']} success ledger rows, "
        f"max deliveries {throughput['max_deliveries']}"
    )


if __name__ == "__main__":
    main()
