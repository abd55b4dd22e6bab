"""Tables declared as column specs, shown on a page or written as CSV by one writer.

A `Column` names its header, how to read its value from a row and the kind of value it holds;
`core.formatting` turns the value into text: `shown` for a page, `plain` for a CSV cell. So a
page's table and its CSV cannot drift apart, and every CSV the project writes (history exports,
the monthly report from the API, the command and the email) goes through `csv_write`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from core.formatting import Kind, plain, shown


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[Any], Any]
    kind: Kind = "text"

    @property
    def numeric(self) -> bool:
        return self.kind != "text"

    def shown(self, row: Any) -> str:
        return shown(self.kind, self.value(row))

    def plain(self, row: Any) -> str:
        return plain(self.kind, self.value(row))


def key(name: str, header: str, kind: Kind = "text") -> Column:
    """A column that reads `row[name]` from a dict row."""
    return Column(header, lambda row: row[name], kind)


def attr(path: str, header: str, kind: Kind = "text") -> Column:
    """A column that reads a dotted attribute path ("figures.calls") from an object row."""

    def read(row: Any) -> Any:
        for part in path.split("."):
            row = getattr(row, part)
        return row

    return Column(header, read, kind)


@dataclass
class Table:
    slug: str
    title: str
    columns: Sequence[Column]
    rows: list[Any] = field(default_factory=list)

    def shown_rows(self) -> list[list[tuple[str, bool]]]:
        """Each cell as (text, is_numeric) for the template."""
        return [[(column.shown(row), column.numeric) for column in self.columns] for row in self.rows]


# A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def csv_cell(text: str, *, numeric: bool) -> str:
    """`text` as a CSV cell a spreadsheet will not run: a quote before a formula-like start.

    A number column's own figures (a negative saving, "-0.50") stay numbers; any other cell that
    starts like a formula, a model named "=HYPERLINK(...)" or "-cmd", is kept as text.
    """
    if not text.startswith(FORMULA_STARTS) or (numeric and PLAIN_NUMBER.fullmatch(text)):
        return text
    return "'" + text


def csv_write(*, out: TextIO, columns: Sequence[Column], rows: Iterable[Any], header: bool = True) -> None:
    """Write a header line (unless `header` is False) and one line per row, each cell in its machine format."""
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow([csv_cell(column.header, numeric=False) for column in columns])
    writer.writerows([csv_cell(column.plain(row), numeric=column.numeric) for column in columns] for row in rows)


def csv_text(*, columns: Sequence[Column], rows: Iterable[Any]) -> str:
    out = io.StringIO()
    csv_write(out=out, columns=columns, rows=rows)
    return out.getvalue()
