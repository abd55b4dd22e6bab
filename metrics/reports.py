"""The monthly savings report: figures for one UTC month, frozen once the month is over.

A report is a JSON-ready dict (money, percentages and rates as fixed-decimal strings, so the
JSON, the CSV and the stored snapshot all say exactly the same thing). A finished month is
stored in `MonthlyReport` the first time its figures are complete (rollups refreshed past the
month's end); from then on the stored copy is served, whatever happens to prices or the routing
policy, until someone regenerates it on purpose.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone

from metrics.models import MonthlyReport
from metrics.rollups import rollup_refresh, rollups_fresh_until
from metrics.selectors import breakdown, totals
from routing.selectors import routing_policy

logger = logging.getLogger(__name__)

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
_MONEY = Decimal("0.000001")  # a millionth of a dollar: local calls cost fractions of a cent
_MONEY_KEYS = ("cost_usd", "baseline_cost_usd", "savings_usd")
_SUMMARY_KEYS = (
    "runs",
    "calls",
    "successes",
    "failures",
    "error_rate",
    "local_calls",
    "local_share",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "baseline_cost_usd",
    "savings_usd",
    "unpriced_calls",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "tokens_per_second",
)
CSV_COLUMNS = ("section", "key", "label", *_SUMMARY_KEYS, "target_local_share")
BREAKDOWNS = (("by_provider", "provider"), ("by_model", "model"), ("by_agent", "agent"), ("by_user", "user"))


def month_parse(month: str) -> dt.date:
    """ "YYYY-MM" -> the first day of that month; ValueError with a readable message otherwise."""
    match = _MONTH_RE.match(month or "")
    if not match or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"Month must look like 2026-03, got {month!r}.")
    if not 2000 <= int(match[1]) <= 2100:
        # The report also reads the months either side; far years would overflow the calendar.
        raise ValueError(f"Month must look like 2026-03 and lie between 2000-01 and 2100-12, got {month!r}.")
    return dt.date(int(match[1]), int(match[2]), 1)


def month_bounds(first: dt.date) -> tuple[dt.date, dt.date]:
    """First and last day of the month starting at `first`."""
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return first, following - dt.timedelta(days=1)


def month_previous(first: dt.date) -> dt.date:
    return (first - dt.timedelta(days=1)).replace(day=1)


def report_get(*, month: str) -> dict[str, Any]:
    """The stored snapshot of a finished month, else the figures as they stand (stored when final)."""
    first = month_parse(month)
    stored = MonthlyReport.objects.filter(month=first).first()
    if stored is not None:
        return stored.data
    data = report_build(first=first)
    if data["final"]:
        data = _store(first=first, data=data, replace=False)
    return data


def report_regenerate(*, month: str) -> dict[str, Any]:
    """Rebuild a month's report from the current ledger on purpose, replacing any snapshot."""
    first = month_parse(month)
    start, end = month_bounds(first)
    # Recompute the whole month: regenerating is for ledger rows corrected in place, which no watermark sees.
    rollup_refresh(days=(start + dt.timedelta(days=i) for i in range((end - start).days + 1)))
    data = report_build(first=first)
    if data["final"]:
        data = _store(first=first, data=data, replace=True)
    return data


def report_build(*, first: dt.date) -> dict[str, Any]:
    """Compute a month's report from the rollups.

    Keys: month ("YYYY-MM"), start and end (ISO dates), generated_at (ISO datetime, UTC),
    final (bool: the month is over and the rollups cover it, so this is what gets stored),
    target_local_share (percent string from the routing policy), every summary figure
    (runs, calls, successes, failures, error_rate, local_calls, local_share, prompt_tokens,
    completion_tokens, cost_usd, baseline_cost_usd, savings_usd, unpriced_calls, p50_ms,
    p95_ms, p99_ms, tokens_per_second), by_provider / by_model / by_agent / by_user (lists of
    {key, label, provider, is_local, and the same figures}), previous (the previous month's
    summary figures plus its "month") and change (this month minus the previous one, for
    runs, calls, local_share (points), prompt_tokens, completion_tokens, cost_usd,
    baseline_cost_usd, savings_usd, p50_ms, p95_ms; null where either side has no value).
    """
    start, end = month_bounds(first)
    summary = _summary(totals(start=start, end=end))
    previous = _previous_summary(month_previous(first))
    data: dict[str, Any] = {
        "month": f"{first:%Y-%m}",
        "start": start.isoformat(),
        "end": end.isoformat(),
        "generated_at": timezone.now().astimezone(dt.UTC).isoformat(),
        "final": _is_final(end),
        "target_local_share": _policy_target(),
        **summary,
    }
    for key, dimension in BREAKDOWNS:
        data[key] = [_jsonable(row) for row in breakdown(start=start, end=end, by=dimension)]
    data["previous"] = previous
    data["change"] = _change(summary, previous)
    return data


def report_csv(data: dict[str, Any]) -> str:
    """One CSV table: the month's totals, the previous month's, then a row per provider, model, agent, user."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerow({**data, "section": "month", "key": data["month"], "label": data["month"]})
    previous = data["previous"]
    writer.writerow({**previous, "section": "previous", "key": previous["month"], "label": previous["month"]})
    for key, dimension in BREAKDOWNS:
        for row in data[key]:
            writer.writerow({**row, "section": dimension, "key": "" if row["key"] is None else row["key"]})
    return out.getvalue()


def report_table(data: dict[str, Any]) -> str:
    """The report as plain text for a terminal or an email body."""
    target = data["target_local_share"]
    lines = [
        f"Switchyard savings report for {data['month']} (UTC{'' if data['final'] else ', month not final'})",
        "",
        f"Runs {data['runs']:>12,}    Calls {data['calls']:>12,}    Errors {data['error_rate']}%",
        f"Local share {'-' if data['local_share'] is None else data['local_share'] + '%'} (target {target}%)",
        f"Tokens      {data['prompt_tokens']:,} prompt, {data['completion_tokens']:,} completion",
        f"Cost        ${_dollars(data['cost_usd'])}",
        f"Baseline    ${_dollars(data['baseline_cost_usd'])}",
        f"Savings     ${_dollars(data['savings_usd'])}",
        f"Latency     p50 {_ms(data['p50_ms'])}, p95 {_ms(data['p95_ms'])}",
    ]
    if data["unpriced_calls"]:
        lines.append(f"({data['unpriced_calls']:,} calls had no price in force and are not in the cost)")
    change, previous = data["change"], data["previous"]
    lines += [
        "",
        f"Against {previous['month']}: calls {_signed(change['calls'])}, "
        f"cost ${_signed(change['cost_usd'], money=True)}, "
        f"savings ${_signed(change['savings_usd'], money=True)}, local share {_signed(change['local_share'])} points",
    ]
    for key, dimension in BREAKDOWNS:
        lines += ["", f"By {dimension}", f"  {'':<32} {'calls':>10} {'local %':>8} {'cost $':>12} {'savings $':>12}"]
        for row in data[key]:
            lines.append(
                f"  {row['label'][:32]:<32} {row['calls']:>10,} {row['local_share'] or '-':>8} "
                f"{_dollars(row['cost_usd']):>12} {_dollars(row['savings_usd']):>12}"
            )
    return "\n".join(lines) + "\n"


def report_send(*, month: str) -> bool:
    """Email a month's report to SWITCHYARD_REPORT_RECIPIENTS (table in the body, CSV attached)."""
    recipients = list(settings.SWITCHYARD_REPORT_RECIPIENTS)
    if not recipients:
        logger.info("No SWITCHYARD_REPORT_RECIPIENTS: the %s savings report was not emailed.", month)
        return False
    rollup_refresh()
    data = report_get(month=month)
    message = EmailMessage(
        subject=f"Switchyard savings report {data['month']}: ${_dollars(data['savings_usd'])} saved",
        body=report_table(data),
        to=recipients,
    )
    message.attach(f"switchyard-savings-{data['month']}.csv", report_csv(data), "text/csv")
    message.send()
    return True


def _summary(figures: dict[str, Any]) -> dict[str, Any]:
    jsonable = _jsonable(figures)
    return {key: jsonable[key] for key in _SUMMARY_KEYS}


def _previous_summary(first: dt.date) -> dict[str, Any]:
    stored = MonthlyReport.objects.filter(month=first).first()
    if stored is not None:
        summary = {key: stored.data.get(key) for key in _SUMMARY_KEYS}
    else:
        start, end = month_bounds(first)
        summary = _summary(totals(start=start, end=end))
    return {"month": f"{first:%Y-%m}", **summary}


def _change(current: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    keys = ("runs", "calls", "local_share", "prompt_tokens", "completion_tokens", *_MONEY_KEYS, "p50_ms", "p95_ms")
    change: dict[str, Any] = {}
    for key in keys:
        now, before = current.get(key), previous.get(key)
        if now is None or before is None:
            change[key] = None
        elif isinstance(now, str):
            change[key] = str(Decimal(now) - Decimal(before))
        else:
            change[key] = now - before
    return change


def _is_final(end: dt.date) -> bool:
    fresh_until = rollups_fresh_until()
    month_over = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    return fresh_until is not None and fresh_until >= month_over


def _policy_target() -> str:
    return str(Decimal(routing_policy().target_local_share).quantize(Decimal("0.01")))


def _store(*, first: dt.date, data: dict[str, Any], replace: bool) -> dict[str, Any]:
    with transaction.atomic():
        if replace:
            report, _ = MonthlyReport.objects.update_or_create(
                month=first, defaults={"generated_at": timezone.now(), "data": data}
            )
        else:
            # Two readers of a just-finished month may race: the first snapshot wins.
            report, _ = MonthlyReport.objects.get_or_create(
                month=first, defaults={"generated_at": timezone.now(), "data": data}
            )
    return report.data


def _jsonable(figures: dict[str, Any]) -> dict[str, Any]:
    result = {}
    for key, value in figures.items():
        if key in _MONEY_KEYS:
            value = str(value.quantize(_MONEY))
        elif isinstance(value, Decimal):
            value = str(value)
        result[key] = value
    return result


def _dollars(value: str) -> str:
    return f"{Decimal(value):,.2f}"


def _ms(value: int | None) -> str:
    return "-" if value is None else f"{value:,} ms"


def _signed(value: Any, *, money: bool = False) -> str:
    if value is None:
        return "n/a"
    number = Decimal(value)
    return f"{number:+,.2f}" if money else f"{number:+,}"
