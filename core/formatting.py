"""Money, percentages, durations and timestamps: one way to write each, for people and for machines.

For people (pages, emails, the plain-text report): `money`, `percent`, `count`, `duration_ms`,
`when`. For machines (the API, the report's JSON and every CSV): `money_json`, `percent_json`,
`timestamp`. A value that is not there reads as `MISSING` on screen and as null / an empty cell
in JSON / CSV, never as zero.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

MISSING = "\N{EN DASH}"

# The ledger's own precision (routing.pricing quantizes every cost to 10 places): the API, the
# report and the CSVs give money to the last place the ledger recorded, so their sums agree.
MONEY_PLACES = 10
_MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_PLACES)
_CENT = Decimal("0.01")
# Below a dollar, where a local team's costs often are, cents would show most charges as free.
_SMALL_QUANTUM = Decimal("0.0001")

Kind = Literal["text", "count", "money", "percent", "ms", "rate"]


def money(value: Decimal | None) -> str:
    """Dollars for people: $1,234.57 from a dollar up, four places below ($0.0123), $0.00 for
    nothing, and "<$0.0001" for a real charge too small for four places (it must not read as free)."""
    if value is None:
        return MISSING
    amount = Decimal(value)
    sign = "-" if amount < 0 else ""
    size = abs(amount)
    if size == 0:
        return "$0.00"
    if size < _SMALL_QUANTUM:
        return f"{sign}<${_SMALL_QUANTUM}"
    quantum = _CENT if size >= 1 else _SMALL_QUANTUM
    rounded = size.quantize(quantum, ROUND_HALF_UP)
    return f"{sign}${rounded:,}"


def money_signed(value: Decimal | None) -> str:
    """A change of money: "+$1.20", "-$0.0300"."""
    if value is None:
        return MISSING
    text = money(value)
    return text if text.startswith("-") else f"+{text}"


def money_json(value: Decimal | None) -> str | None:
    """Dollars for machines: a decimal string with MONEY_PLACES places ("0.0012000000")."""
    if value is None:
        return None
    # "f": a zero at ten places would otherwise print as "0E-10".
    return f"{Decimal(value).quantize(_MONEY_QUANTUM, ROUND_HALF_UP):f}"


def percent(value: Decimal | None) -> str:
    """A share in percent with two places: "50.00%"; no share at all (nothing to divide) reads MISSING."""
    if value is None:
        return MISSING
    return f"{Decimal(value).quantize(_CENT, ROUND_HALF_UP)}%"


def percent_points(value: Decimal | None) -> str:
    """A change of a percentage, in points: "+5.00 pts"."""
    if value is None:
        return MISSING
    rounded = Decimal(value).quantize(_CENT, ROUND_HALF_UP)
    return f"{'' if rounded < 0 else '+'}{rounded} pts"


def percent_json(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return str(Decimal(value).quantize(_CENT, ROUND_HALF_UP))


def count(value: int | None) -> str:
    """A whole number with thousands separators: "1,234"."""
    return MISSING if value is None else f"{int(value):,}"


def count_signed(value: int | None) -> str:
    return MISSING if value is None else f"{int(value):+,}"


def rate(value: Decimal | None) -> str:
    """A speed such as tokens per second, to one place."""
    return MISSING if value is None else f"{Decimal(value).quantize(Decimal('0.1'), ROUND_HALF_UP):,}"


def duration_ms(value: float | int | None) -> str:
    """A duration given in milliseconds: "812 ms" under ten seconds, "42.5 s" from there."""
    if value is None:
        return MISSING
    if value < 10_000:
        return f"{round(value):,} ms"
    return f"{Decimal(value) / 1000:,.1f} s"


def timestamp(value: dt.datetime | None) -> str | None:
    """An instant for machines: ISO 8601 in UTC with microseconds and "Z" ("2026-03-01T12:00:00.000000Z")."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def timestamp_parse(text: str) -> dt.datetime:
    """The inverse of `timestamp` (also reads "+00:00" and older values without microseconds)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


def when(value: dt.datetime | None) -> str:
    """An instant for people: "2026-03-01 12:00:05 UTC"."""
    if value is None:
        return MISSING
    return f"{value.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


_SHOWN = {
    "count": count,
    "money": money,
    "percent": percent,
    "ms": count,  # a latency column says "(ms)" in its header, so its cells are plain counts
    "rate": rate,
}


def machine(kind: Kind, value: Any) -> str | int | None:
    """A value for JSON: counts as ints, money, shares and rates as decimal strings, None as null."""
    if value is None:
        return None
    if kind in ("count", "ms"):
        return int(value)
    if kind == "money":
        return money_json(value)
    if kind == "percent":
        return percent_json(value)
    if kind == "rate":
        return str(Decimal(value).quantize(Decimal("0.1"), ROUND_HALF_UP))
    return str(value)


def shown(kind: Kind, value: Any) -> str:
    """A value of a table column for a page."""
    if kind == "text":
        return MISSING if value is None else str(value)
    return _SHOWN[kind](value)


def plain(kind: Kind, value: Any) -> str:
    """A value of a table column for a CSV cell: its JSON text, an empty cell for no value."""
    value = machine(kind, value)
    return "" if value is None else str(value)
