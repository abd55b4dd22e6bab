"""Fixtures for the metrics tests: a small provider catalogue (tests/factories.py) and a ledger row factory.

`add_entry(...)` writes one LedgerEntry the way the router would (costs fixed at record time);
call `rollup_refresh()` afterwards, as the beat task would.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace

import pytest

from routing.models import CallOutcome, LedgerEntry, RoutingPolicy
from tests.factories import provider_create, user_create


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.fixture
def catalog(db) -> SimpleNamespace:
    """Ollama (local, unpriced), Claude Sonnet (the baseline) and GPT-4o, and two users."""
    ollama = provider_create("ollama", kind="ollama", base_url="http://ollama.test:11434", model="mistral", price=None)
    anthropic = provider_create(
        "anthropic",
        kind="anthropic",
        base_url="https://api.anthropic.test",
        is_local=False,
        priority=2,
        model="claude-sonnet",
        price=("3", "15"),
    )
    openai = provider_create(
        "openai",
        kind="openai",
        base_url="https://api.openai.test",
        is_local=False,
        priority=3,
        model="gpt-4o",
        price=("2.5", "10"),
    )
    sonnet = anthropic.models.get()
    policy = RoutingPolicy.get()
    policy.baseline_model = sonnet
    policy.target_local_share = Decimal(85)
    policy.save()
    return SimpleNamespace(
        ollama=ollama,
        anthropic=anthropic,
        openai=openai,
        alice=user_create("alice", email="alice@example.com"),
        bob=user_create("bob", email="bob@example.com"),
        mistral=ollama.models.get(),
        sonnet=sonnet,
        gpt=openai.models.get(),
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
