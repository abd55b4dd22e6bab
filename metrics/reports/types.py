"""The monthly report as typed data: Decimals for money and shares, ints for counts, dates for days."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

from core.formatting import Kind


@dataclass(frozen=True)
class Figures:
    """One span's figures (a month, or one provider, model, agent or user in it).

    Run counts (`runs_without_calls`, the `checks_*`) are known for a whole month only; a
    breakdown row leaves them at 0. `local_share` is None when there was no successful call:
    no share to speak of, shown as a dash rather than 0% or 100%.
    """

    runs: int = 0
    runs_without_calls: int = 0
    checks_passed: int = 0
    checks_failed: int = 0
    checks_skipped: int = 0
    calls: int = 0
    successes: int = 0
    failures: int = 0
    unknown_calls: int = 0
    cancelled_calls: int = 0
    error_rate: Decimal = Decimal("0.00")
    local_calls: int = 0
    local_successes: int = 0
    local_share: Decimal | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    baseline_cost_usd: Decimal = Decimal(0)
    savings_usd: Decimal = Decimal(0)
    failed_check_calls: int = 0
    failed_check_usd: Decimal = Decimal(0)
    unpriced_calls: int = 0
    p50_ms: int | None = None
    p95_ms: int | None = None
    p99_ms: int | None = None
    tokens_per_second: Decimal | None = None

    @classmethod
    def of(cls, figures: Mapping[str, Any]) -> Figures:
        """From a metrics selector's figure dict; keys it does not give keep their defaults."""
        return cls(**{f.name: figures[f.name] for f in fields(cls) if f.name in figures})


def _kind(name: str) -> Kind:
    if name.endswith("_usd"):
        return "money"
    if name in ("error_rate", "local_share"):
        return "percent"
    if name == "tokens_per_second":
        return "rate"
    return "ms" if name.endswith("_ms") else "count"


# How each figure is written (core.formatting kinds): the JSON, the CSV and the pages all ask here.
FIGURE_KINDS: dict[str, Kind] = {f.name: _kind(f.name) for f in fields(Figures)}

# The figures a month is compared on with the month before it.
CHANGE_KEYS = (
    "runs",
    "calls",
    "failures",
    "local_share",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "baseline_cost_usd",
    "savings_usd",
    "failed_check_usd",
    "p50_ms",
    "p95_ms",
)


@dataclass(frozen=True)
class Row:
    """One provider, model, agent, user, source, team or API key in a month."""

    key: str | int | None  # provider name, model name, agent slug, user id, source, team id or key id
    label: str
    provider: str | None
    is_local: bool | None
    figures: Figures


@dataclass(frozen=True)
class MonthFigures:
    month: dt.date  # its first day
    figures: Figures


# (attribute of Report, the dimension the metrics selectors call it)
BREAKDOWNS: tuple[tuple[str, str], ...] = (
    ("by_provider", "provider"),
    ("by_model", "model"),
    ("by_agent", "agent"),
    ("by_user", "user"),
    ("by_source", "source"),
    ("by_team", "team"),
    ("by_key", "key"),
)
# Added with the gateway: a snapshot stored before has none of them (see Report.predates).
LATER_BREAKDOWNS = ("by_source", "by_team", "by_key")


@dataclass(frozen=True)
class ReportFilters:
    """Which calls a report covers: a source ("agents" or "gateway", routing.sources), a team id,
    an API key id; None means all. A filtered report is built live, never stored as the month's."""

    source: str | None = None
    team_id: int | None = None
    key_id: int | None = None

    def __bool__(self) -> bool:
        return any(value is not None for value in (self.source, self.team_id, self.key_id))

    def selector_kwargs(self) -> dict[str, Any]:
        return {"source": self.source, "team_id": self.team_id, "key_id": self.key_id}


ALL_CALLS = ReportFilters()


@dataclass(frozen=True)
class Report:
    """A UTC month's savings report.

    `final`: the month is over and the rollups cover it, so these figures are what gets stored.
    `stored`: read from the stored snapshot rather than built now.
    `filters`: the calls it covers (all of them when empty); a filtered report is never stored.
    """

    month: dt.date  # its first day
    start: dt.date
    end: dt.date
    generated_at: dt.datetime
    final: bool
    target_local_share: Decimal
    figures: Figures
    by_provider: list[Row]
    by_model: list[Row]
    by_agent: list[Row]
    by_user: list[Row]
    previous: MonthFigures
    by_source: list[Row] = field(default_factory=list)
    by_team: list[Row] = field(default_factory=list)
    by_key: list[Row] = field(default_factory=list)
    stored: bool = False
    filters: ReportFilters = ALL_CALLS
    predates: tuple[str, ...] = ()  # breakdowns a stored snapshot has none of: it was kept before they were

    def change(self) -> dict[str, Any]:
        """This month minus the previous one for CHANGE_KEYS (points for the share); None where
        either side has no value."""
        change: dict[str, Any] = {}
        for name in CHANGE_KEYS:
            now, before = getattr(self.figures, name), getattr(self.previous.figures, name)
            change[name] = None if now is None or before is None else now - before
        return change

    def as_month_figures(self) -> MonthFigures:
        return MonthFigures(month=self.month, figures=self.figures)

    def on_target(self) -> bool | None:
        """Whether the local share meets the policy's target; None with no share to judge."""
        share = self.figures.local_share
        return None if share is None else share >= self.target_local_share
