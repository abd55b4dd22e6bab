"""Cancelling a routed request: no call after the cancel, a stream in progress closed, the cut
attempt recorded as cancelled (never a success), and streamed calls that keep their connection.

The upstreams are the protocol fakes on loopback; slots and cool-downs live in the shared Redis cache.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from routing import health
from routing.models import CallOutcome, LedgerEntry
from routing.router import RouteCancelled, route
from routing.selectors import ProviderState, provider_statuses
from routing.tokens import estimate_text_tokens
from tests.routing.conftest_router import ask, fresh_routing, make_provider, set_policy

__all__ = ["fresh_routing"]

pytestmark = pytest.mark.usefixtures("fresh_routing")

LONG_REPLY = " ".join(f"word{index}" for index in range(200))  # 200 chunks: ~10 s at 50 ms each
MODELS = {"ollama": "mistral:latest", "openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest"}


def provider_on(fake, kind: str, monkeypatch, **fields):
    if kind == "anthropic":
        monkeypatch.setenv("SWITCHYARD_TEST_ANTHROPIC_KEY", "sk-ant-test")
        fields["api_key_env"] = "SWITCHYARD_TEST_ANTHROPIC_KEY"
    if kind == "openai":
        monkeypatch.setenv("SWITCHYARD_TEST_OPENAI_KEY", "sk-test-1234567890")
        fields["api_key_env"] = "SWITCHYARD_TEST_OPENAI_KEY"
    return make_provider(f"{kind}-host", base_url=fake.base_url, kind=kind, model=MODELS[kind], **fields)


def wait_for(predicate, *, timeout_s: float) -> float:
    """Seconds until `predicate()` held; fails the test after `timeout_s`."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s:g} s"
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.mark.django_db
def test_it_makes_no_further_attempt_once_the_request_is_cancelled(fake_server) -> None:
    first, second = fake_server("openai_compatible"), fake_server("openai_compatible")
    first.behave("server_error")
    make_provider("first", base_url=first.base_url, model="gpt-4o-mini", priority=1)
    make_provider("second", base_url=second.base_url, model="gpt-4o-mini", priority=2)

    # The user cancels while the first attempt is failing.
    with pytest.raises(RouteCancelled) as cancelled:
        route(ask(cancelled=lambda: len(first.requests) > 0))

    assert len(first.requests) == 1
    assert second.requests == []
    assert [entry.outcome for entry in cancelled.value.attempts] == [CallOutcome.TRANSIENT]
    assert LedgerEntry.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_stops_waiting_for_a_slot_when_the_request_is_cancelled(fake_server) -> None:
    upstream = fake_server("openai_compatible")
    make_provider("mac-mini", base_url=upstream.base_url, model="gpt-4o-mini", max_in_flight=1)
    set_policy(slot_wait_seconds=30)
    held = health.try_take_slot("mac-mini", limit=1)  # another call has the only slot
    cancel = threading.Event()
    outcome: list[BaseException | object] = []

    def call() -> None:
        try:
            outcome.append(route(ask(cancelled=cancel.is_set)))
        except BaseException as error:  # handed back to the test
            outcome.append(error)
        finally:
            connection.close()

    worker = threading.Thread(target=call)
    worker.start()
    time.sleep(0.5)  # it is waiting for the slot now
    cancel.set()
    worker.join(timeout=2)
    health.release_slot(held)
    time.sleep(0.5)  # were it still waiting, it would take the freed slot and call now

    assert not worker.is_alive()
    [error] = outcome
    assert isinstance(error, RouteCancelled)
    assert str(error) == "cancelled while waiting for a slot"
    assert upstream.requests == []
    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["ollama", "openai", "anthropic"])
def test_it_closes_the_stream_and_records_a_cancelled_attempt_when_cancelled_mid_call(
    kind, fake_server, monkeypatch
) -> None:
    upstream = fake_server(kind)
    upstream.reply = LONG_REPLY
    upstream.behave("ok", chunk_delay=0.05)
    provider_on(upstream, kind, monkeypatch, price=("1", "2"))
    seen: list[str] = []

    with pytest.raises(RouteCancelled) as cancelled:
        route(ask(stream=True, on_text=seen.append, cancelled=lambda: len(seen) >= 3))

    # The upstream sees its client go away at its next write, not after the 200 words.
    closed_in = wait_for(lambda: upstream.in_flight == 0, timeout_s=1.0)
    assert closed_in < 1.0
    assert seen == ["word0", "word0 word1", "word0 word1 word2"]
    [entry] = LedgerEntry.objects.all()
    assert cancelled.value.attempts == [entry]
    assert entry.outcome == CallOutcome.CANCELLED
    assert entry.error == "cancelled by the caller mid-stream (17 characters received)"
    assert (entry.completion_tokens, entry.tokens_estimated) == (estimate_text_tokens("word0 word1 word2"), True)
    assert entry.baseline_cost_usd is None  # a cancelled call saves nothing
    assert entry.cost_usd > 0  # but what it generated until the cut is paid for


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["ollama", "openai", "anthropic"])
def test_it_reuses_the_connection_after_a_streamed_call(kind, fake_server, monkeypatch) -> None:
    upstream = fake_server(kind)
    provider_on(upstream, kind, monkeypatch)

    first = route(ask(stream=True))
    second = route(ask(stream=True))

    assert first.completion.text == second.completion.text == upstream.reply
    calls = [request for request in upstream.requests if request.method == "POST"]
    assert len(calls) == 2
    assert calls[0].client_port == calls[1].client_port


@pytest.mark.django_db
def test_a_cancelled_call_does_not_make_its_provider_look_down(fake_server) -> None:
    upstream = fake_server("openai_compatible")
    upstream.reply = LONG_REPLY
    upstream.behave("ok", chunk_delay=0.01)
    make_provider("mac-mini", base_url=upstream.base_url, model="gpt-4o-mini")
    route(ask(stream=True))
    seen: list[str] = []
    with pytest.raises(RouteCancelled):
        route(ask(stream=True, on_text=seen.append, cancelled=lambda: len(seen) >= 2))

    [status] = provider_statuses()

    assert (status.status, status.detail) == (ProviderState.UP, "")
