"""Reads of the routing configuration that pages, APIs, commands and the router share."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

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
from routing.providers.base import Problem, ProviderConfig, api_key_present
from routing.readiness import Probe, fix_sentence, probe
from routing.rules import api_key_env_refusal

DETAIL_MAX = 240


def routing_policy() -> RoutingPolicy:
    """The team's routing policy: the stored row, or the defaults (unsaved) before anyone saved one.

    The one way to read the policy: it never writes, so a page or an API GET can call it.
    Writers (the admin, `load_routing`) save the singleton row themselves.
    """
    return RoutingPolicy.objects.select_related("baseline_model__provider").filter(pk=1).first() or RoutingPolicy()


class ProviderState(StrEnum):
    """The one vocabulary for a provider's status, on the dashboard, the API, the admin and `check_providers`."""

    UP = "up"  # its last call succeeded (or, local, a probe found it back after a call could not reach it)
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
    fix: str  # what is wrong and what to do, as one sentence (routing.readiness); "" when nothing to do
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
    problem: str = ""  # routing.providers.base.Problem, when the failure has a fix of its own


class Readiness(NamedTuple):
    status: ProviderState
    detail: str
    fix: str = ""


# Failures a probe looks for: a probe that finds none of them since says the last call's is over.
PROBED_PROBLEMS = frozenset({Problem.REFUSED, Problem.UNREACHABLE, Problem.MODEL_MISSING})


def provider_state(
    *,
    config: ProviderConfig,
    model: str,
    enabled: bool,
    key_set: bool,
    cooldown_s: float | None,
    failures: int | None,
    last_call: LastCall | None,
    probe: Probe | None = None,
) -> Readiness:
    """The status, its detail and the fix sentence for the provider (`config`, its default `model`).

    The order is the router's own (routing.plan): a disabled provider or one without its key is
    never tried, whatever its history; then what a probe of a local host (`probe`, None when not
    asked) found just now; a cooling one is skipped for now; otherwise its last call tells."""
    if not enabled:
        return Readiness(ProviderState.DISABLED, "the router does not use it")
    if config.api_key_env and not key_set:
        missing = api_key_env_refusal(config.api_key_env) or f"{config.api_key_env} is not set"
        return Readiness(ProviderState.NO_KEY, missing, fix_sentence(config, model, Problem.NO_KEY))
    if probe is not None and not probe.ok:
        return Readiness(ProviderState.DOWN, probe.error, fix_sentence(config, model, probe.problem, probe.error))
    failed = last_call is not None and last_call.outcome != CallOutcome.SUCCESS
    last_fix = fix_sentence(config, model, last_call.problem, last_call.error) if failed else ""
    if cooldown_s is not None:
        return Readiness(
            ProviderState.COOLING, f"{cooldown_s:.0f} s left after {failures} transient failures in a row", last_fix
        )
    if last_call is None:
        if probe is None:
            return Readiness(ProviderState.NOT_YET_CALLED, "")
        # The probe saw the host; an Ollama host also listed the model.
        return Readiness(
            ProviderState.NOT_YET_CALLED, f"it answers, with {model}" if config.kind == "ollama" else "it answers"
        )
    if not failed or (probe is not None and last_call.problem in PROBED_PROBLEMS):
        return Readiness(ProviderState.UP, "")
    error = last_call.error or "the last call failed"
    return Readiness(ProviderState.DOWN, error if len(error) <= DETAIL_MAX else error[: DETAIL_MAX - 1] + "…", last_fix)


def _probe(provider: Provider, *, key_set: bool) -> Probe | None:
    """Ask an enabled local host that could be called whether it answers and has its model: free,
    and the only way to know before its first call. Cloud providers are not asked."""
    if not provider.is_local or not provider.enabled or (provider.api_key_env and not key_set):
        return None
    return probe(provider.adapter_config(), model=provider.default_model)


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
        .values_list("created_at", "outcome", "error", "problem")
        .first()
    )
    return None if row is None else LastCall(*row)


def provider_statuses(*, providers: Sequence[Provider] | None = None) -> list[ProviderStatus]:
    """The status of these providers (default: all, by priority), in the same order; local hosts
    are probed (routing.readiness.probe), so the status says whether they can take calls now."""
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
        status, detail, fix = provider_state(
            config=provider.adapter_config(),
            model=provider.default_model,
            enabled=provider.enabled,
            key_set=key_set,
            cooldown_s=cooldown_s,
            failures=cooldown.failures if cooldown else None,
            last_call=last_call,
            probe=_probe(provider, key_set=key_set),
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
                fix=fix,
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
