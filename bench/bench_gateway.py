"""What the OpenAI-compatible gateway adds over calling the upstream directly, measured side by side
in one run: non-streamed p50/p95, streamed time to first token, and requests/s with every call metered.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sw_bench REDIS_URL=redis://127.0.0.1:6379/7 \\
        .venv/bin/python bench/bench_gateway.py [--calls 300] [--stream-calls 200] \\
        [--throughput-calls 2000] [--clients 16] [--web 2] [--loop uvloop|asyncio] [--http httptools|h11]

Everything real on this machine but the upstream: uvicorn serving project.asgi (as bin/web does:
uvloop and httptools unless --loop / --http say otherwise, DATABASE_CONN_MAX_AGE=0 and
DATABASE_POOL_SIZE=40 unless set), PostgreSQL, Redis (slots, cool-downs, the routing table's and
the keys' versions), the router and its OpenAI-compatible adapter. The upstream is the project's fake
OpenAI-compatible server (tests/fakes/openai.py) in a process of its own, answering at once. The
database named by DATABASE_URL is created if missing, migrated and EMPTIED: give it one of its own.

- latency: pairs of calls, one direct to the upstream and one through the gateway (the same body,
  model named, keep-alive httpx clients), alternating which goes first, so machine load hits both
  alike. overhead = gateway - direct at p50 and p95 (and the p50 of the per-pair differences).
- time to first token: the same with `stream: true`, timed until the first non-empty content delta.
- throughput: --clients concurrent asyncio clients, first straight at the upstream (what the client
  and upstream manage on their own: the ceiling), then through the gateway; requests/s = calls /
  wall time; every gateway call checked answered 200 with one `success` ledger row (agent gateway).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.bench_runs import bench_environment, cpu_seconds, free_port, percentile, start, stop, wait_http  # noqa: E402

MODEL = "gpt-4o-mini"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 16}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}


def serve_upstream(port_file: str) -> None:
    """The fake OpenAI-compatible server, until killed; its port written to port_file."""
    import threading

    from tests.fakes.openai import FakeOpenAI

    with FakeOpenAI() as server:
        server.reply = "Hi there, how can I help?"
        server.requests = _Discard()  # a long run would keep every request otherwise
        Path(port_file).write_text(str(server.port))
        threading.Event().wait()


def serve_gateway(port: int, *, loop: str = "uvloop", http: str = "httptools") -> None:
    """One uvicorn process serving project.asgi on a port it shares with the others (SO_REUSEPORT:
    the kernel spreads connections over them), as `uvicorn --workers N` does for bin/web. Not
    `--workers` itself: its supervisor binds the socket without IPPROTO_TCP, so with `--loop asyncio`
    Nagle stays on and every keep-alive response after the first waits ~40 ms for a delayed ACK
    (Kludex/uvicorn#3149; uvloop sets TCP_NODELAY itself)."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config("project.asgi:application", log_level="warning", access_log=False, loop=loop, http=http)
    uvicorn.Server(config).run(sockets=[sock])


class _Discard(list):
    def append(self, item: object) -> None:
        pass


def prepare(upstream_url: str) -> str:
    """An empty, migrated database with one user and the upstream as the only provider; the user's key."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from routing.models import LLMModel, Price, Provider
    from routing.table import invalidate_routing_cache

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    user = get_user_model().objects.create_user("bench")
    provider = Provider.objects.create(
        name="loopback",
        kind="openai_compatible",
        base_url=upstream_url,
        is_local=True,
        priority=1,
        default_model=MODEL,
        capabilities=[],
        max_in_flight=1000,  # the bench measures the gateway, not a host's cap
    )
    model = LLMModel.objects.create(provider=provider, name=MODEL)
    Price.objects.create(model=model, effective_from="2020-01-01T00:00:00Z", input_per_mtok=0, output_per_mtok=0)
    invalidate_routing_cache()
    return Token.objects.create(user=user).key


# -- latency ----------------------------------------------------------------------------------


def first_token_ms(client, url: str, started: float) -> float:
    """POST a streamed request; ms from `started` until the first non-empty content delta."""
    with client.stream("POST", url, json=STREAM_BODY) as response:
        response.raise_for_status()
        first = None
        for line in response.iter_lines():
            if first is None and line.startswith("data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    first = (time.perf_counter() - started) * 1000
        if first is None:
            raise RuntimeError(f"{url}: no content in the stream")
        return first


def measure_pairs(upstream_url: str, gateway_url: str, key: str, count: int, warmup: int, *, streamed: bool):
    """ms per call, direct and through the gateway, interleaved."""
    import httpx

    direct_client = httpx.Client(timeout=30)
    gateway_client = httpx.Client(timeout=30, headers={"Authorization": f"Bearer {key}"})

    def call(client: httpx.Client, base: str) -> Callable[[], float]:
        url = f"{base}/v1/chat/completions"

        def one() -> float:
            started = time.perf_counter()
            if streamed:
                return first_token_ms(client, url, started)
            response = client.post(url, json=BODY)
            response.raise_for_status()
            response.json()["choices"][0]["message"]["content"]
            return (time.perf_counter() - started) * 1000

        return one

    direct, gateway = call(direct_client, upstream_url), call(gateway_client, gateway_url)
    direct_ms: list[float] = []
    gateway_ms: list[float] = []
    for index in range(warmup + count):
        pair = ((direct, direct_ms), (gateway, gateway_ms))
        results = {}
        for one, samples in pair if index % 2 else reversed(pair):
            results[id(samples)] = one()
        if index >= warmup:
            direct_ms.append(results[id(direct_ms)])
            gateway_ms.append(results[id(gateway_ms)])
    direct_client.close()
    gateway_client.close()
    return direct_ms, gateway_ms


# -- throughput -------------------------------------------------------------------------------


async def _hammer(url: str, headers: dict[str, str], calls: int, clients: int) -> tuple[float, int]:
    """calls non-streamed requests from `clients` concurrent tasks; (seconds, how many answered 200)."""
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    remaining = iter(range(calls))
    ok = 0

    async with httpx.AsyncClient(timeout=60, headers=headers, limits=limits) as client:

        async def worker() -> None:
            nonlocal ok
            for _ in remaining:
                response = await client.post(url, json=BODY)
                ok += response.status_code == 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - started, ok


def measure_throughput(url: str, headers: dict[str, str], calls: int, clients: int, *, after_warmup=None) -> dict:
    asyncio.run(_hammer(url, headers, min(200, calls), clients))  # warm-up: connections, caches
    if after_warmup is not None:
        after_warmup()
    seconds, ok = asyncio.run(_hammer(url, headers, calls, clients))
    return {"calls": calls, "seconds": seconds, "per_s": calls / seconds, "ok": ok}


# -- report -----------------------------------------------------------------------------------


def report_latency(label: str, direct: list[float], gateway: list[float], aim: str) -> None:
    differences = [g - d for d, g in zip(direct, gateway, strict=True)]
    print(f"{label} ({len(direct)} pairs, interleaved)")
    print(f"  direct:   p50 {percentile(direct, 50):7.2f} ms   p95 {percentile(direct, 95):7.2f} ms")
    print(f"  gateway:  p50 {percentile(gateway, 50):7.2f} ms   p95 {percentile(gateway, 95):7.2f} ms")
    print(
        f"  overhead: p50 {percentile(gateway, 50) - percentile(direct, 50):7.2f} ms   "
        f"p95 {percentile(gateway, 95) - percentile(direct, 95):7.2f} ms   "
        f"(p50 of the pairs' differences {statistics.median(differences):.2f} ms; "
        f"ratio p50 {percentile(gateway, 50) / percentile(direct, 50):.1f}x; aim: {aim})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="non-streamed pairs for the latency phase")
    parser.add_argument("--stream-calls", type=int, default=200, help="streamed pairs for time to first token")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--throughput-calls", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients in the throughput phase")
    parser.add_argument("--web", type=int, default=2, help="uvicorn processes")
    parser.add_argument(
        "--loop", default="uvloop", choices=["uvloop", "asyncio"], help="uvicorn's event loop (bin/run: uvloop)"
    )
    parser.add_argument(
        "--http", default="httptools", choices=["httptools", "h11"], help="uvicorn's HTTP parser (bin/run: httptools)"
    )
    parser.add_argument("--serve-upstream", help=argparse.SUPPRESS)
    parser.add_argument("--serve-gateway", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return
    if args.serve_gateway:
        serve_gateway(args.serve_gateway, loop=args.loop, http=args.http)
        return

    bench_environment()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from routing.models import LedgerEntry

    logs = BASE_DIR / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    port_file = logs / "gateway-upstream.port"
    port_file.unlink(missing_ok=True)
    web_env = {
        "DATABASE_CONN_MAX_AGE": "0",
        "DATABASE_POOL_SIZE": "40",
        # Rate limits too high to refuse a call, so every call pays for them as in production
        # (SWITCHYARD_KEY_RPM=0 SWITCHYARD_KEY_TPM=0 measures the gateway without them).
        "SWITCHYARD_KEY_RPM": "1000000000",
        "SWITCHYARD_KEY_TPM": "1000000000000",
        **os.environ,
        "ALLOWED_HOSTS": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    }
    gateway_port = free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    processes = [start([sys.executable, __file__, "--serve-upstream", str(port_file)], web_env, logs / "upstream.log")]
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline:
                raise RuntimeError("the fake upstream did not start")
            time.sleep(0.05)
        upstream_url = f"http://127.0.0.1:{port_file.read_text()}"
        key = prepare(upstream_url)
        web = [sys.executable, __file__, "--serve-gateway", str(gateway_port), "--loop", args.loop, "--http", args.http]
        processes += [start(web, web_env, logs / f"uvicorn-{index}.log") for index in range(args.web)]
        wait_http(f"{gateway_url}/healthz")
        time.sleep(2)  # every process listening, not only the first

        plain = measure_pairs(upstream_url, gateway_url, key, args.calls, args.warmup, streamed=False)
        streamed = measure_pairs(upstream_url, gateway_url, key, args.stream_calls, args.warmup, streamed=True)

        direct_rate = measure_throughput(f"{upstream_url}/v1/chat/completions", {}, args.throughput_calls, args.clients)
        roles = {"uvicorn (gateway)": [process.pid for process in processes[1:]], "upstream": [processes[0].pid]}
        before: dict[str, float] = {}

        def start_counting() -> None:  # after the warm-up: only the timed calls' rows and CPU
            LedgerEntry.objects.all().delete()
            before.update({role: sum(map(cpu_seconds, pids)) for role, pids in roles.items()})
            before["bench client"] = time.process_time()

        gateway_rate = measure_throughput(
            f"{gateway_url}/v1/chat/completions",
            {"Authorization": f"Bearer {key}"},
            args.throughput_calls,
            args.clients,
            after_warmup=start_counting,
        )
        cpu = {role: sum(map(cpu_seconds, pids)) - before[role] for role, pids in roles.items()}
        cpu["bench client"] = time.process_time() - before["bench client"]
        rows = LedgerEntry.objects.filter(agent="gateway")
        metered = rows.filter(outcome="success").count()
        all_rows = rows.count()
    finally:
        for process in reversed(processes):
            stop(process)

    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end; "
        f"{args.web} uvicorn process(es) ({args.loop}, {args.http}), "
        f"DATABASE_CONN_MAX_AGE={web_env['DATABASE_CONN_MAX_AGE']} "
        f"DATABASE_POOL_SIZE={web_env['DATABASE_POOL_SIZE']}"
    )
    report_latency("non-streamed", *plain, aim="p50 <= 3 ms, p95 <= 10 ms")
    report_latency("streamed, time to first token", *streamed, aim="p50 <= 5 ms")
    print(f"throughput, non-streamed, {args.clients} concurrent clients, {args.throughput_calls} calls")
    print(f"  direct:   {direct_rate['per_s']:7.1f} requests/s (the client and upstream alone)")
    print(
        f"  gateway:  {gateway_rate['per_s']:7.1f} requests/s   "
        f"({gateway_rate['per_s'] / direct_rate['per_s']:.2f} of direct; aim: >= 300/s)"
    )
    per_call = ", ".join(f"{role} {seconds * 1000 / args.throughput_calls:.2f}" for role, seconds in cpu.items())
    print(f"  CPU ms per gateway call: {per_call} (PostgreSQL and Redis not counted)")
    print(
        f"  checked: {gateway_rate['ok']} of {args.throughput_calls} answered 200; "
        f"{metered} success ledger rows ({all_rows} rows in all) with agent gateway"
    )


if __name__ == "__main__":
    main()
