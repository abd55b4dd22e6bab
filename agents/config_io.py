"""The `agents` section of the routing files, and the load and export services that compose it
with the routing sections (agents may import routing; routing never imports agents)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from agents.models import Agent, QualityCheck
from routing.config.apply import Changes, assign, mark_stale, routing_apply
from routing.config.checker import Checker, Field, Invalid, boolean, choice, float_number, text, whole_number
from routing.config.dump import routing_dump
from routing.config.loading import Config, ConfigError, ConfigPath, config_read
from routing.config.schema import PROVIDER_FIELDS, RoutingSpec, routing_check
from routing.config.validation import model_check, routing_validate
from routing.table import invalidate_routing_cache

SECTION = "agents"
FILE_NAMES = ("llm_routing.yaml", "local_provider.yaml")
# The model's TextFields have no limit; a prompt in a file longer than this is a pasting mistake.
PROMPT_LIMIT = 20_000


def _workflow_prompt(value: Any) -> str:
    prompt = text(max_length=PROMPT_LIMIT, blank=True)(value)
    if prompt and "{feature}" not in prompt:
        raise Invalid("must contain {feature}, where the workflow's feature goes")
    return prompt


AGENT_FIELDS = {
    "slug": Field(text()),
    "name": Field(text()),
    "role": Field(text()),
    "capability": Field(text()),
    "system_prompt": Field(text(max_length=PROMPT_LIMIT)),
    "workflow_prompt": Field(_workflow_prompt, ""),
    "temperature": Field(float_number, 0.2),
    "max_tokens": Field(whole_number(), 1024),
    "quality_check": Field(choice(QualityCheck.values), QualityCheck.NONE),
    "enabled": Field(boolean, True),
}


@dataclass
class AgentSpec:
    path: ConfigPath
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

    def fields(self) -> dict[str, Any]:
        """The Agent row's values, its slug aside."""
        return {key: value for key, value in self.__dict__.items() if key not in ("path", "slug")}


def agents_check(*, config: Config, checker: Checker, routing: RoutingSpec) -> list[AgentSpec]:
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
        _warn_if_unroutable(checker, path, values["capability"], routing)
        result.append(AgentSpec(path=path, position=position, **values))
    _check_rule_agents(checker, routing, known=seen | set(Agent.objects.values_list("slug", flat=True)))
    return result


def _warn_if_unroutable(checker: Checker, path: ConfigPath, capability: str | None, routing: RoutingSpec) -> None:
    offered = {item for provider in routing.providers for item in provider.capabilities or ()}
    offered |= {item for p in routing.providers for model in p.models for item in model.capabilities or ()}
    if capability and capability not in offered:
        checker.warn((*path, "capability"), f"no provider or model lists {capability}: its runs will find no provider")


def _check_rule_agents(checker: Checker, routing: RoutingSpec, *, known: set[str]) -> None:
    for rule in routing.rules:
        if rule.agent and rule.agent not in known:
            checker.error((*rule.path, "agent"), f"no agent {rule.agent!r} in the files or the database")


def agents_validate(*, specs: list[AgentSpec], checker: Checker) -> None:
    """Each agent through the model's own validation (slug, capability, limits), at its keys."""
    for spec in specs:
        model_check(Agent(slug=spec.slug, **spec.fields()), checker=checker, path=spec.path)


def agents_apply(*, specs: list[AgentSpec], prune: bool) -> Changes:
    """Write the agents, validated by `agents_validate`; call inside the load's transaction."""
    changes = Changes()
    existing = {agent.slug: agent for agent in Agent.objects.select_for_update()}
    for spec in specs:
        agent = existing.get(spec.slug)
        if agent is None:
            Agent.objects.create(slug=spec.slug, **spec.fields())
            changes.made.append(f"created agent {spec.slug} ({spec.name}, {spec.role})")
            continue
        changed = assign(agent, spec.fields())
        if changed:
            agent.save()
            changes.made.append(f"updated agent {spec.slug}: {', '.join(changed)}")
    for slug in sorted(set(existing) - {spec.slug for spec in specs}):
        mark_stale(existing[slug], f"agent {slug}", prune, changes)
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
    config = config_read(paths=paths, extra_sections=(SECTION,))
    checker = Checker(config)
    routing = routing_check(config=config, checker=checker)
    agents = agents_check(config=config, checker=checker, routing=routing)
    if checker.errors:  # the models' validation needs well-formed values
        raise ConfigError(checker.errors)
    changes = Changes(warnings=list(checker.warnings))
    with transaction.atomic():
        routing_validate(spec=routing, checker=checker)
        agents_validate(specs=agents, checker=checker)
        if checker.errors:
            raise ConfigError(checker.errors)
        changes.extend(routing_apply(spec=routing, prune=prune))
        changes.extend(agents_apply(specs=agents, prune=prune))
        if dry_run:
            transaction.set_rollback(True)
    if changes.made and not dry_run:
        invalidate_routing_cache()
    return LoadReport(changes=changes, files=[str(path) for path in paths])


def routing_config_export() -> tuple[dict, dict]:
    """(llm_routing.yaml, local_provider.yaml) as data; merge them for a single document."""
    routing_doc, local_doc = routing_dump(extra_sections=(SECTION,))
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
    order = list(PROVIDER_FIELDS)
    return dict(sorted(provider.items(), key=lambda item: order.index(item[0])))
