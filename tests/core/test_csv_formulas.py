"""core.tables.csv_cell: no CSV cell starts like a spreadsheet formula, while number columns stay numbers."""

from decimal import Decimal

import pytest

from core.tables import csv_cell, csv_text, key


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+1+2", "'+1+2"),
        ("-cmd", "'-cmd"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tTAB", "'\tTAB"),
        ("\rCR", "'\rCR"),
        ("-1", "'-1"),
        ("ollama", "ollama"),
        ("", ""),
    ],
)
def test_a_text_cell_that_starts_like_a_formula_gets_a_leading_quote(text, written):
    assert csv_cell(text, numeric=False) == written


@pytest.mark.parametrize("text", ["-0.50", "-12", "0.5000000000"])
def test_a_number_columns_figures_stay_numbers(text):
    assert csv_cell(text, numeric=True) == text


@pytest.mark.parametrize("text", ["-cmd", "=1+1", "-1e3", "--1"])
def test_a_number_column_cell_that_is_not_a_plain_number_is_neutralised(text):
    assert csv_cell(text, numeric=True) == "'" + text


def test_the_csv_writer_neutralises_text_and_keeps_a_negative_saving_a_number():
    columns = [key("model", "Model"), key("savings", "Savings", "money")]

    written = csv_text(columns=columns, rows=[{"model": "-cmd", "savings": Decimal("-0.50")}])

    assert written == "Model,Savings\n'-cmd,-0.5000000000\n"
