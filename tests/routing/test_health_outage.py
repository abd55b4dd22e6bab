"""Provider health when Redis fails: slots, cool-downs and the routing table's version check degrade
and never fail a call, least of all one whose answer has arrived; and Retry-After in the cool-down.

The cache is pointed at a throw-away redis-server (tests/redis_server.py) that the test kills or
pauses; the shared Redis other tests use is never touched.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from routing import health
from routing.models import CallOutcome, LedgerEntry
from routing.router import RouteResult, route
from routing.table import current_table
from tests.fakes.replay import ReplayServer
from tests.redis_server import throwaway_redis
from tests.routing.conftest_router import ask, fresh_routing, make_provider, set_policy

__all__ = ["fresh_routing", "throwaway_redis"]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_routing")]


@pytest.fixture
def cache_on_throwaway_redis(fresh_routing, throwaway_redis):
    """The Django cache on the throw-away Redis, with the project's socket timeouts; back on the
    shared one before `fresh_routing` cleans up."""
    with override_settings(CACHES={"default": {**settings.CACHES["default"], "LOCATION": throwaway_redis.url}}):
        yield throwaway_redis
    health.shared.down_until = 0.0  # the next test starts with the cache trusted again


def in_threads(count: int, call) -> list[RouteResult | Exception]:
    results: list[RouteResult | Exception] = []

    def worker() -> None:
        try:
            results.append(call())
        except Exception as error:  # handed back to the test
            results.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_a_call_keeps_its_answer_when_redis_dies_during_it(cache_on_throwaway_redis, fake_openai) -> None:
    make_provider("mac-mini", base_url=fake_openai.base_url, model="gpt-4o-mini", max_in_flight=1)
    fake_openai.behave("ok", delay=1.0)
    threading.Timer(0.4, cache_on_throwaway_redis.stop).start()  # the slot is held by then

    result = route(ask())

    assert result.provider == "mac-mini"
    assert result.completion.text == fake_openai.reply
    assert LedgerEntry.objects.get().outcome == CallOutcome.SUCCESS


def test_slots_are_limited_per_process_while_redis_is_down(cache_on_throwaway_redis, fake_openai) -> None:
    make_provider("mac-mini", base_url=fake_openai.base_url, model="gpt-4o-mini", max_in_flight=1)
    set_policy(slot_wait_seconds=10)
    current_table()
    cache_on_throwaway_redis.stop()
    fake_openai.behave("ok", delay=0.5)

    results = in_threads(2, lambda: route(ask()))

    assert [getattr(result, "provider", result) for result in results] == ["mac-mini", "mac-mini"]
    assert fake_openai.max_in_flight == 1  # one after the other: the limit still holds in this process


def test_the_routing_table_is_kept_while_redis_is_down(cache_on_throwaway_redis, fake_openai) -> None:
    make_provider("mac-mini", base_url=fake_openai.base_url, model="gpt-4o-mini")
    table = current_table()
    cache_on_throwaway_redis.stop()

    assert current_table() is table


def test_a_hung_redis_delays_a_call_by_seconds_not_forever(cache_on_throwaway_redis, fake_openai) -> None:
    make_provider("mac-mini", base_url=fake_openai.base_url, model="gpt-4o-mini", max_in_flight=1)
    current_table()
    cache_on_throwaway_redis.pause()
    started = time.monotonic()
    try:
        [result] = in_threads(1, lambda: route(ask()))
    finally:
        cache_on_throwaway_redis.resume()

    assert getattr(result, "provider", result) == "mac-mini"
    assert time.monotonic() - started < 10  # a socket timeout or two, then no cache for a while


def test_a_429_with_retry_after_cools_the_provider_for_at_least_that_long(fake_openai) -> None:
    set_policy(failures_before_cooldown=3, cooldown_seconds=5)
    body = {
        "error": {"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit_exceeded"}
    }
    with ReplayServer(
        status=429, pieces=[json.dumps(body).encode()], headers={"retry-after": "30"}, chunked=False
    ) as limited:
        make_provider("limited", base_url=limited.url, model="gpt-4o-mini", priority=1)
        make_provider("spare", base_url=fake_openai.base_url, model="gpt-4o-mini", priority=2)
        started = time.time()

        first = route(ask())
        second = route(ask())

    assert (first.provider, second.provider) == ("spare", "spare")
    assert limited.requests == 1  # the second request did not knock again
    cooling = health.cooldowns(["limited"])["limited"]
    assert cooling.until >= started + 30
