"""Reads of the routing configuration that pages, APIs, commands and the router share."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from routing import health
from routing.models import (
    UNFINISHED_OUTCOMES,
    CallOutcome,
    LedgerEntry,
    LLMModel,
    Provider,
    ProviderKind,
    RoutingPolicy,
)
from routing.providers.base import api_key_present

DETAIL_MAX = 240


def routing_policy() -> RoutingPolicy:
    """The team's routing policy: the stored row, or the defaults (unsaved) before anyone saved one.

    The one way to read the policy: it never writes, so a page or an API GET can call it.
    Writers (the admin, `load_routing`) save the singleton row themselves.
    """
    return RoutingPolicy.objects.select_related("baseline_model__provider").filter(pk=1).first() or RoutingPolicy()


class ProviderState(StrEnum):
    """The one vocabulary for a provider's status, on the dashboard, the API, the admin and `check_providers`."""

    UP = "up"  # its last call succeeded
    DOWN = "down"  # its last call failed
    COOLING = "cooling"  # skipped by the router after transient failures in a row, for a while
    NO_KEY = "no key"  # it names an API key variable that is not set
    DISABLED = "disabled"
    NOT_YET_CALLED = "not yet called"


@dataclass(frozen=True)
class ProviderStatus:
    name: str
    kind: str
    is_local: bool
    priority: int
    enabled: bool
    default_model: str
    status: ProviderState
    detail: str  # for people: the last error, the cool-down left, the missing variable
    last_call_at: datetime | None
    cooldown_s: float | None  # seconds of cool-down left, when cooling
    failures: int | None  # the transient failures in a row that started the cool-down
    api_key_env: str
    key_set: bool

    @property
    def kind_label(self) -> str:
        return dict(ProviderKind.choices).get(self.kind, self.kind)


@dataclass(frozen=True)
class LastCall:
    """A provider's latest ledger row, as far as its status goes."""

    at: datetime
    outcome: str
    error: str


def provider_state(
    *,
    enabled: bool,
    api_key_env: str,
    key_set: bool,
    cooldown_s: float | None,
    failures: int | None,
    last_call: LastCall | None,
) -> tuple[ProviderState, str]:
    """The status and its detail. The order is the router's own (routing.plan): a disabled provider
    or one without its key is never tried, whatever its history; a cooling one is skipped for now;
    otherwise its last call tells."""
    if not enabled:
        return ProviderState.DISABLED, "the router does not use it"
    if api_key_env and not key_set:
        return ProviderState.NO_KEY, f"{api_key_env} is not set"
    if cooldown_s is not None:
        return ProviderState.COOLING, f"{cooldown_s:.0f} s left after {failures} transient failures in a row"
    if last_call is None:
        return ProviderState.NOT_YET_CALLED, ""
    if last_call.outcome == CallOutcome.SUCCESS:
        return ProviderState.UP, ""
    error = last_call.error or "the last call failed"
    return ProviderState.DOWN, error if len(error) <= DETAIL_MAX else error[: DETAIL_MAX - 1] + "…"


def _last_call(provider_id: int) -> LastCall | None:
    """The provider's latest ledger row. One small query per provider, not one correlated subquery for
    all: with the id as a literal PostgreSQL plans from that provider's own statistics, while the
    subquery scanned the whole ledger for a provider never called."""
    # A call in flight, one whose caller died (unknown outcome) or one its caller cancelled says
    # nothing of the provider.
    row = (
        LedgerEntry.objects.filter(provider_id=provider_id)
        .exclude(outcome__in=(*UNFINISHED_OUTCOMES, CallOutcome.CANCELLED))
        .order_by("-created_at", "-id")
        .values_list("created_at", "outcome", "error")
        .first()
    )
    return None if row is None else LastCall(*row)


def provider_statuses(*, providers: Sequence[Provider] | None = None) -> list[ProviderStatus]:
    """The status of these providers (default: all, by priority), in the same order."""
    if providers is None:
        providers = list(Provider.objects.order_by("priority", "name"))
    cooling = health.cooldowns(provider.name for provider in providers)
    now = time.time()
    statuses = []
    for provider in providers:
        cooldown = cooling.get(provider.name)
        cooldown_s = round(cooldown.remaining(now), 1) if cooldown else None
        last_call = _last_call(provider.pk)
        key_set = api_key_present(provider.api_key_env)
        status, detail = provider_state(
            enabled=provider.enabled,
            api_key_env=provider.api_key_env,
            key_set=key_set,
            cooldown_s=cooldown_s,
            failures=cooldown.failures if cooldown else None,
            last_call=last_call,
        )
        statuses.append(
            ProviderStatus(
                name=provider.name,
                kind=provider.kind,
                is_local=provider.is_local,
                priority=provider.priority,
                enabled=provider.enabled,
                default_model=provider.default_model,
                status=status,
                detail=detail,
                last_call_at=last_call.at if last_call else None,
                cooldown_s=cooldown_s,
                failures=cooldown.failures if cooldown else None,
                api_key_env=provider.api_key_env,
                key_set=key_set,
            )
        )
    return statuses


def provider_status(*, provider: Provider) -> ProviderStatus:
    return provider_statuses(providers=[provider])[0]


def demo_models(*, enabled_only: bool = False) -> frozenset[tuple[str, str]]:
    """(provider, model) names of the demo models (LLMModel.is_demo): answers from them show the
    routing and the ledger at work, not good code, and the pages say so."""
    models = LLMModel.objects.filter(is_demo=True)
    if enabled_only:
        models = models.filter(provider__enabled=True)
    return frozenset(models.values_list("provider__name", "name"))
