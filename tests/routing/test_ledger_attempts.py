"""Every attempt is in the ledger from before its call: started, then completed; keyed per attempt;
cached tokens priced; how the call ended recorded. The router, the fakes and PostgreSQL are real."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from routing import health
from routing.ledger import Attempt, attempt_complete, attempt_start, attempts_mark_unknown
from routing.models import CallOutcome, LedgerEntry, Price
from routing.plan import Candidate
from routing.providers.base import TransientError
from routing.router import RouteResult, Superseded, route
from routing.selectors import provider_status
from routing.table import current_table
from tests.routing.conftest_router import EPOCH, ask, fresh_routing, make_provider, set_baseline

__all__ = ["fresh_routing"]

pytestmark = pytest.mark.usefixtures("fresh_routing")

# Anthropic's prompt-caching example (docs.anthropic.com, "Prompt caching"): the first request
# writes a 188,086-token book to the cache.
CACHING_EXAMPLE_USAGE = {
    "input_tokens": 21,
    "cache_creation_input_tokens": 188086,
    "cache_read_input_tokens": 0,
    "output_tokens": 393,
}


def sonnet(base_url: str, monkeypatch: pytest.MonkeyPatch):
    """claude-sonnet-4-5 at its prices: $3 in, $15 out, $3.75 cache write, $0.30 cache read per M tokens."""
    monkeypatch.setenv("SWITCHYARD_TEST_ANTHROPIC_KEY", "sk-ant-test")
    provider = make_provider(
        "anthropic", kind="anthropic", base_url=base_url, model="claude-sonnet-4-5", is_local=False,
        price=None, api_key_env="SWITCHYARD_TEST_ANTHROPIC_KEY",
    )  # fmt: skip
    Price.objects.create(
        model=provider.models.get(),
        effective_from=EPOCH,
        input_per_mtok=Decimal(3),
        output_per_mtok=Decimal(15),
        cache_write_per_mtok=Decimal("3.75"),
        cache_read_per_mtok=Decimal("0.30"),
    )
    return provider


def attempt_for(provider, *, key: str = "route:test", run_id: int | None = None) -> Attempt:
    table = current_table()
    info = table.by_name[provider.name]
    return Attempt(
        table=table,
        candidate=Candidate(info, provider.default_model, "test"),
        number=1,
        reason="test",
        started=timezone.now(),
        run_id=run_id,
        key=key,
    )


# -- started, then completed ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_attempt_is_in_the_ledger_as_started_while_the_call_runs(fake_openai):
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", price=("1", "2"))
    fake_openai.behave("ok", delay=1.0)
    request = ask("one two three four five six")  # 27 characters: 7 tokens, and 4 for the message
    results: list[RouteResult] = []

    def call() -> None:
        try:
            results.append(route(request))
        finally:
            connection.close()

    caller = threading.Thread(target=call)
    caller.start()
    try:
        deadline = time.monotonic() + 5
        while not fake_openai.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        started = LedgerEntry.objects.get()
        assert (started.outcome, started.tokens_estimated, started.completion_tokens) == (
            CallOutcome.STARTED,
            True,
            0,
        )
        assert started.prompt_tokens == 11
        assert started.cost_usd == Decimal("0.0000110000")  # 11 tokens at $1 / M: priced, not missing
    finally:
        caller.join(timeout=10)
    done = LedgerEntry.objects.get()
    assert (done.pk, done.outcome, done.tokens_estimated) == (started.pk, CallOutcome.SUCCESS, False)
    assert done.idempotency_key.startswith("route:") and done.idempotency_key.endswith(":attempt:1")


@pytest.mark.django_db
def test_writing_the_same_attempt_twice_keeps_one_row_and_charges_it_once(fake_openai):
    provider = make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", price=("1", "2"))
    attempt = attempt_for(provider, key="run:7:claim:abc")
    messages = [{"role": "user", "content": "hello"}]

    first = attempt_start(attempt=attempt, messages=messages)
    again = attempt_start(attempt=attempt, messages=messages)  # a retried write of the same attempt

    assert again.pk == first.pk
    assert LedgerEntry.objects.get().idempotency_key == "run:7:claim:abc:attempt:1"
    failed = attempt.failure_entry(TransientError("503 busy"), latency_ms=5)
    failed.pk = first.pk
    assert attempt_complete(entry=failed) is True
    assert attempt_complete(entry=failed) is False  # completed already: nothing written twice
    assert LedgerEntry.objects.get().outcome == CallOutcome.TRANSIENT


@pytest.mark.django_db
def test_a_started_attempt_whose_caller_is_gone_becomes_an_unknown_outcome_with_its_estimated_cost(fake_openai):
    provider = make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", price=("1", "2"))
    messages = [{"role": "user", "content": "one two three four five six"}]
    lost = attempt_start(attempt=attempt_for(provider, key="run:7:claim:old", run_id=7), messages=messages)
    other_run = attempt_start(attempt=attempt_for(provider, key="run:8:claim:x", run_id=8), messages=messages)

    assert attempts_mark_unknown(run_id=7) == 1

    lost.refresh_from_db()
    assert (lost.outcome, lost.prompt_tokens, lost.completion_tokens, lost.tokens_estimated) == (
        CallOutcome.UNKNOWN,
        11,
        0,
        True,
    )
    assert (lost.cost_usd, lost.baseline_cost_usd) == (Decimal("0.0000110000"), None)  # no savings booked
    assert LedgerEntry.objects.get(pk=other_run.pk).outcome == CallOutcome.STARTED


@pytest.mark.django_db
def test_a_started_attempt_older_than_any_call_can_last_becomes_unknown(fake_openai):
    provider = make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini")
    row = attempt_start(attempt=attempt_for(provider), messages=[{"role": "user", "content": "hi"}])

    assert attempts_mark_unknown(started_before=row.created_at) == 0
    assert attempts_mark_unknown(started_before=row.created_at + timedelta(seconds=1)) == 1
    assert LedgerEntry.objects.get().outcome == CallOutcome.UNKNOWN


@pytest.mark.django_db
def test_a_provider_whose_last_row_is_in_flight_or_unknown_keeps_the_status_of_its_last_finished_call(fake_openai):
    provider = make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini")
    route(ask())
    attempt_start(attempt=attempt_for(provider, key="route:b"), messages=[{"role": "user", "content": "hi"}])
    attempts_mark_unknown(started_before=timezone.now() + timedelta(seconds=1))
    attempt_start(attempt=attempt_for(provider, key="route:c"), messages=[{"role": "user", "content": "hi"}])

    status = provider_status(provider=provider)

    assert (status.status, status.detail) == ("up", "")


# -- fencing: a caller that lost the request -------------------------------------------------


@pytest.mark.django_db
def test_a_caller_that_lost_the_request_makes_no_call(fake_openai):
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini")

    with pytest.raises(Superseded):
        route(ask(still_owned=lambda: False))

    assert fake_openai.requests == []
    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
def test_a_success_that_arrives_after_the_caller_lost_the_request_is_not_charged(fake_openai):
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini")
    owned = iter([True, False])  # held before the call; lost by the time the answer came

    route(ask(still_owned=lambda: next(owned)))

    assert LedgerEntry.objects.get().outcome == CallOutcome.STARTED  # the new owner marks it unknown


# -- cached tokens -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_anthropics_caching_example_is_charged_what_anthropic_bills(fake_anthropic, monkeypatch):
    sonnet(fake_anthropic.base_url, monkeypatch)
    fake_anthropic.models = ["claude-sonnet-4-5"]
    fake_anthropic.usage = CACHING_EXAMPLE_USAGE

    route(ask())

    entry = LedgerEntry.objects.get()
    assert (entry.prompt_tokens, entry.cache_write_tokens, entry.cache_read_tokens, entry.completion_tokens) == (
        188107,
        188086,
        0,
        393,
    )
    # 21 x $3 + 188,086 x $3.75 + 393 x $15 per million tokens (Anthropic bills $0.711280).
    assert entry.cost_usd == Decimal("0.7112805000")


@pytest.mark.django_db
def test_anthropics_caching_example_streamed_is_charged_the_same(fake_anthropic, monkeypatch):
    sonnet(fake_anthropic.base_url, monkeypatch)
    fake_anthropic.models = ["claude-sonnet-4-5"]
    fake_anthropic.usage = CACHING_EXAMPLE_USAGE

    route(ask(stream=True))

    assert LedgerEntry.objects.get().cost_usd == Decimal("0.7112805000")


@pytest.mark.django_db
def test_openai_cached_tokens_are_charged_at_the_cache_read_price_and_the_baseline_at_its_own(fake_openai):
    provider = make_provider(
        "openai", kind="openai_compatible", base_url=fake_openai.base_url, model="gpt-4o", price=None
    )
    Price.objects.create(
        model=provider.models.get(),
        effective_from=EPOCH,
        input_per_mtok=Decimal("2.50"),
        output_per_mtok=Decimal(10),
        cache_read_per_mtok=Decimal("1.25"),
    )
    set_baseline(provider, "gpt-4o")
    fake_openai.usage = {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920},
    }

    route(ask())

    entry = LedgerEntry.objects.get()
    assert (entry.prompt_tokens, entry.cache_read_tokens, entry.cache_write_tokens) == (2006, 1920, 0)
    # 86 uncached x $2.50 + 1,920 cached x $1.25 + 300 x $10 per million tokens.
    assert entry.cost_usd == entry.baseline_cost_usd == Decimal("0.0056150000")


# -- how the call ended ------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_truncated_answer_is_a_success_that_records_why_it_stopped(fake_openai):
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini")
    fake_openai.finish_reason = "length"

    result = route(ask())

    assert result.completion.truncated
    entry = LedgerEntry.objects.get()
    assert (entry.outcome, entry.finish_reason) == (CallOutcome.SUCCESS, "length")


@pytest.mark.django_db
def test_a_cloud_success_during_a_local_cool_down_says_the_local_provider_was_skipped_and_why(fake_openai):
    make_provider("local", base_url="http://127.0.0.1:9", priority=1)
    make_provider("cloud", base_url=fake_openai.base_url, model="gpt-4o-mini", is_local=False, priority=2)
    health.record_transient_failure("local", failures_before_cooldown=1, cooldown_seconds=60)

    route(ask())

    entry = LedgerEntry.objects.get()
    assert entry.provider.name == "cloud"
    assert entry.reason.startswith(
        "priority 2, cloud; local skipped: local: cooling down for 60 s more after 1 transient failures"
    )
