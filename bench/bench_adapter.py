"""How much the provider adapter adds to a bare httpx call against the same loopback server.

    .venv/bin/python bench/bench_adapter.py [--calls 2000]

One fake OpenAI-compatible server (tests/fakes) answers at once, in its own process so its threads
do not share the client's interpreter lock. Each round makes one bare call
(httpx.Client POST + JSON parse of the same body the adapter sends) and one call through
OpenAIAdapter.chat (request body, key lookup, error mapping, Completion), alternating which goes
first, both on keep-alive clients. Prints per-call mean and p50 for each, and the adapter's
overhead in µs and as a ratio: both measured in the same run, so machine load affects both alike.
The same is then repeated over an in-memory httpx transport (no socket, no server), which leaves
only the client side to time: the adapter's own cost without the noise of a busy machine.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The adapters check the provider's host against the operator's allow-list (Django settings) on
# every request; the bench's hosts are allowed there, as an operator allows a LAN host.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("SWITCHYARD_ALLOWED_PROVIDER_HOSTS", "127.0.0.1,fake.test")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django

django.setup()

from routing.providers import get_adapter  # noqa: E402 - after the settings it reads
from routing.providers.base import ChatRequest, ProviderConfig  # noqa: E402
from tests.fakes.openai import FakeOpenAI  # noqa: E402

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write a Dockerfile"}]
CANNED = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1764115200,
    "model": "gpt-4o-mini",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "FROM python:3.11-slim"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 13, "completion_tokens": 6, "total_tokens": 19},
}


def serve(port_queue: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    with FakeOpenAI() as server:
        port_queue.put(server.port)
        stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()

    port_queue: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(port_queue, stop), daemon=True)
    server.start()
    try:
        base_url = f"http://127.0.0.1:{port_queue.get(timeout=30)}"
        report("loopback fake server", *measure(base_url, httpx.Client, args.calls, args.warmup))
    finally:
        stop.set()
        server.join(timeout=10)

    # The same through an in-memory transport: no socket, no server, so only the client side is timed.
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=CANNED))
    in_memory = functools.partial(httpx.Client, transport=transport)
    report("in-memory transport", *measure("http://fake.test", in_memory, args.calls, args.warmup))


def measure(
    base_url: str, make_client: Callable[..., httpx.Client], calls: int, warmup: int
) -> tuple[list[float], list[float], int]:
    """Per-call µs for a bare httpx POST + parse and for OpenAIAdapter.chat, interleaved."""
    config = ProviderConfig(name="bench", kind="openai_compatible", base_url=base_url, is_local=True)
    adapter_client = make_client(timeout=httpx.Timeout(120, connect=5))
    adapter = get_adapter(config, client=adapter_client)
    request = ChatRequest(model="gpt-4o-mini", messages=MESSAGES, max_tokens=64)
    url = f"{base_url}/v1/chat/completions"
    body = {"model": request.model, "messages": MESSAGES, "stream": False, "max_tokens": 64}
    bare_client = make_client(timeout=httpx.Timeout(120, connect=5))

    def bare() -> None:
        response = bare_client.post(url, json=body)
        response.raise_for_status()
        response.json()["choices"][0]["message"]["content"]

    def through_adapter() -> None:
        adapter.chat(request)

    bare_us: list[float] = []
    adapter_us: list[float] = []
    for index in range(warmup + calls):
        pair = ((bare, bare_us), (through_adapter, adapter_us))
        for call, samples in pair if index % 2 else reversed(pair):
            started = time.perf_counter()
            call()
            if index >= warmup:
                samples.append((time.perf_counter() - started) * 1e6)
    bare_client.close()
    adapter_client.close()
    return bare_us, adapter_us, calls


def report(label: str, bare_us: list[float], adapter_us: list[float], calls: int) -> None:
    bare_mean, adapter_mean = statistics.fmean(bare_us), statistics.fmean(adapter_us)
    bare_p50, adapter_p50 = statistics.median(bare_us), statistics.median(adapter_us)
    print(f"{label}: {calls} calls each, interleaved, keep-alive")
    print(f"  bare httpx POST + json:  mean {bare_mean:8.1f} µs   p50 {bare_p50:8.1f} µs")
    print(f"  through the adapter:     mean {adapter_mean:8.1f} µs   p50 {adapter_p50:8.1f} µs")
    print(
        f"  adapter overhead:        mean {adapter_mean - bare_mean:8.1f} µs   p50 {adapter_p50 - bare_p50:8.1f} µs"
        f"   ratio {adapter_mean / bare_mean:.3f} (mean), {adapter_p50 / bare_p50:.3f} (p50)"
    )


if __name__ == "__main__":
    main()
