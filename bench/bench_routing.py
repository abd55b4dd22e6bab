"""How long one routing decision takes with 10 providers and 50 rules, in microseconds.

    .venv/bin/python bench/bench_routing.py [--iterations 20000]

Uses a throw-away SQLite database (unless DATABASE_URL is set) with 10 providers (3 models and
2 prices each) and 50 rules, the request matching rule 40. It times:

- decision: `plan_route` over the cached table, what every `route()` call does before HTTP
  (rule matching, filters, ordering, reasons; no query, no I/O);
- baseline: reading the same table from the database, which is what a decision would cost if
  the router did not cache it (measured in the same run, as the ratio);
- route()'s whole pre-call path: estimate the prompt, get the current table (version check at
  most once a second), read the cool-downs (refreshed from the cache at most once a second),
  plan. With REDIS_URL set the shared cache is Redis, as in production; else the file cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def setup_django(tmp: str) -> None:
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{tmp}/bench.sqlite3")
    os.environ.setdefault("SWITCHYARD_VAR_DIR", tmp)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def populate() -> None:
    from routing.models import LLMModel, Price, Provider, RoutingRule, RuleProvider

    providers = []
    for index in range(10):
        local = index < 3
        provider = Provider.objects.create(
            name=f"provider-{index}",
            kind="ollama" if local else "openai",
            base_url=f"http://127.0.0.1:{20000 + index}",
            is_local=local,
            priority=index + 1,
            capabilities=["code_generation", "testing", "documentation"] if index % 2 else ["code_generation"],
            default_model="model-0",
            max_in_flight=2 if local else None,
        )
        for number in range(3):
            model = LLMModel.objects.create(provider=provider, name=f"model-{number}", capabilities=[f"cap_{number}"])
            for month in (1, 6):
                Price.objects.create(
                    model=model,
                    effective_from=datetime(2025, month, 1, tzinfo=UTC),
                    input_per_mtok=Decimal(0 if local else 3),
                    output_per_mtok=Decimal(0 if local else 15),
                )
        providers.append(provider)
    for index in range(50):
        rule = RoutingRule.objects.create(
            name=f"rule-{index}",
            position=index,
            capability="documentation" if index == 40 else f"capability_{index}",
            agent="" if index % 3 else f"agent-{index}",
            min_prompt_tokens=None if index % 4 else 100,
            allow_cloud=index % 5 != 0,
            escalate_above_tokens=4000,
            escalate_capabilities=["architecture"],
        )
        for position, provider in enumerate(providers[index % 10 :] + providers[: index % 10]):
            RuleProvider.objects.create(rule=rule, provider=provider, position=position)


def timed(function, iterations: int) -> list[float]:
    samples = []
    for _ in range(iterations):
        started = time.perf_counter_ns()
        function()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2]
    p95 = ordered[int(len(ordered) * 0.95)]
    return f"mean {statistics.fmean(ordered):8.1f} µs   p50 {p50:8.1f} µs   p95 {p95:8.1f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        setup_django(tmp)
        populate()
        from routing.plan import plan_route
        from routing.table import current_table, invalidate_routing_cache, load_table

        invalidate_routing_cache()
        table = current_table()
        assert len(table.providers) == 10 and len(table.rules) == 50

        def decide():
            return plan_route(table, capability="documentation", agent="emily", prompt_tokens=1200, has_key=bool)

        decision = decide()
        assert decision.rule is not None and decision.rule.name == "rule-40", decision.rule
        assert decision.candidates, decision.skipped
        timed(decide, 1000)  # warm-up
        decisions = timed(decide, args.iterations)
        loads = timed(lambda: load_table(None), max(50, args.iterations // 200))
        print("Routing decision, 10 providers, 50 rules (request matches rule 40)")
        print(f"  decision (cached table):      {summary(decisions)}   n={len(decisions)}")
        print(f"  baseline (table from the DB): {summary(loads)}   n={len(loads)}")
        from routing import health
        from routing.tokens import estimate_prompt_tokens

        messages = [{"role": "user", "content": "x" * 4800}]

        def route_path():
            current = current_table()
            cooling = health.cooldowns(provider.name for provider in current.providers if provider.enabled)
            return plan_route(
                current,
                capability="documentation",
                agent="emily",
                prompt_tokens=estimate_prompt_tokens(messages),
                cooling=cooling,
                has_key=bool,
            )

        paths = timed(route_path, args.iterations)
        cache_name = "Redis" if os.environ.get("REDIS_URL") else "file cache"
        print(f"  route() pre-call, {cache_name:10}: {summary(paths)}   n={len(paths)}")
        ratio = statistics.median(loads) / statistics.median(decisions)
        print(f"  the cached decision is {ratio:.0f}x faster than reading the table (p50)")


if __name__ == "__main__":
    main()
