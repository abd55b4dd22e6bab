"""Month arithmetic on UTC calendar months: the one place that knows how long a month is.

A month is named by its first day (a `datetime.date`) and written "YYYY-MM". Months run from
2000-01 to 2100-12: the pages and the report also read the months either side of one, and far
years would overflow the calendar.
"""

from __future__ import annotations

import datetime as dt
import re

EARLIEST = dt.date(2000, 1, 1)
LATEST = dt.date(2100, 12, 31)
# [0-9], not \d (which takes any script's digits), and fullmatch, not $ (which takes a trailing newline).
_MONTH_RE = re.compile(r"([0-9]{4})-([0-9]{2})")


def month_parse(text: str) -> dt.date:
    """ "YYYY-MM" -> the first day of that month; ValueError with a readable message otherwise."""
    match = _MONTH_RE.fullmatch(text or "")
    if not match or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"Month must look like 2026-03 (YYYY-MM), got {text!r}.")
    first = dt.date(int(match[1]), int(match[2]), 1)
    if not EARLIEST <= first <= LATEST:
        raise ValueError(
            f"Month must lie between {EARLIEST:%Y-%m} and {LATEST:%Y-%m} (YYYY-MM, like 2026-03), got {text!r}."
        )
    return first


def month_label(day: dt.date) -> str:
    """The month holding `day` as "YYYY-MM"."""
    return f"{day:%Y-%m}"


def month_first(day: dt.date) -> dt.date:
    return day.replace(day=1)


def month_next(day: dt.date) -> dt.date:
    """The first day of the month after the one holding `day`."""
    first = day.replace(day=1)
    return first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)


def month_previous(day: dt.date) -> dt.date:
    """The first day of the month before the one holding `day`."""
    return (day.replace(day=1) - dt.timedelta(days=1)).replace(day=1)


def month_last(day: dt.date) -> dt.date:
    """The last day of the month holding `day`."""
    return month_next(day) - dt.timedelta(days=1)


def month_bounds(day: dt.date) -> tuple[dt.date, dt.date]:
    """First and last day of the month holding `day`."""
    return month_first(day), month_last(day)


def month_periods(start: dt.date, end: dt.date) -> list[dt.date]:
    """The first days of every month that overlaps start..end, oldest first."""
    periods, current = [], start.replace(day=1)
    while current <= end:
        periods.append(current)
        current = month_next(current)
    return periods


def month_start(moment: dt.datetime) -> dt.datetime:
    """The instant the UTC month holding `moment` began (an aware datetime)."""
    utc = moment.astimezone(dt.UTC)
    return dt.datetime(utc.year, utc.month, 1, tzinfo=dt.UTC)
