"""The ledger: one row per attempt, with the tokens, time and money a user reads in reports."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from routing.models import CallOutcome, LedgerEntry, LLMModel, Price
from routing.router import route
from tests.fakes.openai import FakeOpenAI
from tests.routing.conftest_router import (  # noqa: F401
    add_price,
    ask,
    fresh_routing,
    make_provider,
    set_baseline,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_routing")]


@pytest.fixture
def baseline() -> LLMModel:
    """A cloud model never called here, whose price savings are measured against: $3 in / $15 out."""
    claude = make_provider(
        "claude", kind="anthropic", base_url="http://127.0.0.1:9", model="claude-sonnet", is_local=False, priority=9,
        price=("3", "15"), api_key_env="SWITCHYARD_TEST_UNSET_KEY",
    )  # fmt: skip
    set_baseline(claude, "claude-sonnet")
    return claude.models.get()


def test_it_records_a_local_success_with_the_servers_counts_zero_cost_and_the_baseline(fake_ollama, baseline) -> None:
    fake_ollama.behave("ok", delay=0.05)
    make_provider("ollama", kind="ollama", base_url=fake_ollama.base_url, model="mistral:latest")
    user = get_user_model().objects.create_user("dana")
    request = ask("Write a FastAPI endpoint.", agent="marcus", user_id=user.pk, run_id=42)

    result = route(request)

    entry = LedgerEntry.objects.get()
    assert result.entry == entry
    prompt, completion = fake_ollama.prompt_tokens(request.messages), fake_ollama.completion_tokens()
    assert (entry.prompt_tokens, entry.completion_tokens, entry.tokens_estimated) == (prompt, completion, False)
    assert (entry.provider.name, entry.model_name, entry.is_local) == ("ollama", "mistral:latest", True)
    assert (entry.outcome, entry.error, entry.attempt) == (CallOutcome.SUCCESS, "", 1)
    assert (entry.agent, entry.user, entry.run_id) == ("marcus", user, 42)
    assert entry.latency_ms >= 50
    assert entry.ttft_ms is None
    assert entry.cost_usd == Decimal(0)
    assert entry.price == Price.objects.get(model__provider__name="ollama")
    assert entry.baseline_price == baseline.prices.get()
    assert entry.baseline_cost_usd == (Decimal(prompt) * 3 + Decimal(completion) * 15) / 1_000_000


def test_it_records_a_failed_attempt_with_its_error_and_no_tokens(fake_server, baseline) -> None:
    down, spare = fake_server("openai_compatible"), fake_server("openai_compatible")
    down.behave("server_error")
    make_provider("down", base_url=down.base_url, model="gpt-4o-mini", price=("1", "2"))
    make_provider("spare", base_url=spare.base_url, model="gpt-4o-mini", priority=2)

    route(ask())

    failed = LedgerEntry.objects.get(provider__name="down")
    assert (failed.outcome, failed.attempt, failed.is_local) == (CallOutcome.TRANSIENT, 1, True)
    assert failed.error.startswith("500 ")
    assert (failed.prompt_tokens, failed.completion_tokens) == (0, 0)
    assert (failed.cost_usd, failed.baseline_cost_usd) == (Decimal(0), Decimal(0))
    assert failed.reason == "priority 1, local"


def test_it_leaves_the_cost_empty_when_no_price_is_in_force(fake_openai, baseline) -> None:
    make_provider("unpriced", base_url=fake_openai.base_url, model="gpt-4o-mini", is_local=False, price=None)

    route(ask())

    entry = LedgerEntry.objects.get()
    assert (entry.price, entry.cost_usd) == (None, None)
    assert entry.baseline_cost_usd > 0


def test_it_leaves_the_baseline_empty_without_a_baseline_model(fake_openai) -> None:
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini")

    route(ask())

    entry = LedgerEntry.objects.get()
    assert (entry.baseline_price, entry.baseline_cost_usd) == (None, None)
    assert entry.cost_usd == Decimal(0)


def test_it_charges_the_price_in_force_when_the_call_starts(fake_openai) -> None:
    provider = make_provider(
        "cloud", base_url=fake_openai.base_url, model="gpt-4o-mini", is_local=False, price=("1", "1")
    )
    model = provider.models.get()
    now = timezone.now()
    current = add_price(model, now - timedelta(minutes=1), "2", "4")
    add_price(model, now + timedelta(days=1), "100", "100")  # announced, not yet in force

    first = route(ask()).entry

    assert first.price == current
    assert first.cost_usd == (Decimal(first.prompt_tokens) * 2 + Decimal(first.completion_tokens) * 4) / 1_000_000

    cheaper = add_price(model, timezone.now(), "0.5", "0.5")
    second = route(ask()).entry

    assert second.price == cheaper
    first.refresh_from_db()
    assert first.price == current  # a later price never rewrites history


def test_it_estimates_and_flags_tokens_when_the_server_reports_no_usage(fake_openai, monkeypatch) -> None:
    monkeypatch.setattr(FakeOpenAI, "_usage", lambda self, messages: None)  # like some OpenAI-compatible servers
    fake_openai.reply = "It is about ten tokens, by the rule of thumb."  # 45 characters
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini")

    route(ask("How many tokens is this?"))  # 24 characters, one message

    entry = LedgerEntry.objects.get()
    assert entry.tokens_estimated is True
    assert entry.prompt_tokens == 10  # 24 characters at 4 a token, plus 4 for the message
    assert entry.completion_tokens == 12  # 45 characters at 4 a token, rounded up
