"""In-flight limits: a provider allowing N requests at once gets at most N, across all workers.

Two threads stand in for two Celery workers: each has its own database connection, and the
slots live in the shared Redis cache exactly as they do between worker processes.
"""

import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection

from routing import health
from routing.models import LedgerEntry
from routing.router import NoProviderAvailable, RouteResult, route
from tests.routing.conftest_router import (  # noqa: F401
    ask,
    forget_health,
    fresh_routing,
    make_provider,
    make_rule,
    set_policy,
)

# Threads need committed rows: these tests run outside a test transaction (slower, so only these).
committed_rows = pytest.mark.django_db(transaction=True)


def two_workers_at_once(call: Callable[[], RouteResult]) -> list[RouteResult | Exception]:
    start = threading.Barrier(2)
    results: list[RouteResult | Exception] = []

    def worker() -> None:
        try:
            start.wait()
            results.append(call())
        except Exception as error:  # handed back to the test
            results.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.fixture
def one_at_a_time(fake_server):
    shared = fake_server("openai_compatible")
    shared.behave("ok", delay=0.6)
    make_provider("mac-mini", base_url=shared.base_url, model="gpt-4o-mini", max_in_flight=1, priority=1)
    return shared


@committed_rows
@pytest.mark.usefixtures("fresh_routing")
def test_it_makes_the_second_worker_wait_for_the_slot(one_at_a_time) -> None:
    set_policy(slot_wait_seconds=10)
    started = time.monotonic()

    results = two_workers_at_once(lambda: route(ask()))

    assert [result.provider for result in results] == ["mac-mini", "mac-mini"]
    assert one_at_a_time.max_in_flight == 1
    assert time.monotonic() - started >= 1.2  # one after the other


@committed_rows
@pytest.mark.usefixtures("fresh_routing")
def test_it_falls_back_when_no_slot_frees_up_in_time(one_at_a_time, fake_server) -> None:
    cloud = fake_server("openai_compatible")
    make_provider("cloud", base_url=cloud.base_url, model="gpt-4o-mini", is_local=False, priority=2)
    set_policy(slot_wait_seconds=0.2)

    results = two_workers_at_once(lambda: route(ask()))

    assert sorted(result.provider for result in results) == ["cloud", "mac-mini"]
    assert one_at_a_time.max_in_flight == 1
    fallback = LedgerEntry.objects.get(provider__name="cloud")
    assert fallback.reason == "fallback: mac-mini busy: all 1 slots in use for 0.2 s; priority 2, cloud"
    assert fallback.attempt == 1  # waiting for a slot is not an attempt: nothing was called


@committed_rows
@pytest.mark.usefixtures("fresh_routing")
def test_it_fails_clearly_when_busy_and_the_rule_keeps_it_local(one_at_a_time, fake_server) -> None:
    cloud = fake_server("openai_compatible")
    make_provider("cloud", base_url=cloud.base_url, model="gpt-4o-mini", is_local=False, priority=2)
    make_rule("private", allow_cloud=False)
    set_policy(slot_wait_seconds=0.2)

    results = two_workers_at_once(lambda: route(ask()))

    [failed] = [result for result in results if isinstance(result, NoProviderAvailable)]
    assert "mac-mini: mac-mini busy: all 1 slots in use for 0.2 s" in failed.reason
    assert "cloud: cloud not allowed by rule private" in failed.reason
    assert cloud.requests == []


@committed_rows
@pytest.mark.usefixtures("fresh_routing")
def test_it_frees_the_slot_when_the_call_fails(fake_server) -> None:
    failing = fake_server("openai_compatible")
    failing.behave("server_error")
    make_provider("mac-mini", base_url=failing.base_url, model="gpt-4o-mini", max_in_flight=1)

    with pytest.raises(NoProviderAvailable):
        route(ask())

    assert health.try_take_slot("mac-mini", limit=1) is not None


@pytest.fixture
def short_slots(monkeypatch):
    """Slot keys that live 1 s unless renewed, on a provider name no other test uses."""
    monkeypatch.setattr(health, "SLOT_TTL_S", 1)
    forget_health(["ghost"])
    yield
    forget_health(["ghost"])


@pytest.mark.usefixtures("short_slots")
def test_a_dead_workers_slot_frees_itself() -> None:
    assert health.try_take_slot("ghost", limit=1) is not None  # and the worker dies holding it
    assert health.try_take_slot("ghost", limit=1) is None

    time.sleep(1.1)

    assert health.try_take_slot("ghost", limit=1) is not None


@pytest.mark.usefixtures("short_slots")
def test_a_live_calls_slot_is_renewed_past_its_lease(monkeypatch) -> None:
    monkeypatch.setattr(health, "SLOT_RENEW_TICK_S", 0.05)
    with health.slot("ghost", limit=1, hold_s=5, wait_s=0):
        for _ in range(5):  # 2.5 s: the key alone would have expired after 1 s
            time.sleep(0.5)
            assert health.try_take_slot("ghost", limit=1) is None

    assert health.try_take_slot("ghost", limit=1) is not None


@pytest.mark.usefixtures("short_slots")
def test_it_does_not_release_a_slot_someone_else_holds_now() -> None:
    expired = health.try_take_slot("ghost", limit=1)
    time.sleep(1.1)
    current = health.try_take_slot("ghost", limit=1)

    health.release_slot(expired)

    assert current is not None
    assert health.try_take_slot("ghost", limit=1) is None


@committed_rows
@pytest.mark.usefixtures("fresh_routing")
def test_a_timed_out_call_keeps_its_slot_until_the_server_lets_go_of_the_request(fake_ollama) -> None:
    make_provider(
        "ollama-box",
        kind="ollama",
        base_url=fake_ollama.base_url,
        model="mistral:latest",
        max_in_flight=2,
        request_timeout_s=0.5,
    )
    set_policy(slot_wait_seconds=10, cooldown_seconds=0)
    route(ask())  # the host's model list is known from here: only chat requests reach it
    fake_ollama.reset()
    fake_ollama.reply = " ".join(["word"] * 30)
    fake_ollama.behave("ok", chunk_delay=0.05)  # 1.5 s of stream: the client gives up after 0.5 s
    results: list[RouteResult | Exception] = []

    def worker() -> None:
        try:
            for _ in range(2):
                try:
                    results.append(route(ask(stream=True)))
                except NoProviderAvailable as error:
                    results.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    timed_out = f"Ollama at {fake_ollama.base_url} timed out after 0.5 s"
    assert [str(result) for result in results] == [
        f"no provider could take the request: ollama-box: {timed_out} (transient)"
    ] * 8
    assert fake_ollama.max_in_flight == 2  # the server was still streaming to the clients that gave up


@committed_rows
@pytest.mark.usefixtures("fresh_routing")
def test_a_providers_own_slot_wait_overrides_the_policys(fake_server) -> None:
    # The demo model: another agent's run holds the one slot for longer than the policy's wait,
    # and there is nowhere else to go, so the call waits for the slot rather than failing.
    shared = fake_server("openai_compatible")
    shared.behave("ok", delay=0.6)
    provider = make_provider("mac-mini", base_url=shared.base_url, model="gpt-4o-mini", max_in_flight=1)
    provider.slot_wait_s = 10
    provider.save()
    set_policy(slot_wait_seconds=0.2)

    results = two_workers_at_once(lambda: route(ask()))

    assert [getattr(result, "provider", result) for result in results] == ["mac-mini", "mac-mini"]
    assert shared.max_in_flight == 1
