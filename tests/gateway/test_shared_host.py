"""Issue 12 item 11: the shared host's in-flight cap and cool-downs hold for gateway and agent calls
together: they are the same router's, kept in Redis (routing.health), whoever calls."""

from __future__ import annotations

import threading
import time

import openai
import pytest
from django.db import connections

from routing.router import NoProviderAvailable, RouteRequest, route
from routing.table import invalidate_routing_cache
from tests.factories import provider_create
from tests.gateway.test_models_and_outages import HELLO, client
from tests.routing.conftest_router import forget_health, set_policy

HOST = "mac-mini"


@pytest.fixture
def shared_host(empty_gateway, fake_ollama):
    forget_health([HOST])
    provider_create(
        HOST,
        kind="ollama",
        base_url=fake_ollama.base_url,
        model="mistral:latest",
        max_in_flight=1,
        request_timeout_s=30,
    )
    invalidate_routing_cache()
    yield fake_ollama
    forget_health([HOST])


def chats(host) -> list:
    return [request for request in host.requests if request.path == "/api/chat"]


def agent_call() -> RouteRequest:
    return RouteRequest(messages=HELLO, agent="marcus", max_tokens=8)


def agent_run_in_thread() -> None:
    try:
        route(agent_call())
    finally:
        connections.close_all()


def test_a_gateway_call_waits_for_the_slot_an_agent_run_holds(empty_gateway, shared_host):
    shared_host.behave("ok", delay=1.0)
    agent = threading.Thread(target=agent_run_in_thread)
    agent.start()
    deadline = time.monotonic() + 5
    while not chats(shared_host) and time.monotonic() < deadline:
        time.sleep(0.01)  # the agent's call is at the host, holding its one slot

    answer = client(empty_gateway).chat.completions.create(model="mistral:latest", messages=HELLO, max_tokens=8)
    agent.join(timeout=10)

    assert answer.choices[0].message.content
    assert len(chats(shared_host)) == 2
    assert shared_host.max_in_flight == 1


def test_failures_of_agent_calls_rest_the_host_for_gateway_calls_too(empty_gateway, shared_host):
    set_policy(failures_before_cooldown=2, cooldown_seconds=60)
    invalidate_routing_cache()
    shared_host.behave("unavailable")
    for _ in range(2):
        with pytest.raises(NoProviderAvailable):
            route(agent_call())
    asked = len(chats(shared_host))

    with pytest.raises(openai.InternalServerError) as raised:
        client(empty_gateway).chat.completions.create(model="mistral:latest", messages=HELLO, max_tokens=8)

    assert "cooling down" in raised.value.message
    assert len(chats(shared_host)) == asked  # the gateway's call never reached the resting host
