"""A hand-built ledger for March 2026 with known tokens and prices, and the figures it must give.

Prices (USD per million tokens): claude-sonnet $3 in / $15 out until 2026-03-16 00:00 UTC, then
$1 / $5; gpt-4o $2.50 / $10; the local model costs nothing. Savings are measured against
claude-sonnet, at the price in force when each call was made. Costs are worked out by
routing.pricing, as the router does, from the price in force at each call's own start.
"""

import datetime as dt
from decimal import Decimal

from core.months import month_last, month_previous
from metrics.models import MonthlyReport
from metrics.reports.formats import report_json
from metrics.reports.types import Figures, MonthFigures, Report
from routing.models import CallOutcome, Price
from routing.pricing import cost, price_at

PRICE_CHANGE = dt.datetime(2026, 3, 16, tzinfo=dt.UTC)

EXPECTED = {
    "month": "2026-03",
    "runs": 3,
    "calls": 6,
    "successes": 5,
    "failures": 1,
    "local_calls": 3,
    "local_share": "40.00",  # 2 of the 5 successful calls were local (the failed local attempt is not one)
    "target_local_share": "85.00",
    "prompt_tokens": 2_000_000,
    "completion_tokens": 740_000,
    "cost_usd": Decimal("3.60"),
    "baseline_cost_usd": Decimal("14.10"),
    "savings_usd": Decimal("10.50"),
}


def build_march_ledger(catalog, add_entry) -> None:
    Price.objects.create(
        model=catalog.sonnet, effective_from=PRICE_CHANGE, input_per_mtok=Decimal(1), output_per_mtok=Decimal(5)
    )

    def call(when, provider, model, prompt, completion, **fields):
        price = price_at(model, when) if model else None
        own_cost = cost(price, prompt_tokens=prompt, completion_tokens=completion) if model else Decimal(0)
        baseline = cost(price_at(catalog.sonnet, when), prompt_tokens=prompt, completion_tokens=completion)
        return add_entry(
            created_at=when,
            provider=provider,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=own_cost,
            baseline_cost_usd=baseline,
            **fields,
        )

    def at(*args):
        return dt.datetime(*args, tzinfo=dt.UTC)

    local, cloud, other = catalog.ollama, catalog.anthropic, catalog.openai
    # In March: baseline 10.50, free.
    call(at(2026, 3, 1), local, None, 1_000_000, 500_000, run_id=1, latency_ms=900)
    # Claude at the old price: costs its own baseline, 2.10.
    call(at(2026, 3, 10), cloud, catalog.sonnet, 200_000, 100_000, run_id=1, latency_ms=2000, agent="emily")
    # GPT after the change: 1.40, against a baseline of 0.60 at the new Claude price.
    call(at(2026, 3, 20), other, catalog.gpt, 400_000, 40_000, run_id=2, latency_ms=3000, user=catalog.bob)
    # Claude at the very instant the new price starts: 0.10.
    call(PRICE_CHANGE, cloud, catalog.sonnet, 100_000, 0, latency_ms=1500, agent="emily")
    # A failed local attempt: no tokens, no money.
    call(at(2026, 3, 5), local, None, 0, 0, outcome=CallOutcome.TRANSIENT, latency_ms=30_000)
    # The last millisecond of March: baseline 0.80 at the new price, free.
    call(at(2026, 3, 31, 23, 59, 59, 999_000), local, None, 300_000, 100_000, run_id=3, latency_ms=1100)
    # Either side of March: not in its report.
    call(at(2026, 2, 28, 23, 59, 59, 999_999), local, None, 1000, 1000, run_id=4)
    call(at(2026, 4, 1), local, None, 5000, 5000, run_id=5)


def store_report_by_hand(*, month: dt.date, **figures) -> None:
    """Store a finished month's snapshot with the given figures (the rest zero), as the report service
    would: the pages, the API and the command then serve it as it is."""
    report = Report(
        month=month,
        start=month,
        end=month_last(month),
        generated_at=dt.datetime(2026, 4, 1, 2, 0, tzinfo=dt.UTC),
        final=True,
        target_local_share=Decimal("85.00"),
        figures=Figures(**figures),
        by_provider=[],
        by_model=[],
        by_agent=[],
        by_user=[],
        previous=MonthFigures(month=month_previous(month), figures=Figures()),
    )
    MonthlyReport.objects.create(month=month, generated_at=report.generated_at, data=report_json(report))
