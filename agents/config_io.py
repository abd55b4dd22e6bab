"""The `agents` section of the routing files, and the load and export services that compose it
with the routing sections (agents may import routing; routing never imports agents)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from agents.models import Agent, QualityCheck
from routing import config_io
from routing.config_io import Changes, Checker, Config, ConfigError, ConfigPath, Field
from routing.table import invalidate_routing_cache

SECTION = "agents"
FILE_NAMES = ("llm_routing.yaml", "local_provider.yaml")
# Stricter than routing's names: an agent's slug is also a Django SlugField (no dots or colons).
_SLUG = config_io.text(max_length=64, pattern=r"[a-z0-9][a-z0-9_-]*", hint="must be a slug like marcus")


def _workflow_prompt(value: Any) -> str:
    prompt = config_io.text(max_length=20_000, blank=True)(value)
    if prompt and "{feature}" not in prompt:
        raise config_io.Invalid("must contain {feature}, where the workflow's feature goes")
    return prompt


AGENT_FIELDS = {
    "slug": Field(_SLUG),
    "name": Field(config_io.text(max_length=100)),
    "role": Field(config_io.text(max_length=200)),
    "capability": Field(
        config_io.text(max_length=64, pattern=r"[a-z][a-z0-9_]*", hint="must be a capability like code_generation")
    ),
    "system_prompt": Field(config_io.text(max_length=20_000)),
    "workflow_prompt": Field(_workflow_prompt, ""),
    "temperature": Field(config_io.decimal_number(minimum=Decimal(0), maximum=Decimal(2), places=3), 0.2),
    "max_tokens": Field(config_io.whole_number(minimum=1), 1024),
    "quality_check": Field(config_io.choice(QualityCheck.values), QualityCheck.NONE),
    "enabled": Field(config_io.boolean, True),
}


@dataclass
class AgentSpec:
    slug: str
    name: str
    role: str
    capability: str
    system_prompt: str
    workflow_prompt: str
    temperature: float
    max_tokens: int
    quality_check: str
    enabled: bool
    position: int


def agents_check(*, config: Config, checker: Checker, routing: config_io.RoutingSpec) -> list[AgentSpec]:
    """The agents section as a list (each with `slug:`) or a mapping by slug; file order is their order."""
    raw = config.section(SECTION)
    entries: list[tuple[ConfigPath, dict]]
    if isinstance(raw, dict):
        entries = []
        for slug, item in raw.items():
            item = checker.mapping((SECTION, slug), item, "the agent's settings")
            if item is not None:
                entries.append(((SECTION, slug), {"slug": slug, **item}))
    else:
        entries = checker.items((SECTION,), raw, "agents")
    result, seen = [], set()
    for position, (path, item) in enumerate(entries):
        values = checker.fields(path, item, AGENT_FIELDS)
        if values["slug"] in seen:
            checker.error((*path, "slug"), f"an agent {values['slug']!r} is listed twice")
        seen.add(values["slug"])
        if values["temperature"] is not None:
            values["temperature"] = float(values["temperature"])
        _warn_if_unroutable(checker, path, values["capability"], routing)
        result.append(AgentSpec(position=position, **values))
    _check_rule_agents(checker, routing, known=seen | set(Agent.objects.values_list("slug", flat=True)))
    return result


def _warn_if_unroutable(
    checker: Checker, path: ConfigPath, capability: str | None, routing: config_io.RoutingSpec
) -> None:
    offered = {item for provider in routing.providers for item in provider.capabilities or ()}
    offered |= {item for p in routing.providers for model in p.models for item in model.capabilities or ()}
    if capability and capability not in offered:
        checker.warn((*path, "capability"), f"no provider or model lists {capability}: its runs will find no provider")


def _check_rule_agents(checker: Checker, routing: config_io.RoutingSpec, *, known: set[str]) -> None:
    for index, rule in enumerate(routing.rules):
        if rule.agent and rule.agent not in known:
            checker.error(("rules", index, "agent"), f"no agent {rule.agent!r} in the files or the database")


def agents_apply(*, specs: list[AgentSpec], prune: bool) -> Changes:
    changes = Changes()
    existing = {agent.slug: agent for agent in Agent.objects.select_for_update()}
    for spec in specs:
        values = {key: value for key, value in spec.__dict__.items() if key != "slug"}
        agent = existing.get(spec.slug)
        if agent is None:
            config_io.save_checked(Agent(slug=spec.slug, **values), label=f"agent {spec.slug}")
            changes.made.append(f"created agent {spec.slug} ({spec.name}, {spec.role})")
            continue
        changed = config_io.assign(agent, values)
        if changed:
            config_io.save_checked(agent, label=f"agent {spec.slug}")
            changes.made.append(f"updated agent {spec.slug}: {', '.join(changed)}")
    for slug in sorted(set(existing) - {spec.slug for spec in specs}):
        config_io.mark_stale(existing[slug], f"agent {slug}", prune, changes)
    return changes


def agents_dump() -> dict[str, dict]:
    return {
        agent.slug: {
            "name": agent.name,
            "role": agent.role,
            "capability": agent.capability,
            "temperature": agent.temperature,
            "max_tokens": agent.max_tokens,
            "quality_check": agent.quality_check,
            "enabled": agent.enabled,
            "system_prompt": agent.system_prompt,
            "workflow_prompt": agent.workflow_prompt,
        }
        for agent in Agent.objects.order_by("position", "slug")
    }


def default_paths() -> list[Path]:
    return [Path(settings.SWITCHYARD_CONFIG_DIR) / name for name in FILE_NAMES]


@dataclass
class LoadReport:
    changes: Changes
    files: list[str]


def routing_config_load(
    *, paths: Sequence[Path] | None = None, prune: bool = False, dry_run: bool = False
) -> LoadReport:
    """Read, check everything, then write it all in one transaction (or nothing: ConfigError)."""
    paths = list(paths or default_paths())
    config = config_io.config_read(paths=paths, extra_sections=(SECTION,))
    checker = Checker(config)
    routing = config_io.routing_check(config=config, checker=checker)
    agents = agents_check(config=config, checker=checker, routing=routing)
    if checker.errors:
        raise ConfigError(checker.errors)
    changes = Changes(warnings=list(checker.warnings))
    with transaction.atomic():
        changes.extend(config_io.routing_apply(spec=routing, prune=prune))
        changes.extend(agents_apply(specs=agents, prune=prune))
        if dry_run:
            transaction.set_rollback(True)
    if changes.made and not dry_run:
        invalidate_routing_cache()
    return LoadReport(changes=changes, files=[str(path) for path in paths])


def routing_config_export() -> tuple[dict, dict]:
    """(llm_routing.yaml, local_provider.yaml) as data; merge them for a single document."""
    routing_doc, local_doc = config_io.routing_dump(extra_sections=(SECTION,))
    routing_doc[SECTION] = agents_dump()
    return routing_doc, local_doc


def merged_document(routing_doc: dict, local_doc: dict) -> dict:
    """One document: each local provider's connection details joined to its routing fields."""
    merged = {key: (dict(value) if isinstance(value, dict) else value) for key, value in routing_doc.items()}
    for key, value in local_doc.items():
        if key == "providers":
            for name, details in value.items():
                merged["providers"][name] = _provider_keys_in_order({**details, **merged["providers"][name]})
        else:
            merged[key] = _provider_keys_in_order({**value, **merged[key]})
    return merged


def _provider_keys_in_order(provider: dict) -> dict:
    order = list(config_io.PROVIDER_FIELDS)
    return dict(sorted(provider.items(), key=lambda item: order.index(item[0])))
