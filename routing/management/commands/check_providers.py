"""Is every enabled provider up, what does it offer, how fast is it, and what does it save?

    python manage.py check_providers [--json PATH] [--max-tokens 16]

For each enabled provider, in priority order: list its models (Ollama: what the host has
pulled), make one short real generation with its default model (latency, tokens per second)
and price those tokens against the routing policy's baseline model. The verdict uses the status
words of the dashboard, the API and the admin (`routing.selectors.provider_state`): "up", "down",
"no key" (its API key variable is not set: not called). The test generation is metered like any
other call: it leaves a ledger row (agent `check_providers`).

Exits non-zero when the first provider by priority (the one every request tries first) is down.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from core.formatting import duration_ms, money_json, timestamp
from routing.ledger import Attempt, attempt_complete, attempt_start
from routing.models import LedgerEntry
from routing.plan import Candidate
from routing.providers import get_adapter
from routing.providers.base import ChatRequest, ProviderError, api_key_present
from routing.selectors import LastCall, ProviderState, provider_state
from routing.table import ProviderInfo, RoutingTable, load_table

AGENT = "check_providers"
PROMPT = [{"role": "user", "content": "Reply with one short sentence: are you ready to help?"}]


@dataclass
class ProviderCheck:
    provider: str
    kind: str
    local: bool
    priority: int
    status: ProviderState = ProviderState.UP
    error: str = ""  # the status's detail: what failed, or the variable that is not set
    models: list[str] = field(default_factory=list)
    model: str = ""
    latency_ms: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_per_s: float | None = None
    cost_usd: str | None = None
    baseline_cost_usd: str | None = None
    saving_pct: float | None = None  # of what the baseline model would have cost for the same tokens


class Command(BaseCommand):
    help = "Check every enabled provider: reachable, models, a short real generation, the saving vs the baseline."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", dest="json_path", metavar="PATH", help="Also write the results as JSON here.")
        parser.add_argument("--max-tokens", type=int, default=16, help="Length of the test generation.")

    def handle(self, *args: object, json_path: str | None, max_tokens: int, **options: object) -> None:
        table = load_table(None)  # a one-off command reads the database directly, not a cached copy
        providers = [provider for provider in table.providers if provider.enabled]
        checks = [check_provider(table, provider, max_tokens=max_tokens) for provider in providers]
        self.stdout.write(render(checks, table))
        if json_path:
            report = {
                "checked_at": timestamp(timezone.now()),
                "baseline_model": table.policy.baseline_model,
                "providers": [asdict(check) for check in checks],
            }
            Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
        if not checks:
            raise CommandError("No provider is enabled.")
        first = checks[0]
        if first.status == ProviderState.DOWN:
            raise CommandError(f"{first.provider}, the first provider by priority, is {first.status}: {first.error}")


def check_provider(table: RoutingTable, provider: ProviderInfo, *, max_tokens: int) -> ProviderCheck:
    check = ProviderCheck(
        provider.name, provider.kind, provider.is_local, provider.priority, model=provider.default_model
    )
    status, detail = _verdict(provider, last_call=None)
    if status == ProviderState.NO_KEY:
        check.status, check.error = status, detail
        return check
    try:
        adapter = get_adapter(provider.config)
        check.models = sorted(adapter.list_models())
    except ProviderError as error:
        check.status, check.error = ProviderState.DOWN, error.message
        return check
    attempt = Attempt(
        table=table,
        candidate=Candidate(provider, provider.default_model, AGENT),
        number=1,
        reason=AGENT,
        started=timezone.now(),
        agent=AGENT,
        key=f"check:{uuid.uuid4().hex}",  # a test call is tied to no run: a key of its own
    )
    started_row = attempt_start(attempt=attempt, messages=PROMPT)  # in the ledger even if we die during it
    started = time.perf_counter()
    try:
        completion = adapter.chat(
            ChatRequest(model=provider.default_model, messages=PROMPT, max_tokens=max_tokens, temperature=0)
        )
    except ProviderError as error:
        entry = attempt.failure_entry(error, latency_ms=round((time.perf_counter() - started) * 1000))
    else:
        entry = attempt.success_entry(completion, messages=PROMPT)
    entry.pk = started_row.pk
    attempt_complete(entry=entry)
    check.status, check.error = _verdict(provider, last_call=LastCall(entry.created_at, entry.outcome, entry.error))
    if check.status == ProviderState.UP:
        _fill_generation(check, entry)
    return check


def _verdict(provider: ProviderInfo, *, last_call: LastCall | None) -> tuple[ProviderState, str]:
    # The check calls the provider itself, so a cool-down (the router skipping it for now) does not
    # decide its verdict: the answer it gets now does.
    return provider_state(
        enabled=provider.enabled,
        api_key_env=provider.api_key_env,
        key_set=api_key_present(provider.api_key_env),
        cooldown_s=None,
        failures=None,
        last_call=last_call,
    )


def _fill_generation(check: ProviderCheck, entry: LedgerEntry) -> None:
    check.latency_ms = entry.latency_ms
    check.prompt_tokens, check.completion_tokens = entry.prompt_tokens, entry.completion_tokens
    if entry.latency_ms > 0:
        check.tokens_per_s = round(entry.completion_tokens / (entry.latency_ms / 1000), 1)
    cost, baseline = entry.cost_usd, entry.baseline_cost_usd
    check.cost_usd = money_json(cost)
    check.baseline_cost_usd = money_json(baseline)
    if cost is not None and baseline:
        check.saving_pct = float(((baseline - cost) / baseline * 100).quantize(Decimal("0.1")))


def _saving(check: ProviderCheck, table: RoutingTable) -> str:
    if check.status != ProviderState.UP:
        return ""
    if table.policy.baseline_model is None:
        return "no baseline"
    if check.cost_usd is None:
        return "no price"
    if check.saving_pct is None:
        return "no baseline price"
    return f"{check.saving_pct:g}%"


def render(checks: list[ProviderCheck], table: RoutingTable) -> str:
    header = ("#", "provider", "where", "status", "models", "latency", "tok/s", "saving", "note")
    rows = [header]
    for check in checks:
        models = ", ".join(check.models[:3]) + (f" (+{len(check.models) - 3})" if len(check.models) > 3 else "")
        rows.append(
            (
                str(check.priority),
                check.provider,
                "local" if check.local else "cloud",
                check.status,
                models,
                "" if check.latency_ms is None else duration_ms(check.latency_ms),
                "" if check.tokens_per_s is None else f"{check.tokens_per_s:g}",
                _saving(check, table),
                check.error,
            )
        )
    widths = [max(len(row[index]) for row in rows) for index in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    baseline = table.policy.baseline_model or "none set"
    return "\n".join([*lines, f"Savings are against the baseline model: {baseline}."]) + "\n"
