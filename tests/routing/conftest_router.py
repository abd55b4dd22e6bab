"""Fixtures and builders for the router's tests (imported by those test files).

Each test starts with a fresh routing table in this process and no health state (failure
counts, cool-downs, slots) for the providers it names, so tests never see each other's state
through the shared Redis cache. Only our own keys are deleted: the cache may share a Redis
database with the Celery broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import pytest
from django.core.cache import cache

from routing import health, router
from routing.models import LLMModel, Price, Provider, RoutingPolicy, RoutingRule, RuleProvider
from routing.table import invalidate_routing_cache
from tests.factories import PRICES_FROM, provider_create

EPOCH = PRICES_FROM
MAX_SLOTS_CLEARED = 16


def forget_health(names: list[str]) -> None:
    keys = [health.FAILURES_KEY.format(name) for name in names] + [health.COOLDOWN_KEY.format(name) for name in names]
    keys += [health.SLOT_KEY.format(name, index) for name in names for index in range(MAX_SLOTS_CLEARED)]
    cache.delete_many(keys)


@pytest.fixture
def fresh_routing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No cached table, no remembered Ollama tags, no health state; the table and the cool-downs
    are re-read from the shared cache on every decision, as if each call ran on another worker."""
    monkeypatch.setattr("routing.table.VERSION_CHECK_INTERVAL_S", 0.0)
    monkeypatch.setattr("routing.health.COOLDOWN_CHECK_INTERVAL_S", 0.0)
    invalidate_routing_cache()
    yield
    forget_health(list(Provider.objects.values_list("name", flat=True)))
    invalidate_routing_cache()


def make_provider(name: str, *, base_url: str, **fields: object) -> Provider:
    """`tests.factories.provider_create`, with no health state left for the name and the table
    re-read on the next decision."""
    forget_health([name])
    provider = provider_create(name, base_url=base_url, **fields)
    invalidate_routing_cache()
    return provider


def add_price(model: LLMModel, starts: datetime, input_per_mtok: str, output_per_mtok: str) -> Price:
    price = Price.objects.create(
        model=model,
        effective_from=starts,
        input_per_mtok=Decimal(input_per_mtok),
        output_per_mtok=Decimal(output_per_mtok),
    )
    invalidate_routing_cache()
    return price


def make_rule(name: str, *, providers: list[Provider] = (), position: int = 0, **fields: object) -> RoutingRule:
    rule = RoutingRule.objects.create(name=name, position=position, **fields)
    for index, provider in enumerate(providers):
        RuleProvider.objects.create(rule=rule, provider=provider, position=index)
    invalidate_routing_cache()
    return rule


def set_policy(**fields: object) -> RoutingPolicy:
    policy = RoutingPolicy.get()
    for name, value in fields.items():
        setattr(policy, name, value)
    policy.save()
    invalidate_routing_cache()
    return policy


def set_baseline(provider: Provider, model: str = "m1") -> RoutingPolicy:
    return set_policy(baseline_model=LLMModel.objects.get(provider=provider, name=model))


def ask(text: str = "Write a haiku about routers.", **fields: object) -> router.RouteRequest:
    return router.RouteRequest(messages=[{"role": "user", "content": text}], **fields)
