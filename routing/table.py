"""The routing table: providers, models, prices, rules and the policy as plain frozen snapshots.

Each process loads the table once and keeps it. `invalidate_routing_cache()` writes
a new version token into the shared Django cache (Redis in production, so every worker sees it);
a process compares the token it loaded with at most once every `VERSION_CHECK_INTERVAL_S`
seconds and reloads when they differ. A routing decision therefore makes no database query and
usually no network round trip.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.core.cache import cache
from django.db import transaction

from routing import pricing
from routing.models import AUTO_ALIAS, LLMModel, ModelAlias, Price, Provider, RoutingRule
from routing.providers import forget_host_state
from routing.providers.base import ProviderConfig
from routing.selectors import routing_policy

logger = logging.getLogger(__name__)

VERSION_KEY = "routing:version"
VERSION_CHECK_INTERVAL_S = 1.0


@dataclass(frozen=True)
class PriceInfo:
    id: int
    effective_from: datetime
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_write_per_mtok: Decimal | None = None
    cache_read_per_mtok: Decimal | None = None


@dataclass(frozen=True)
class ModelInfo:
    id: int
    name: str
    context_window: int
    system_prompt: bool  # False: the chat template has no system role
    max_output_tokens: int | None  # a request asking for more is capped at this (None: the context window)
    prompt_style: str  # PromptStyle: chat, or completion for a base model
    capabilities: frozenset[str]
    prices: tuple[PriceInfo, ...]  # oldest first
    price_starts: tuple[datetime, ...]

    @property
    def output_limit(self) -> int:
        """The most tokens one answer may have (LLMModel.output_limit)."""
        return self.max_output_tokens or self.context_window

    def price_at(self, when: datetime) -> PriceInfo | None:
        index = pricing.in_force(self.price_starts, when)
        return None if index is None else self.prices[index]


@dataclass(frozen=True)
class ProviderInfo:
    id: int
    name: str
    kind: str
    is_local: bool
    priority: int
    enabled: bool
    capabilities: frozenset[str]
    default_model: str
    api_key_env: str
    max_in_flight: int | None
    slot_wait_s: float | None  # None: the policy's slot_wait_seconds
    config: ProviderConfig
    models: dict[str, ModelInfo]  # by name; read-only by convention

    def offers(self, capability: str) -> bool:
        """A provider (or one of its models) listing the capability offers it; one listing none offers anything."""
        listed = self.capabilities.union(*(model.capabilities for model in self.models.values()))
        return not capability or not listed or capability in listed

    def serves(self, model: str) -> bool:
        """Whether a request naming this model can be sent here: one of its models, or its default."""
        return model in self.models or model == self.default_model

    def model_for(self, capability: str) -> str:
        """The default model, unless the capability is only listed on another of this provider's models."""
        default = self.models.get(self.default_model)
        if not capability or capability in self.capabilities or default is None or capability in default.capabilities:
            return self.default_model
        for name in sorted(self.models):
            if capability in self.models[name].capabilities:
                return name
        return self.default_model


@dataclass(frozen=True)
class RuleInfo:
    name: str
    capability: str
    agent: str
    min_prompt_tokens: int | None
    max_prompt_tokens: int | None
    allow_cloud: bool
    escalate_above_tokens: int | None
    escalate_capabilities: frozenset[str]
    provider_names: tuple[str, ...]  # in the rule's order

    def matches(self, *, capability: str, agent: str, prompt_tokens: int) -> bool:
        return (
            (not self.capability or self.capability == capability)
            and (not self.agent or self.agent == agent)
            and (self.min_prompt_tokens is None or prompt_tokens >= self.min_prompt_tokens)
            and (self.max_prompt_tokens is None or prompt_tokens <= self.max_prompt_tokens)
        )


@dataclass(frozen=True)
class AliasInfo:
    name: str
    capability: str  # "" routes as a request with no capability (auto)
    description: str


# `auto` needs no row: a database never loaded from the routing files (register_local_model, an
# upgrade) still answers it. A row named auto replaces it (its description, or disabled: refused).
BUILT_IN_AUTO = AliasInfo(AUTO_ALIAS, "", "Switchyard chooses: local first, then the routing rules and fallbacks.")


@dataclass(frozen=True)
class PolicyInfo:
    failures_before_cooldown: int
    cooldown_seconds: int
    slot_wait_seconds: float
    baseline_provider: str | None
    baseline_model: str | None
    user_cloud_capabilities: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RoutingTable:
    version: str | None
    providers: tuple[ProviderInfo, ...]  # by priority, then name
    by_name: dict[str, ProviderInfo]
    rules: tuple[RuleInfo, ...]  # enabled rules, in the order they are checked
    policy: PolicyInfo
    aliases: dict[str, AliasInfo] = field(default_factory=dict)  # the enabled ones, by name; auto first

    def baseline(self) -> ModelInfo | None:
        if self.policy.baseline_provider is None or self.policy.baseline_model is None:
            return None
        provider = self.by_name.get(self.policy.baseline_provider)
        return provider.models.get(self.policy.baseline_model) if provider else None


def _price_info(price: Price) -> PriceInfo:
    return PriceInfo(
        price.id,
        price.effective_from,
        price.input_per_mtok,
        price.output_per_mtok,
        price.cache_write_per_mtok,
        price.cache_read_per_mtok,
    )


def _model_info(model: LLMModel, prices: list[Price]) -> ModelInfo:
    ordered = sorted(prices, key=lambda price: price.effective_from)
    return ModelInfo(
        id=model.id,
        name=model.name,
        context_window=model.context_window,
        system_prompt=model.system_prompt,
        max_output_tokens=model.max_output_tokens,
        prompt_style=model.prompt_style,
        capabilities=frozenset(model.capabilities),
        prices=tuple(_price_info(price) for price in ordered),
        price_starts=tuple(price.effective_from for price in ordered),
    )


def _provider_info(provider: Provider, models: dict[str, ModelInfo]) -> ProviderInfo:
    config = provider.adapter_config()
    return ProviderInfo(
        id=provider.id,
        name=provider.name,
        kind=provider.kind,
        is_local=provider.is_local,
        priority=provider.priority,
        enabled=provider.enabled,
        capabilities=frozenset(provider.capabilities),
        default_model=provider.default_model,
        api_key_env=provider.api_key_env,
        max_in_flight=provider.max_in_flight,
        slot_wait_s=provider.slot_wait_s,
        config=config,
        models=models,
    )


def load_table(version: str | None) -> RoutingTable:
    """Read everything routing needs from the database (six queries)."""
    prices: dict[int, list[Price]] = {}
    for price in Price.objects.all():
        prices.setdefault(price.model_id, []).append(price)
    models: dict[int, dict[str, ModelInfo]] = {}
    for model in LLMModel.objects.all():
        models.setdefault(model.provider_id, {})[model.name] = _model_info(model, prices.get(model.id, []))
    providers = tuple(
        _provider_info(provider, models.get(provider.id, {}))
        for provider in Provider.objects.order_by("priority", "name")
    )
    names = {provider.id: provider.name for provider in providers}
    rules = tuple(
        RuleInfo(
            name=rule.name,
            capability=rule.capability,
            agent=rule.agent,
            min_prompt_tokens=rule.min_prompt_tokens,
            max_prompt_tokens=rule.max_prompt_tokens,
            allow_cloud=rule.allow_cloud,
            escalate_above_tokens=rule.escalate_above_tokens,
            escalate_capabilities=frozenset(rule.escalate_capabilities),
            provider_names=tuple(names[step.provider_id] for step in rule.steps.all()),
        )
        for rule in RoutingRule.objects.filter(enabled=True).order_by("position", "name").prefetch_related("steps")
    )
    return RoutingTable(
        version=version,
        providers=providers,
        by_name={provider.name: provider for provider in providers},
        rules=rules,
        policy=_policy_info(),
        aliases=_aliases(),
    )


def _aliases() -> dict[str, AliasInfo]:
    rows = list(ModelAlias.objects.order_by("name"))
    aliases = {} if any(row.name == AUTO_ALIAS for row in rows) else {AUTO_ALIAS: BUILT_IN_AUTO}
    for row in sorted(rows, key=lambda row: row.name != AUTO_ALIAS):  # auto first, then by name
        if row.enabled:
            aliases[row.name] = AliasInfo(row.name, row.capability, row.description)
    return aliases


def _policy_info() -> PolicyInfo:
    policy = routing_policy()
    baseline = policy.baseline_model
    return PolicyInfo(
        failures_before_cooldown=policy.failures_before_cooldown,
        cooldown_seconds=policy.cooldown_seconds,
        slot_wait_seconds=policy.slot_wait_seconds,
        baseline_provider=baseline.provider.name if baseline else None,
        baseline_model=baseline.name if baseline else None,
        user_cloud_capabilities=frozenset(policy.user_cloud_capabilities),
    )


class _TableHolder:
    """This process's copy of the table, and when it last asked the shared cache for the version."""

    def __init__(self) -> None:
        self.table: RoutingTable | None = None
        self.checked_at = 0.0
        self.lock = threading.Lock()

    def get(self) -> RoutingTable:
        now = time.monotonic()
        table = self.table
        if table is not None and now - self.checked_at < VERSION_CHECK_INTERVAL_S:
            return table
        with self.lock:
            try:
                version = cache.get(VERSION_KEY)
            except Exception as error:  # the shared cache is unreachable: keep the table we have, ask again later
                logger.warning("routing table: version not checked (%s: %s)", type(error).__name__, error)
                version = self.table.version if self.table is not None else None
            self.checked_at = time.monotonic()
            if self.table is None or self.table.version != version:
                # The version is read before the rows: a change committed meanwhile bumps it
                # again, and the next check reloads.
                self.table = load_table(version)
            return self.table

    def drop(self) -> None:
        with self.lock:
            self.table = None
            self.checked_at = 0.0


_holder = _TableHolder()


def current_table() -> RoutingTable:
    return _holder.get()


def bump_version() -> None:
    cache.set(VERSION_KEY, uuid.uuid4().hex, timeout=None)
    _holder.drop()


def invalidate_routing_cache() -> None:
    """Call after any change to providers, models, prices, rules or the policy (admin, load_routing):
    every process drops its cached routing table before its next decision (within ~1 s)."""
    bump_version()
    # A changed model list may name a model just pulled: ask the hosts again rather than wait out the cache.
    forget_host_state()
    # Bump again once the change is committed: a worker that reloaded in between saw the old rows.
    transaction.on_commit(bump_version)
