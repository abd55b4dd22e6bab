"""The figures every metrics surface shows, and the one definition of each.

The dashboard, the history pages, the monthly report (page, JSON, CSV, command, email) and the
API all get their numbers from `metrics.selectors`, which turns column sums into figures here.
So a figure such as the local share is computed in exactly one place: `local_share` below.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypedDict

from metrics.models import LATENCY_BOUNDS_MS, LATENCY_FIELDS

_CENT = Decimal("0.01")
_TENTH = Decimal("0.1")


class Figures(TypedDict):
    """What a period (`history`), a group (`breakdown`) or a range (`totals`) adds up to.

    Calls are ledger rows (attempts at a provider); a run that fell back has several.
    """

    calls: int  # attempts, however they ended
    successes: int
    failures: int  # attempts the provider answered with an error
    unknown_calls: int  # attempts in flight, or whose worker was lost mid-call: priced at their prompt
    cancelled_calls: int  # attempts cut by their caller (a cancelled run): charged, no savings
    error_rate: Decimal  # failures / calls in percent (2 dp); 0 with no calls
    runs: int  # agent runs whose first call is here (`totals` adds the runs that made no call)
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal  # known costs summed, failed attempts included; see unpriced_calls
    baseline_cost_usd: Decimal  # what the same tokens would have cost on the baseline model
    savings_usd: Decimal  # baseline minus cost over successful calls whose run did not fail its check
    failed_check_calls: int  # successful calls whose run failed its quality check
    failed_check_usd: Decimal  # baseline minus cost of those calls: shown apart, not in savings_usd
    checks_passed: int  # runs (counted where `runs` counts them) whose answer passed its quality check
    checks_failed: int
    checks_skipped: int  # runs that succeeded with no check to run (the agent declares none)
    unpriced_calls: int  # calls recorded with no price in force (cost unknown)
    local_calls: int  # attempts on a local provider, failed ones included
    local_successes: int  # successful calls served by a local provider
    local_share: Decimal | None  # see `local_share()`: None when there is no successful call
    p50_ms: int | None  # latency of successful calls, from the histogram
    p95_ms: int | None
    p99_ms: int | None
    mean_latency_ms: int | None
    tokens_per_second: Decimal | None  # completion tokens / generation time of successful calls (1 dp)


class HistoryRow(Figures):
    period: dt.date  # the day, the Monday of the ISO week, or the 1st of the month


class BreakdownRow(Figures):
    key: Any  # provider name, model name, agent slug or user id ("" or None when the ledger named none)
    label: str  # for display: "provider/model" for models, the username for users, "(none)" when missing
    provider: str | None  # the provider name for by="provider" and by="model", else None
    is_local: bool | None  # for by="provider" and by="model": every call of the group was local


class RunCounts(TypedDict):
    """Agent runs of a range: every run once, including those that failed before any provider call."""

    runs: int  # runs with a call, where their first call is, plus runs_without_calls
    runs_without_calls: int  # runs created in the range that never reached a provider
    checks_passed: int
    checks_failed: int
    checks_skipped: int


class Totals(Figures):
    """`Figures` of a whole range, with `runs` counting every run (see `RunCounts`)."""

    runs_without_calls: int


def local_share(*, local_successes: int, successes: int) -> Decimal | None:
    """The local share: successful calls served by a local provider / successful calls, in percent.

    A failed attempt is nobody's success, local or not (the error rate shows it). With no successful
    call there is no share to give: None (shown as a dash), never 0% or 100%.
    """
    if not successes:
        return None
    return _percent(local_successes, successes)


def local_share_on_target(*, share: Decimal | None, target: Decimal) -> bool | None:
    """Whether a local share meets the policy's target; None when there is no share to judge."""
    return None if share is None else share >= target


def figures_from_sums(sums: dict[str, Any]) -> Figures:
    """Turn the column sums of some rollup rows (or of live ledger aggregates) into figures.

    `sums` holds `sum_<column>` for the rollup columns (see metrics.models.RollupFigures) plus
    `sum_local_calls` and `sum_local_successes`; a missing key counts as zero.
    """
    ints = {name: int(sums.get(f"sum_{name}") or 0) for name in INT_SUMS}
    money = {name: Decimal(sums.get(f"sum_{name}") or 0) for name in MONEY_SUMS}
    local_calls = int(sums.get("sum_local_calls") or 0)
    local_successes = int(sums.get("sum_local_successes") or 0)
    histogram = [int(sums.get(f"sum_{name}") or 0) for name in LATENCY_FIELDS]
    calls, successes = ints["calls"], ints["successes"]
    return {
        "calls": calls,
        "successes": successes,
        "failures": ints["failures"],
        "unknown_calls": ints["unknown_calls"],
        "cancelled_calls": ints["cancelled_calls"],
        "error_rate": _percent(ints["failures"], calls) if calls else Decimal("0.00"),
        "runs": ints["runs"],
        "prompt_tokens": ints["prompt_tokens"],
        "completion_tokens": ints["completion_tokens"],
        "cost_usd": money["cost_usd"],
        "baseline_cost_usd": money["baseline_cost_usd"],
        "savings_usd": money["savings_usd"],
        "failed_check_calls": ints["failed_check_calls"],
        "failed_check_usd": money["failed_check_usd"],
        "checks_passed": ints["checks_passed"],
        "checks_failed": ints["checks_failed"],
        "checks_skipped": ints["checks_skipped"],
        "unpriced_calls": ints["unpriced_calls"],
        "local_calls": local_calls,
        "local_successes": local_successes,
        "local_share": local_share(local_successes=local_successes, successes=successes),
        "p50_ms": percentile_from_histogram(histogram, 0.50),
        "p95_ms": percentile_from_histogram(histogram, 0.95),
        "p99_ms": percentile_from_histogram(histogram, 0.99),
        "mean_latency_ms": round(ints["latency_sum_ms"] / successes) if successes else None,
        "tokens_per_second": (
            (Decimal(ints["gen_completion_tokens"]) * 1000 / ints["gen_ms"]).quantize(_TENTH, ROUND_HALF_UP)
            if ints["gen_ms"]
            else None
        ),
    }


def percentile_from_histogram(counts: list[int], q: float) -> int | None:
    """The q-quantile (0..1) of the latencies counted in `counts`, interpolated inside its bucket."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            low = LATENCY_BOUNDS_MS[index - 1] if index else 0
            if index == len(LATENCY_BOUNDS_MS):
                return low  # the open-ended top bucket: report its floor rather than invent a ceiling
            high = LATENCY_BOUNDS_MS[index]
            return round(low + (high - low) * (rank - seen) / count)
        seen += count
    return None


# The rollup columns, by how they are summed: integers (packed into one expression when read,
# see metrics.selectors) and money (summed as decimals).
INT_SUMS = (
    "calls",
    "successes",
    "failures",
    "unknown_calls",
    "cancelled_calls",
    "runs",
    "prompt_tokens",
    "completion_tokens",
    "failed_check_calls",
    "checks_passed",
    "checks_failed",
    "checks_skipped",
    "unpriced_calls",
    "latency_sum_ms",
    "gen_completion_tokens",
    "gen_ms",
)
MONEY_SUMS = ("cost_usd", "baseline_cost_usd", "savings_usd", "failed_check_usd")


def _percent(part: int, whole: int) -> Decimal:
    return (Decimal(part) * 100 / whole).quantize(_CENT, ROUND_HALF_UP)
