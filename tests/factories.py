"""The rows tests start from, each built one way.

- `provider_create`: a provider with its model and (unless `price=None`) that model's price.
- `agents_create`: the team's four agents (Marcus, Emily, Alex, Jordan) as config/llm_routing.yaml
  defines them: the file `load_routing` reads is the one copy.
- `run_create` and `attempt_create`: a run and one ledger row for an attempt at a provider.
- `user_create`: a user without a password unless given one (hashing is slow).

Plain ORM rows: the services that create these in production have their own tests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path

import yaml
from django.contrib.auth import get_user_model
from django.utils import timezone

from agents.models import Agent, AgentRun, RunStatus, Workflow
from routing.models import CallOutcome, LedgerEntry, LLMModel, Price, Provider

PRICES_FROM = datetime(2020, 1, 1, tzinfo=UTC)
TEAM_FILE = Path(__file__).resolve().parents[1] / "config" / "llm_routing.yaml"
TEAM = ("marcus", "emily", "alex", "jordan")


def provider_create(
    name: str,
    *,
    kind: str = "openai_compatible",
    base_url: str = "http://127.0.0.1:9",
    is_local: bool = True,
    priority: int = 1,
    model: str = "m1",
    price: tuple[str, str] | None = ("0", "0"),
    price_from: datetime = PRICES_FROM,
    capabilities: list[str] | tuple[str, ...] = (),
    model_capabilities: list[str] | tuple[str, ...] = (),
    context_window: int = 8192,
    api_key_env: str = "",
    max_in_flight: int | None = None,
    connect_timeout_s: float = 1.0,
    request_timeout_s: float = 5.0,
    enabled: bool = True,
    model_kind: str = "generation",
) -> Provider:
    """A provider offering one model, priced (input, output USD per million tokens) from `price_from`."""
    provider = Provider.objects.create(
        name=name,
        kind=kind,
        base_url=base_url,
        is_local=is_local,
        priority=priority,
        default_model=model,
        capabilities=list(capabilities),
        api_key_env=api_key_env,
        max_in_flight=max_in_flight,
        connect_timeout_s=connect_timeout_s,
        request_timeout_s=request_timeout_s,
        enabled=enabled,
    )
    llm = LLMModel.objects.create(
        provider=provider,
        name=model,
        context_window=context_window,
        capabilities=list(model_capabilities),
        kind=model_kind,
    )
    if price is not None:
        Price.objects.create(
            model=llm,
            effective_from=price_from,
            input_per_mtok=Decimal(price[0]),
            output_per_mtok=Decimal(price[1]),
        )
    return provider


@cache
def team_definition() -> dict[str, dict]:
    """The `agents` section of config/llm_routing.yaml, by slug, in the file's order."""
    return yaml.safe_load(TEAM_FILE.read_text())["agents"]


def agents_create(*, slugs: tuple[str, ...] = TEAM) -> dict[str, Agent]:
    """The team's agents as the routing file defines them, keyed by slug, in the file's order."""
    definition = team_definition()
    order = list(definition)
    agents = {}
    for slug in slugs:
        agents[slug], _ = Agent.objects.get_or_create(
            slug=slug, defaults={**definition[slug], "position": order.index(slug)}
        )
    return agents


def user_create(username: str = "ana", *, staff: bool = False, password: str | None = None, email: str = ""):
    user = get_user_model()(username=username, email=email, is_staff=staff)
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.save()
    return user


def run_create(
    *,
    agent: Agent,
    user=None,
    status: str = RunStatus.QUEUED,
    workflow: Workflow | None = None,
    prompt: str = "Write a function that adds two numbers.",
    created_at: datetime | None = None,
    **fields,
) -> AgentRun:
    """A run as submitting it leaves it (its heartbeat starts at creation), in the given state."""
    fields.setdefault("heartbeat_at", timezone.now())
    run = AgentRun.objects.create(
        agent=agent, created_by=user, status=status, workflow=workflow, prompt=prompt, **fields
    )
    if created_at is not None:  # auto_now_add ignores a value given to create()
        AgentRun.objects.filter(pk=run.pk).update(created_at=created_at)
        run.refresh_from_db()
    return run


def attempt_create(
    *,
    run: AgentRun,
    provider: Provider,
    outcome: str = CallOutcome.SUCCESS,
    cost: str | None = "0",
    baseline: str | None = "0.0021",
    created_at: datetime | None = None,
    **fields,
) -> LedgerEntry:
    """One ledger row for an attempt the run made at the provider."""
    return LedgerEntry.objects.create(
        created_at=created_at or timezone.now(),
        provider=provider,
        model_name=provider.default_model,
        is_local=provider.is_local,
        outcome=outcome,
        cost_usd=None if cost is None else Decimal(cost),
        baseline_cost_usd=None if baseline is None else Decimal(baseline),
        agent=run.agent.slug,
        user=run.created_by,
        run_id=run.pk,
        **fields,
    )
