"""core.tables: a table declared once as column specs, shown on a page and written as CSV."""

from decimal import Decimal

from core.formatting import MISSING
from core.tables import Table, csv_text, key

COLUMNS = [key("label", "Provider"), key("cost_usd", "Cost", "money"), key("local_share", "Local share", "percent")]
ROWS = [
    {"label": "ollama", "cost_usd": Decimal("0.00003"), "local_share": None},
    {"label": "openai", "cost_usd": Decimal("1234.5"), "local_share": Decimal("12.345")},
]


def test_a_page_shows_each_cell_by_its_columns_kind():
    assert Table("t", "T", COLUMNS, ROWS).shown_rows() == [
        [("ollama", False), ("<$0.0001", True), (MISSING, True)],
        [("openai", False), ("$1,234.50", True), ("12.35%", True)],
    ]


def test_the_csv_has_the_same_columns_in_machine_formats_and_empty_cells_for_no_value():
    assert csv_text(columns=COLUMNS, rows=ROWS) == (
        "Provider,Cost,Local share\nollama,0.0000300000,\nopenai,1234.5000000000,12.35\n"
    )
