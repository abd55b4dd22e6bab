"""Fill PostgreSQL with a realistic synthetic ledger, for benchmarks and for trying the history pages.

The rows are generated inside PostgreSQL by one INSERT ... SELECT over generate_series (no
Python per row), seeded with setseed() so the same --seed gives the same ledger. The shape:
four agents and a dozen users; about 80% of calls on the local Ollama models, the rest on
Claude and GPT; agent runs of one or two attempts; a few transient and permanent failures;
latency from time to first token plus completion tokens at a model's own speed; cloud calls
costed at their price, local calls free; every call's baseline costed at Claude Sonnet.

Each run of the ledger is also an AgentRun (its id is the ledger's run id): succeeded when one
of its calls did, one in twenty of those with an answer that failed its quality check; and one
run in two hundred failed before any provider call, so it has no ledger row at all.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from agents.models import Agent, AgentRun, RunStatus
from metrics.rollups import rollup_refresh
from routing.models import LedgerEntry, LLMModel, Price, Provider

AGENTS = ("marcus", "emily", "alex", "jordan")
USERS = 12
# (provider, kind, local, model, share of calls, input $/Mtok, output $/Mtok, tokens per second)
CATALOG = (
    ("ollama", "ollama", True, "mistral:latest", 0.56, None, None, 45),
    ("ollama", "ollama", True, "qwen2.5-coder:7b", 0.24, None, None, 38),
    ("anthropic", "anthropic", False, "claude-sonnet-4", 0.09, Decimal(3), Decimal(15), 70),
    ("anthropic", "anthropic", False, "claude-haiku-3.5", 0.03, Decimal("0.8"), Decimal(4), 140),
    ("openai", "openai", False, "gpt-4o", 0.05, Decimal("2.5"), Decimal(10), 90),
    ("openai", "openai", False, "gpt-4o-mini", 0.03, Decimal("0.15"), Decimal("0.6"), 120),
)
BASELINE_MODEL = "claude-sonnet-4"
BASE_URLS = {
    "ollama": "http://localhost:11434",
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com",
}


class Command(BaseCommand):
    help = "Add a realistic synthetic ledger to PostgreSQL (then refresh the rollups)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rows", type=int, default=100_000)
        parser.add_argument("--months", type=int, default=3, help="Spread the rows over this many months up to now.")
        parser.add_argument("--seed", type=float, default=0.42, help="Between -1 and 1 (PostgreSQL setseed).")
        parser.add_argument("--no-rollup", action="store_true", help="Leave the rollups for a later rollup_refresh.")

    def handle(self, *args, rows: int, months: int, seed: float, no_rollup: bool, **options) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("fill_ledger needs PostgreSQL (set DATABASE_URL).")
        if rows < 1 or months < 1 or not -1 <= seed <= 1:
            raise CommandError("--rows and --months must be positive and --seed between -1 and 1.")
        end = timezone.now()
        start = end - dt.timedelta(days=30 * months)
        began = time.monotonic()
        ledger_fill(rows=rows, start=start, end=end, seed=seed)
        self.stdout.write(f"Inserted {rows:,} ledger rows in {time.monotonic() - began:.1f} s.")
        if not no_rollup:
            began = time.monotonic()
            result = rollup_refresh()
            self.stdout.write(
                f"Rolled up {result.days} days into {result.rows:,} rows in {time.monotonic() - began:.1f} s."
            )


def ledger_fill(*, rows: int, start: dt.datetime, end: dt.datetime, seed: float) -> None:
    models, baseline = _catalog()
    users = _users()
    top_run = max(LedgerEntry.objects.aggregate(top=Max("run_id"))["top"] or 0, _runs_top())
    first_run = top_run + 1
    choices, low = [], 0.0
    for provider, _model, price, (_, _, local, name, share, in_price, out_price, tps) in models:
        choices.append(
            f"({provider.pk}, '{name}', {local}, {low:.4f}, {low + share:.4f}, {price.pk if price else 'NULL'}, "
            f"{in_price or 0}, {out_price or 0}, {tps})"
        )
        low += share
    sql = f"""
        INSERT INTO {LedgerEntry._meta.db_table} (
            created_at, provider_id, model_name, is_local, outcome, error, reason, attempt,
            prompt_tokens, completion_tokens, tokens_estimated, latency_ms, ttft_ms,
            price_id, cost_usd, baseline_price_id, baseline_cost_usd, agent, user_id, run_id
        )
        SELECT
            %(start)s + (%(span)s * g.i / %(rows)s) * interval '1 second' + g.r_jitter * interval '3 seconds',
            m.provider_id, m.name, m.local, o.outcome,
            CASE o.outcome WHEN 'success' THEN '' ELSE 'synthetic failure' END,
            'synthetic', 1 + (g.i %% 5 = 1)::int,
            t.prompt, t.completion, false, t.ttft + t.completion * 1000 / m.tps + t.failed_wait, t.ttft,
            m.price_id,
            CASE WHEN o.outcome <> 'success' OR m.local THEN 0
                 ELSE round((t.prompt * m.in_price + t.completion * m.out_price) / 1000000.0, 10) END,
            %(baseline_price)s,
            CASE WHEN o.outcome <> 'success' THEN 0
                 ELSE round((t.prompt * %(base_in)s + t.completion * %(base_out)s) / 1000000.0, 10) END,
            (ARRAY{list(AGENTS)!r})[1 + (hashint8(g.run) & 2147483647) %% {len(AGENTS)}],
            (ARRAY{users!r}::bigint[])[1 + (hashint8(g.run + 7) & 2147483647) %% {len(users)}],
            g.run
        FROM (
            SELECT i, %(first_run)s + i * 4 / 5 AS run, random() AS r_model, random() AS r_fail,
                   random() AS r_prompt, random() AS r_completion, random() AS r_ttft, random() AS r_jitter
            FROM generate_series(0, %(rows)s - 1) AS i
        ) g
        JOIN (VALUES {", ".join(choices)}) AS m(provider_id, name, local, low, high, price_id, in_price, out_price, tps)
          ON g.r_model >= m.low AND (g.r_model < m.high OR m.high >= 1)
        CROSS JOIN LATERAL (
            SELECT CASE WHEN g.r_fail < (CASE WHEN m.local THEN 0.03 ELSE 0.01 END) THEN 'transient_error'
                        WHEN g.r_fail > 0.997 THEN 'permanent_error' ELSE 'success' END AS outcome
        ) o
        CROSS JOIN LATERAL (
            SELECT (200 + 6000 * g.r_prompt * g.r_prompt)::int AS prompt,
                   CASE WHEN o.outcome = 'success' THEN (30 + 1200 * g.r_completion)::int ELSE 0 END AS completion,
                   (CASE WHEN m.local THEN 250 + 1500 * g.r_ttft ELSE 300 + 700 * g.r_ttft END)::int AS ttft,
                   CASE WHEN o.outcome = 'transient_error' THEN (30000 * g.r_completion)::int ELSE 0 END AS failed_wait
        ) t
        ORDER BY g.i
    """  # noqa: S608 - every interpolated value is a number or a fixed name from this module
    params = {
        "start": start,
        "span": (end - start).total_seconds(),
        "rows": rows,
        "first_run": first_run,
        "baseline_price": baseline.pk,
        "base_in": baseline.input_per_mtok,
        "base_out": baseline.output_per_mtok,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT setseed(%s)", [seed])
        cursor.execute(sql, params)
        _runs_fill(cursor, first_run=first_run, rows=rows, start=start, end=end, users=users)


def _runs_top() -> int:
    return AgentRun.objects.aggregate(top=Max("id"))["top"] or 0


def _runs_fill(cursor, *, first_run: int, rows: int, start: dt.datetime, end: dt.datetime, users: list[int]) -> None:
    """An AgentRun for every run of the new ledger rows, plus runs that failed before any call."""
    agents = _agents()
    slug_to_id = " ".join(f"WHEN '{slug}' THEN {pk}" for slug, pk in agents.items())
    last_run = LedgerEntry.objects.aggregate(top=Max("run_id"))["top"] or first_run
    explicit = {
        "id": "r.run_id",
        "agent_id": f"CASE r.agent {slug_to_id} END",
        "created_by_id": "r.user_id",
        "prompt": "'synthetic'",
        "status": f"CASE WHEN r.succeeded THEN '{RunStatus.SUCCEEDED}' ELSE '{RunStatus.FAILED}' END",
        "quality_ok": "CASE WHEN NOT r.succeeded THEN NULL ELSE (hashint8(r.run_id) & 2147483647) %% 20 <> 0 END",
        "created_at": "r.first_at - interval '2 seconds'",
        "started_at": "r.first_at - interval '1 second'",
        "finished_at": "r.last_at",
    }
    columns, values, params = _run_columns(explicit)
    ledger = LedgerEntry._meta.db_table
    cursor.execute(
        f"""
        INSERT INTO {AgentRun._meta.db_table} ({columns})
        SELECT {values} FROM (
            SELECT run_id, min(agent) AS agent, min(user_id) AS user_id, min(created_at) AS first_at,
                   max(created_at) AS last_at, bool_or(outcome = 'success') AS succeeded
            FROM {ledger} WHERE run_id BETWEEN %s AND %s GROUP BY run_id
        ) r
        """,  # noqa: S608 - names and numbers from this module
        [*params, first_run, last_run],
    )
    explicit = {
        "id": f"{last_run} + g.i",
        "agent_id": f"(ARRAY{list(agents.values())!r})[1 + g.i %% {len(agents)}]",
        "created_by_id": f"(ARRAY{users!r}::bigint[])[1 + g.i %% {len(users)}]",
        "prompt": "'synthetic'",
        "status": f"'{RunStatus.FAILED}'",
        "error": "'No provider can serve this request.'",
        "created_at": ("%s + (%s * random()) * interval '1 second'", [start, (end - start).total_seconds()]),
        "finished_at": "NULL",
    }
    columns, values, params = _run_columns(explicit)
    cursor.execute(
        f"INSERT INTO {AgentRun._meta.db_table} ({columns}) "  # noqa: S608 - names and numbers from this module
        f"SELECT {values} FROM generate_series(1, %s) AS g(i)",
        [*params, max(1, rows // 200)],
    )
    # The runs took their ids from the ledger: move the sequence past them for runs created later.
    table = AgentRun._meta.db_table
    cursor.execute(f"SELECT setval(pg_get_serial_sequence(%s, 'id'), (SELECT max(id) FROM {table}))", [table])  # noqa: S608


def _run_columns(explicit: dict[str, str | tuple[str, list]]) -> tuple[str, str, list]:
    """Every AgentRun column, in order: the given SQL (with its parameters) where given, else the
    field's default as a parameter (so a field added to AgentRun later needs nothing here)."""
    columns, values, params = [], [], []
    for field in AgentRun._meta.concrete_fields:
        columns.append(connection.ops.quote_name(field.column))
        if field.column in explicit:
            sql, own = (
                explicit[field.column] if isinstance(explicit[field.column], tuple) else (explicit[field.column], [])
            )
            values.append(sql)
            params.extend(own)
        else:
            values.append("%s")
            params.append(field.get_db_prep_save(field.get_default(), connection))
    return ", ".join(columns), ", ".join(values), params


def _agents() -> dict[str, int]:
    ids = {}
    for slug in AGENTS:
        agent, _ = Agent.objects.get_or_create(
            slug=slug, defaults={"name": slug.title(), "role": "synthetic", "capability": "code_generation"}
        )
        ids[slug] = agent.pk
    return ids


def _catalog() -> tuple[list, Price]:
    """The providers, models and prices the synthetic rows name (reusing any that exist)."""
    since = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    models, baseline = [], None
    for priority, entry in enumerate(CATALOG, start=1):
        provider_name, kind, local, name, _share, in_price, out_price, _tps = entry
        provider, _ = Provider.objects.get_or_create(
            name=provider_name,
            defaults={
                "kind": kind,
                "base_url": BASE_URLS[provider_name],
                "is_local": local,
                "priority": priority,
                "default_model": name,
            },
        )
        model, _ = LLMModel.objects.get_or_create(provider=provider, name=name)
        price = None
        if in_price is not None:
            price = model.prices.order_by("-effective_from").first() or Price.objects.create(
                model=model, effective_from=since, input_per_mtok=in_price, output_per_mtok=out_price
            )
            entry = (*entry[:5], price.input_per_mtok, price.output_per_mtok, entry[7])
        if name == BASELINE_MODEL:
            baseline = price
        models.append((provider, model, price, entry))
    return models, baseline


def _users() -> list[int]:
    users = get_user_model().objects
    ids = []
    for n in range(1, USERS + 1):
        user = users.filter(username=f"synthetic{n:02d}").first() or users.create_user(f"synthetic{n:02d}")
        ids.append(user.pk)
    return ids
