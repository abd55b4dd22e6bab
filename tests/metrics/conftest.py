"""Fixtures for the metrics tests: a small provider catalogue and a ledger row factory.

`add_entry(...)` writes one LedgerEntry the way the router would (costs fixed at record time);
call `rollup_refresh()` afterwards, as the beat task would.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model

from routing.models import CallOutcome, LedgerEntry, LLMModel, Price, Provider, RoutingPolicy


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.fixture
def catalog(db) -> SimpleNamespace:
    ollama = Provider.objects.create(
        name="ollama",
        kind="ollama",
        base_url="http://ollama.test:11434",
        is_local=True,
        priority=1,
        default_model="mistral",
    )
    anthropic = Provider.objects.create(
        name="anthropic",
        kind="anthropic",
        base_url="https://api.anthropic.test",
        priority=2,
        default_model="claude-sonnet",
    )
    openai = Provider.objects.create(
        name="openai", kind="openai", base_url="https://api.openai.test", priority=3, default_model="gpt-4o"
    )
    mistral = LLMModel.objects.create(provider=ollama, name="mistral")
    sonnet = LLMModel.objects.create(provider=anthropic, name="claude-sonnet")
    gpt = LLMModel.objects.create(provider=openai, name="gpt-4o")
    since = utc(2020, 1, 1)
    Price.objects.create(model=sonnet, effective_from=since, input_per_mtok=Decimal(3), output_per_mtok=Decimal(15))
    Price.objects.create(model=gpt, effective_from=since, input_per_mtok=Decimal("2.5"), output_per_mtok=Decimal(10))
    policy = RoutingPolicy.get()
    policy.baseline_model = sonnet
    policy.target_local_share = Decimal(85)
    policy.save()
    users = get_user_model().objects
    return SimpleNamespace(
        ollama=ollama,
        anthropic=anthropic,
        openai=openai,
        alice=users.create_user("alice", "alice@example.com"),
        bob=users.create_user("bob", "bob@example.com"),
        mistral=mistral,
        sonnet=sonnet,
        gpt=gpt,
    )


@pytest.fixture
def add_entry(catalog):
    """Write one ledger row; defaults are a successful local call by alice for agent marcus."""

    def add(**fields) -> LedgerEntry:
        provider = fields.pop("provider", catalog.ollama)
        values = {
            "created_at": utc(2026, 3, 10, 12),
            "provider": provider,
            "model_name": provider.default_model,
            "is_local": provider.is_local,
            "outcome": CallOutcome.SUCCESS,
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "latency_ms": 1000,
            "cost_usd": Decimal(0),
            "baseline_cost_usd": Decimal(0),
            "agent": "marcus",
            "user": catalog.alice,
        }
        values.update(fields)
        return LedgerEntry.objects.create(**values)

    return add
