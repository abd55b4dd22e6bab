"""Rate limits hold across web processes: two uvicorn processes serving project.asgi on the test's
database and Redis, one key's requests alternating between them, admit the key's limit in total."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from django.conf import settings

from accounts.services import key_create
from routing.models import LedgerEntry
from tests.agents.worker import database_url
from tests.localmodel import free_port
from tests.routing.conftest_router import forget_health, make_provider

BASE_DIR = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
HELLO = [{"role": "user", "content": "hello"}]

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="web processes share limits through Redis")


def start_web(port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,  # the test's own (allowed provider hosts, settings module)
        "DATABASE_URL": database_url(),
        "DATABASE_CONN_MAX_AGE": "0",
        "REDIS_URL": settings.REDIS_URL,
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1", "--port", str(port),
        "--lifespan", "off", "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"uvicorn exited: {log.read_text()[-2000:]}"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"uvicorn did not start: {log.read_text()[-2000:]}")


@pytest.fixture
def two_web_processes(transactional_db, tmp_path) -> Iterator[list[str]]:
    """The base URLs (…/v1) of two uvicorn processes, started at the same time."""
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"uvicorn-{port}.log" for port in ports]
    processes = [start_web(port, log) for port, log in zip(ports, logs, strict=True)]
    try:
        for port, process, log in zip(ports, processes, logs, strict=True):
            wait_ready(f"http://127.0.0.1:{port}", process, log)
        yield [f"http://127.0.0.1:{port}/v1" for port in ports]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


def test_a_keys_rate_limit_holds_across_two_web_processes(two_web_processes, fake_openai, django_user_model):
    make_provider("upstream", base_url=fake_openai.base_url, model="gpt-4o-mini")
    user = django_user_model.objects.create_user(username="grace", password="x")
    secret = key_create(user=user, name="script", requests_per_minute=4).secret
    clients = [openai.OpenAI(base_url=url, api_key=secret, max_retries=0, timeout=30) for url in two_web_processes]

    admitted, refused = [], []
    for index in range(10):
        server = index % 2
        try:
            clients[server].chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=4)
            admitted.append(server)
        except openai.RateLimitError:
            refused.append(server)

    assert admitted == [0, 1, 0, 1]  # 4 a minute in total, whichever process took the request
    assert refused == [0, 1, 0, 1, 0, 1]
    calls = [request for request in fake_openai.requests if request.path.endswith("/chat/completions")]
    assert LedgerEntry.objects.count() == len(calls) == 4
    forget_health(["upstream"])
