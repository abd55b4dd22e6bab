"""Is every enabled provider up, what does it offer, how fast is it, and what does it save?

    python manage.py check_providers [--json PATH] [--max-tokens 16]

For each enabled provider, in priority order: list its models (Ollama: what the host has
pulled), make one short real generation with its default model (latency, tokens per second)
and price those tokens against the routing policy's baseline model (`routing.checks`, which the
dashboard's "Test" button runs too). The verdict uses the status words and fix sentences of the
dashboard, the API and the admin (`routing.selectors.provider_state`): "up", "down", "no key"
(its API key variable is not set: not called). The test generation is metered like any other
call: it leaves a ledger row (agent `check_providers`).

Exits non-zero when the first provider by priority (the one every request tries first) is down.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from core.formatting import duration_ms, timestamp
from routing.checks import MAX_TOKENS, ProviderCheck, provider_check
from routing.selectors import ProviderState
from routing.table import RoutingTable, load_table


class Command(BaseCommand):
    help = "Check every enabled provider: reachable, models, a short real generation, the saving vs the baseline."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", dest="json_path", metavar="PATH", help="Also write the results as JSON here.")
        parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="Length of the test generation.")

    def handle(self, *args: object, json_path: str | None, max_tokens: int, **options: object) -> None:
        table = load_table(None)  # a one-off command reads the database directly, not a cached copy
        providers = [provider for provider in table.providers if provider.enabled]
        checks = [provider_check(table, provider, max_tokens=max_tokens) for provider in providers]
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
            raise CommandError(
                f"{first.provider}, the first provider by priority, is {first.status}: {first.fix or first.error}"
            )


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
                check.fix or check.error,
            )
        )
    widths = [max(len(row[index]) for row in rows) for index in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    baseline = table.policy.baseline_model or "none set"
    return "\n".join([*lines, f"Savings are against the baseline model: {baseline}."]) + "\n"
