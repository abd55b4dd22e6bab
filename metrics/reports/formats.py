"""The report written out: JSON (what the API serves and the snapshot stores), CSV, a plain-text table.

Figures are Decimals in a `Report` and become text only here (and on the report page), each
through core.formatting: machines get `machine` / `plain` (money to MONEY_PLACES places,
timestamps in ISO 8601 UTC), people get `money`, `percent`, `duration_ms`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from core.formatting import (
    count,
    count_signed,
    duration_ms,
    machine,
    money,
    money_signed,
    percent,
    percent_json,
    percent_points,
    timestamp,
    timestamp_parse,
)
from core.months import month_label, month_parse
from core.tables import Column, csv_text
from metrics.reports.types import (
    BREAKDOWNS,
    CHANGE_KEYS,
    FIGURE_KINDS,
    LATER_BREAKDOWNS,
    Figures,
    MonthFigures,
    Report,
    ReportFilters,
    Row,
)

# --- JSON


def figures_json(figures: Figures) -> dict[str, Any]:
    return {name: machine(kind, getattr(figures, name)) for name, kind in FIGURE_KINDS.items()}


def report_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data: the API's answer, the command's --format json, the stored snapshot.

    Keys: month ("YYYY-MM"), start and end (ISO dates), generated_at (ISO 8601 UTC), final,
    target_local_share, every `Figures` field, by_provider / by_model / by_agent / by_user /
    by_source / by_team / by_key (lists of {key, label, provider, is_local, and the figures}),
    previous (the month before: its "month" and figures), change (this month minus the previous
    one for CHANGE_KEYS) and filters ({source, team, key}: the calls covered; null means all).
    """
    change = report.change()
    return {
        "month": month_label(report.month),
        "start": report.start.isoformat(),
        "end": report.end.isoformat(),
        "generated_at": timestamp(report.generated_at),
        "final": report.final,
        "target_local_share": percent_json(report.target_local_share),
        **figures_json(report.figures),
        **{
            attribute: [
                {
                    "key": r.key,
                    "label": r.label,
                    "provider": r.provider,
                    "is_local": r.is_local,
                    **figures_json(r.figures),
                }
                for r in getattr(report, attribute)
            ]
            for attribute, _ in BREAKDOWNS
        },
        "previous": {"month": month_label(report.previous.month), **figures_json(report.previous.figures)},
        "change": {name: machine(FIGURE_KINDS[name], change[name]) for name in CHANGE_KEYS},
        "filters": {"source": report.filters.source, "team": report.filters.team_id, "key": report.filters.key_id},
    }


def figures_from_json(data: dict[str, Any]) -> Figures:
    """The inverse of `figures_json`; a key an older snapshot lacks keeps its default."""
    values: dict[str, Any] = {}
    for name, kind in FIGURE_KINDS.items():
        if name not in data:
            continue
        value = data[name]
        if value is None:
            values[name] = None
        elif kind in ("count", "ms"):
            values[name] = int(value)
        else:
            values[name] = Decimal(value)
    return Figures(**values)


def report_from_json(data: dict[str, Any], *, stored: bool) -> Report:
    """A report from its JSON (a stored snapshot)."""
    rows = {
        attribute: [
            Row(
                key=r["key"],
                label=r["label"],
                provider=r["provider"],
                is_local=r["is_local"],
                figures=figures_from_json(r),
            )
            for r in data.get(attribute, [])
        ]
        for attribute, _ in BREAKDOWNS
    }
    previous = data["previous"]
    filters = data.get("filters") or {}
    return Report(
        month=month_parse(data["month"]),
        start=dt.date.fromisoformat(data["start"]),
        end=dt.date.fromisoformat(data["end"]),
        generated_at=timestamp_parse(data["generated_at"]),
        final=data["final"],
        target_local_share=Decimal(data["target_local_share"]),
        figures=figures_from_json(data),
        previous=MonthFigures(month=month_parse(previous["month"]), figures=figures_from_json(previous)),
        stored=stored,
        filters=ReportFilters(source=filters.get("source"), team_id=filters.get("team"), key_id=filters.get("key")),
        predates=tuple(attribute for attribute in LATER_BREAKDOWNS if attribute not in data),
        **rows,
    )


def report_filename(report: Report) -> str:
    """A download's name, without its extension: the month, and the filters when there are any."""
    name = f"switchyard-savings-{month_label(report.month)}"
    if report.filters.source:
        name += f"-{report.filters.source}"
    if report.filters.team_id is not None:
        name += f"-team-{report.filters.team_id}"
    if report.filters.key_id is not None:
        name += f"-key-{report.filters.key_id}"
    return name


# --- CSV: one table, the month's totals, the previous month's, then a row per provider, model,
# agent, user, source, team and API key.


def _figure_column(name: str) -> Column:
    return Column(name, lambda line: getattr(line["figures"], name), FIGURE_KINDS[name])


CSV_COLUMNS: tuple[Column, ...] = (
    Column("section", lambda line: line["section"]),
    Column("key", lambda line: line["key"]),
    Column("label", lambda line: line["label"]),
    *(_figure_column(name) for name in FIGURE_KINDS),
    Column("target_local_share", lambda line: line.get("target"), "percent"),
)


def report_csv(report: Report) -> str:
    month, previous = month_label(report.month), month_label(report.previous.month)
    lines: list[dict[str, Any]] = [
        {
            "section": "month",
            "key": month,
            "label": month,
            "figures": report.figures,
            "target": report.target_local_share,
        },
        {"section": "previous", "key": previous, "label": previous, "figures": report.previous.figures},
    ]
    for attribute, dimension in BREAKDOWNS:
        lines += [
            {"section": dimension, "key": r.key, "label": r.label, "figures": r.figures}
            for r in getattr(report, attribute)
        ]
    return csv_text(columns=CSV_COLUMNS, rows=lines)


# --- The plain-text table, for a terminal or an email body.


def report_table(report: Report) -> str:
    f, change = report.figures, report.change()
    month = month_label(report.month)
    lines = [
        f"Switchyard savings report for {month} (UTC{'' if report.final else ', month not final'})",
        "",
        f"Runs        {count(f.runs)}: {count(f.checks_passed)} passed the quality check, "
        f"{count(f.checks_failed)} failed it, {count(f.checks_skipped)} skipped it; "
        f"{count(f.runs_without_calls)} failed before any call",
        f"Calls       {count(f.calls)}, errors {percent(f.error_rate)}",
        f"Local share {percent(f.local_share)} (target {percent(report.target_local_share)})",
        f"Tokens      {count(f.prompt_tokens)} prompt, {count(f.completion_tokens)} completion",
        f"Cost        {money(f.cost_usd)}",
        f"Baseline    {money(f.baseline_cost_usd)}",
        f"Savings     {money(f.savings_usd)}",
        f"Failed check {money(f.failed_check_usd)} over {count(f.failed_check_calls)} calls (not in the savings)",
        f"Latency     p50 {duration_ms(f.p50_ms)}, p95 {duration_ms(f.p95_ms)}",
    ]
    if f.unpriced_calls:
        lines.append(f"({count(f.unpriced_calls)} calls had no price in force and are not in the cost)")
    if f.unknown_calls:
        lines.append(
            f"({count(f.unknown_calls)} calls have an unknown outcome: their worker was lost mid-call; "
            "they are priced at their prompt)"
        )
    lines += [
        "",
        f"Against {month_label(report.previous.month)}: calls {count_signed(change['calls'])}, "
        f"cost {money_signed(change['cost_usd'])}, savings {money_signed(change['savings_usd'])}, "
        f"local share {percent_points(change['local_share'])}",
    ]
    for attribute, dimension in BREAKDOWNS:
        lines += ["", f"By {dimension}", f"  {'':<32} {'calls':>10} {'local':>8} {'cost':>12} {'savings':>12}"]
        if attribute in report.predates:
            lines.append("  (not in this snapshot: it was stored before this breakdown existed)")
        for r in getattr(report, attribute):
            lines.append(
                f"  {r.label[:32]:<32} {count(r.figures.calls):>10} {percent(r.figures.local_share):>8} "
                f"{money(r.figures.cost_usd):>12} {money(r.figures.savings_usd):>12}"
            )
    return "\n".join(lines) + "\n"
