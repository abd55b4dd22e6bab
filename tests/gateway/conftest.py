"""A running Switchyard for the gateway's tests: the project's ASGI app under uvicorn on a free
loopback port, in a thread of the test process (so it uses the test database), with the real local
model registered behind it and a user with an API token."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from io import StringIO

import pytest
import redis
import uvicorn
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from gateway.rate_limits import KEY_FORMAT
from routing.table import invalidate_routing_cache
from tests.localmodel import free_port
from tests.routing.conftest_router import forget_health

START_TIMEOUT_S = 15.0
LOCAL = "local-gemma"


@dataclass(frozen=True)
class Gateway:
    base_url: str  # what an OpenAI client takes as its base_url: http://127.0.0.1:<port>/v1
    key: str
    user_id: int


@pytest.fixture(autouse=True)
def fresh_rate_limits(settings) -> Iterator[None]:
    """Each test starts with every key's rate limit buckets empty: key and user ids repeat across
    test runs, and a bucket lives up to a minute in the shared Redis."""
    if settings.REDIS_URL:
        client = redis.Redis.from_url(settings.REDIS_URL)
        try:
            for key in client.scan_iter(match=KEY_FORMAT.format("*"), count=1000):
                client.delete(key)
        finally:
            client.close()
    yield


@pytest.fixture
def asgi_server(transactional_db) -> Iterator[str]:
    """http://127.0.0.1:<port> serving project.asgi under uvicorn."""
    from project.asgi import application  # imported here: its middleware reads settings the session fixes first

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def empty_gateway(asgi_server, django_user_model) -> Gateway:
    """The gateway with no provider at all, and a user with an API token."""
    user = django_user_model.objects.create_user(username="grace", password="x")
    token = Token.objects.create(user=user)
    invalidate_routing_cache()
    return Gateway(base_url=f"{asgi_server}/v1", key=token.key, user_id=user.pk)


@pytest.fixture
def gateway(empty_gateway, local_model_server) -> Iterator[Gateway]:
    """The gateway with the real local model registered as `bin/run --local-model` does."""
    forget_health([LOCAL])
    call_command("register_local_model", "--base-url", local_model_server.base_url, stdout=StringIO())
    invalidate_routing_cache()
    yield empty_gateway
    forget_health([LOCAL])
    invalidate_routing_cache()
