"""Small routing files and a whole-database snapshot, shared by the load and export tests."""

from io import StringIO
from pathlib import Path

from django.core.management import call_command
from django.db import models

from agents.models import Agent
from routing.models import LLMModel, ModelAlias, Price, Provider, RoutingPolicy, RoutingRule, RuleProvider

ROUTING = """\
cost_optimization:
  local_model_target_percentage: 85
  baseline_model: claude/sonnet
ollama:
  priority: 1
  capabilities: [code_generation]
claude:
  kind: anthropic
  priority: 2
  capabilities: [code_generation, testing]
  models:
    - name: sonnet
      context_window: 200000
      prices:
        - {effective_from: 2025-09-29, input_per_mtok: 3, output_per_mtok: 15}
rules:
  - name: big-prompts
    escalate_above_tokens: 4000
    providers: [claude]
agents:
  marcus:
    name: Marcus
    role: Backend
    capability: code_generation
    system_prompt: You write FastAPI endpoints.
    workflow_prompt: "Build the API for {feature}"
"""

LOCAL = """\
ollama:
  kind: ollama
  local: true
  base_url: ${OLLAMA_HOST:-http://localhost:11434}
  default_model: mistral:latest
  keep_alive: 30m
  models:
    - name: mistral:latest
      context_window: 4096
"""


def write_configs(directory: Path, *, routing: str = ROUTING, local: str = LOCAL) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "llm_routing.yaml", directory / "local_provider.yaml"]
    paths[0].write_text(routing)
    paths[1].write_text(local)
    return paths


def load(*args: object) -> tuple[str, str]:
    """Run load_routing; (stdout, stderr)."""
    out, err = StringIO(), StringIO()
    call_command("load_routing", *map(str, args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _rows(model: type[models.Model]) -> list[dict]:
    rows = []
    for obj in model.objects.all():
        row = {}
        for model_field in model._meta.concrete_fields:
            if model_field.primary_key or model_field.name == "updated_at":
                continue
            value = getattr(obj, model_field.name)
            row[model_field.name] = str(value) if isinstance(value, models.Model) else value
        rows.append(row)
    return sorted(rows, key=repr)


def snapshot() -> dict[str, list[dict]]:
    """Everything routing as code owns, by natural keys (no ids, no timestamps)."""
    tables = (Provider, LLMModel, Price, RoutingPolicy, RoutingRule, RuleProvider, ModelAlias, Agent)
    return {model.__name__: _rows(model) for model in tables}


def wipe() -> None:
    """An empty routing database, as on a fresh install."""
    for model in (RuleProvider, RoutingRule, ModelAlias, RoutingPolicy, Price, LLMModel, Provider, Agent):
        model.objects.all().delete()
