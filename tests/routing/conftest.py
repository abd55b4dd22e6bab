"""Fixtures for routing tests: users, and the three providers of the sprint report (with models and prices).

Plain ORM rows, so any test (agents' too: tests/agents/conftest.py re-exports them) can start from
the shape a team actually runs: the local Ollama host first, then Claude, then OpenAI.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from routing.models import LLMModel, Price, Provider, ProviderKind

PRICES_FROM = datetime.fromisoformat("2025-01-01T00:00:00+00:00")
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("dana", email="dana@example.org", password=PASSWORD)


@pytest.fixture
def staff_user(db):
    """A staff member with every permission: what an operator uses to run the admin."""
    return get_user_model().objects.create_superuser("olivia", email="olivia@example.org", password=PASSWORD)


def _provider(
    name: str,
    *,
    kind: str,
    base_url: str,
    is_local: bool,
    priority: int,
    model: str,
    context_window: int,
    price: tuple[str, str],
    api_key_env: str = "",
    capabilities: tuple[str, ...] = ("code_generation", "testing", "documentation"),
    max_in_flight: int | None = None,
) -> Provider:
    provider = Provider.objects.create(
        name=name,
        kind=kind,
        base_url=base_url,
        is_local=is_local,
        priority=priority,
        default_model=model,
        api_key_env=api_key_env,
        capabilities=list(capabilities),
        max_in_flight=max_in_flight,
    )
    llm = LLMModel.objects.create(
        provider=provider, name=model, context_window=context_window, capabilities=list(capabilities)
    )
    Price.objects.create(
        model=llm, effective_from=PRICES_FROM, input_per_mtok=Decimal(price[0]), output_per_mtok=Decimal(price[1])
    )
    return provider


@pytest.fixture
def providers(db) -> dict[str, Provider]:
    """ollama (local, priority 1, free), anthropic (2) and openai (3), each with one model and one price."""
    return {
        "ollama": _provider(
            "ollama",
            kind=ProviderKind.OLLAMA,
            base_url="http://127.0.0.1:11434",
            is_local=True,
            priority=1,
            model="mistral:latest",
            context_window=32768,
            price=("0", "0"),
            max_in_flight=2,
        ),
        "anthropic": _provider(
            "anthropic",
            kind=ProviderKind.ANTHROPIC,
            base_url="https://api.anthropic.com",
            is_local=False,
            priority=2,
            model="claude-sonnet-4-5",
            context_window=200000,
            price=("3", "15"),
            api_key_env="ANTHROPIC_API_KEY",
        ),
        "openai": _provider(
            "openai",
            kind=ProviderKind.OPENAI,
            base_url="https://api.openai.com",
            is_local=False,
            priority=3,
            model="gpt-4o",
            context_window=128000,
            price=("2.5", "10"),
            api_key_env="OPENAI_API_KEY",
        ),
    }
