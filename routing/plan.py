"""Pure planning: which providers may take a request, in which order, and why.

`plan_route` reads only the in-memory routing table and what the caller passes in (cool-downs,
whether a key is set, the clock): no query, no I/O, so a routing decision costs microseconds.
The first enabled rule that matches decides the provider order, else priority; providers that
cannot take the request are skipped with a reason; local comes first unless the rule escalates
the request (estimated prompt above `escalate_above_tokens`, or a capability in
`escalate_capabilities`), which puts cloud first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from routing.health import Cooldown
from routing.providers import answer_format_refusal
from routing.providers.base import ResponseFormat, api_key_present
from routing.rules import api_key_env_refusal
from routing.table import ProviderInfo, RoutingTable, RuleInfo

# The skip reasons the router gives fix sentences for.
NO_KEY = "no key ({} not set)"
COOLING = "cooling down"


def no_key_reason(api_key_env: str) -> str:
    """Why a provider with no usable key is skipped: its variable is unset, or not one it may read."""
    if refusal := api_key_env_refusal(api_key_env):
        return f"no key ({refusal})"
    return NO_KEY.format(api_key_env)


@dataclass(frozen=True)
class Candidate:
    provider: ProviderInfo
    model: str
    reason: str  # why it is in the list, where it is


@dataclass(frozen=True)
class Plan:
    prompt_tokens: int
    candidates: tuple[Candidate, ...] = ()
    skipped: tuple[str, ...] = ()  # "<provider>: <why not>", for the failure message
    rule: RuleInfo | None = None
    # Skipped because their API key variable is not set, or while they cool down: each may have a fix.
    no_key: tuple[ProviderInfo, ...] = ()
    cooling: tuple[ProviderInfo, ...] = ()
    refused: str = ""  # set when the request itself cannot be routed


def _escalation(rule: RuleInfo | None, *, capability: str, prompt_tokens: int) -> str:
    if rule is None:
        return ""
    if rule.escalate_above_tokens is not None and prompt_tokens > rule.escalate_above_tokens:
        return f"escalated: ~{prompt_tokens:,} prompt tokens > {rule.escalate_above_tokens:,}"
    if capability and capability in rule.escalate_capabilities:
        return f"escalated: {capability} is marked complex"
    return ""


def _unfit(
    provider: ProviderInfo, *, capability: str, rule: RuleInfo | None, embedding: bool = False, model: str = ""
) -> str:
    """Why this provider is no candidate for such a request whatever its state, or ""."""
    if not provider.enabled:
        return "disabled"
    if rule is not None and not rule.allow_cloud and not provider.is_local:
        return f"cloud not allowed by rule {rule.name}"
    if embedding:
        if not provider.embeds(model):
            return f"{model or 'no model'} is not one of its embedding models"
    elif not provider.generates:
        return "serves only embedding models"
    elif not provider.offers(capability):
        return f"does not offer {capability}"
    return ""


def _why_not(
    provider: ProviderInfo,
    model: str,
    *,
    capability: str,
    prompt_tokens: int,
    rule: RuleInfo | None,
    response_format: ResponseFormat | None,
    cooling: Mapping[str, Cooldown],
    has_key: Callable[[str], bool],
    now: float,
    embedding: bool = False,
) -> str:
    """Why this provider cannot take the request (an embedding request, when `embedding`), or "" when it can."""
    if unfit := _unfit(provider, capability=capability, rule=rule, embedding=embedding, model=model):
        return unfit
    if refusal := answer_format_refusal(provider.kind, response_format):
        return refusal
    if provider.api_key_env and not has_key(provider.api_key_env):
        return no_key_reason(provider.api_key_env)
    if too_long := _context_exceeded(provider, model, prompt_tokens):
        return too_long
    cooldown = cooling.get(provider.name)
    if cooldown is not None and cooldown.remaining(now) > 0:
        return f"{COOLING} for {cooldown.remaining(now):.0f} s more after {cooldown.failures} transient failures"
    return ""


def _context_exceeded(provider: ProviderInfo, model: str, prompt_tokens: int) -> str:
    info = provider.models.get(model)
    if info is not None and prompt_tokens > info.context_window:
        return f"~{prompt_tokens:,} prompt tokens exceed {model}'s context of {info.context_window:,}"
    return ""


@dataclass
class _Skips:
    """The providers a plan leaves out, with why, sorted the way the plan and its refusal read them
    (chats and embeddings alike)."""

    notes: list[str] = field(default_factory=list)  # "<provider>: <why not>"
    no_key: list[ProviderInfo] = field(default_factory=list)
    cooled: list[ProviderInfo] = field(default_factory=list)
    too_long: list[str] = field(default_factory=list)

    def add(self, provider: ProviderInfo, model: str, why_not: str, *, prompt_tokens: int) -> None:
        self.notes.append(f"{provider.name}: {why_not}")
        if why_not == no_key_reason(provider.api_key_env):
            self.no_key.append(provider)
        elif why_not.startswith(COOLING):
            self.cooled.append(provider)
        elif why_not == _context_exceeded(provider, model, prompt_tokens):
            self.too_long.append(f"{provider.name}: {why_not}")

    def too_long_refusal(self) -> str:
        return _too_long_refusal(self.too_long, no_key=self.no_key, cooled=self.cooled)

    def plan(self, prompt_tokens: int, candidates: list[Candidate], rule: RuleInfo | None, *, refused: str) -> Plan:
        return Plan(
            prompt_tokens,
            tuple(candidates),
            tuple(self.notes),
            rule,
            no_key=tuple(self.no_key),
            cooling=tuple(self.cooled),
            refused=refused,
        )


def _too_long_refusal(too_long: list[str], *, no_key: list, cooled: list) -> str:
    """The request's refusal when the prompt is longer than the context of every model that would take
    it (a 400 at the gateway, as OpenAI's context_length_exceeded): the caller's to shorten. One that a
    cooling or keyless provider might take leaves an outage, not a refusal."""
    if not too_long or no_key or cooled:
        return ""
    return "the prompt is longer than the context of every model that could take it: " + "; ".join(too_long)


def plan_route(
    table: RoutingTable,
    *,
    capability: str = "",
    agent: str = "",
    model: str = "",
    prompt_tokens: int,
    max_prompt_tokens: int | None = None,
    response_format: ResponseFormat | None = None,
    cooling: Mapping[str, Cooldown] | None = None,
    has_key: Callable[[str], bool] = api_key_present,
    now: float | None = None,
) -> Plan:
    """The ordered candidates for one request: pure, over the in-memory table.

    `model` names a concrete model: only the providers that serve a model by that name are candidates
    (in the order the rules or priorities give), each asked for that model. A `response_format` that no
    fitting provider can honour refuses the request (it is the request, not an outage)."""
    if max_prompt_tokens is not None and prompt_tokens > max_prompt_tokens:
        return Plan(
            prompt_tokens,
            refused=f"prompt is ~{prompt_tokens:,} tokens, over this request's limit of {max_prompt_tokens:,}",
        )
    rule = next(
        (r for r in table.rules if r.matches(capability=capability, agent=agent, prompt_tokens=prompt_tokens)), None
    )
    providers = (
        [table.by_name[name] for name in rule.provider_names] if rule and rule.provider_names else table.providers
    )
    if model:
        providers = [provider for provider in providers if provider.serves(model)]
    escalated = _escalation(rule, capability=capability, prompt_tokens=prompt_tokens)
    # Stable sort: the rule's (or priority) order within each group; local first unless escalated.
    ordered = sorted(providers, key=lambda p: p.is_local if escalated else not p.is_local)
    candidates, skips = [], _Skips()
    clock = time.time() if now is None else now
    for provider in ordered:
        chosen = model or provider.model_for(capability)
        why_not = _why_not(
            provider,
            chosen,
            capability=capability,
            prompt_tokens=prompt_tokens,
            rule=rule,
            response_format=response_format,
            cooling=cooling or {},
            has_key=has_key,
            now=clock,
        )
        if why_not:
            skips.add(provider, chosen, why_not, prompt_tokens=prompt_tokens)
            continue
        where = "local" if provider.is_local else "cloud"
        # A rule is named where it decided something: its own provider order, or an escalation.
        if rule and rule.provider_names:
            reason = f"rule {rule.name}, {where}"
        else:
            reason = f"priority {provider.priority}, {where}"
        if escalated and not provider.is_local:
            reason = f"{escalated} (rule {rule.name}); {reason}"
        candidates.append(Candidate(provider, chosen, reason))
    refused = "" if candidates else _format_refusal(ordered, capability=capability, rule=rule, wanted=response_format)
    if not candidates and not refused:
        refused = skips.too_long_refusal()
    return skips.plan(prompt_tokens, candidates, rule, refused=refused)


def _format_refusal(
    providers: list[ProviderInfo], *, capability: str, rule: RuleInfo | None, wanted: ResponseFormat | None
) -> str:
    """The request's refusal when the answer format is what rules out every provider that would take it
    (one that can honour it but cools down or has no key leaves an outage, not a refusal)."""
    fitting = [provider for provider in providers if not _unfit(provider, capability=capability, rule=rule)]
    if wanted is None or not fitting or any(not answer_format_refusal(p.kind, wanted) for p in fitting):
        return ""
    names = ", ".join(provider.name for provider in fitting)
    verb = "takes" if len(fitting) == 1 else "take"
    return f"no provider that could take this request can answer in {wanted.type}: {names} {verb} no response_format"


def plan_embedding(
    table: RoutingTable,
    *,
    agent: str = "",
    model: str = "",
    prompt_tokens: int,
    cooling: Mapping[str, Cooldown] | None = None,
    has_key: Callable[[str], bool] = api_key_present,
    now: float | None = None,
) -> Plan:
    """The ordered candidates for an embedding request: pure, over the in-memory table.

    Only providers with an embedding model take part (`model` names one: those serving it), local first,
    each asked for that model or its own (`ProviderInfo.embedding_model`). The first matching rule's
    provider order and `allow_cloud` hold as for a chat; its escalation does not: it sends a long
    conversation to a cloud model with a larger context, and an embedding's input is measured against
    the embedding model's own context instead (`prompt_tokens`: the longest input's)."""
    rule = next((r for r in table.rules if r.matches(capability="", agent=agent, prompt_tokens=prompt_tokens)), None)
    providers = (
        [table.by_name[name] for name in rule.provider_names] if rule and rule.provider_names else table.providers
    )
    chosen = {provider.name: name for provider in providers if (name := _embedding_model(provider, model))}
    candidates, skips = [], _Skips()
    clock = time.time() if now is None else now
    for provider in sorted((p for p in providers if p.name in chosen), key=lambda p: not p.is_local):
        why_not = _why_not(
            provider,
            chosen[provider.name],
            capability="",
            prompt_tokens=prompt_tokens,
            rule=rule,
            response_format=None,
            cooling=cooling or {},
            has_key=has_key,
            now=clock,
            embedding=True,
        )
        if why_not:
            skips.add(provider, chosen[provider.name], why_not, prompt_tokens=prompt_tokens)
            continue
        where = "local" if provider.is_local else "cloud"
        order = f"rule {rule.name}" if rule and rule.provider_names else f"priority {provider.priority}"
        candidates.append(Candidate(provider, chosen[provider.name], f"embedding, {order}, {where}"))
    return skips.plan(prompt_tokens, candidates, rule, refused="" if candidates else skips.too_long_refusal())


def _embedding_model(provider: ProviderInfo, model: str) -> str | None:
    """The model an embedding request gets at this provider: the one it names, if served here, else its own."""
    if model:
        return model if provider.embeds(model) else None
    return provider.embedding_model()
