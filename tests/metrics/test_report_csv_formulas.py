"""Report CSV cells a spreadsheet would run as formulas are written as text; figures stay numbers."""

import csv
import io
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from metrics.rollups import rollup_refresh
from tests.metrics.conftest import utc

FORMULA = '=HYPERLINK("http://x","y")'


@pytest.fixture
def formula_month(catalog, add_entry):
    """A cloud call that cost more than the baseline (savings -0.50) on a model and agent named like formulas."""
    add_entry(
        provider=catalog.openai,
        model_name=FORMULA,
        agent="-cmd",
        created_at=utc(2026, 3, 10, 12),
        cost_usd=Decimal("1.00"),
        baseline_cost_usd=Decimal("0.50"),
    )
    rollup_refresh()


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def assert_neutralised(rows: list[dict[str, str]]) -> None:
    model = next(row for row in rows if row["section"] == "model")
    agent = next(row for row in rows if row["section"] == "agent")
    month = next(row for row in rows if row["section"] == "month")
    assert FORMULA not in {model["key"], model["label"]}
    assert "'" + FORMULA in {model["key"], model["label"]}
    assert agent["key"] == "'-cmd"
    assert month["savings_usd"].startswith("-0.5")
    assert Decimal(month["savings_usd"]) == Decimal("-0.50")
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "@", "+")), cell


def test_the_report_api_csv_writes_a_formula_named_model_as_text(formula_month, db):
    user = get_user_model().objects.create_user("boss", "boss@example.com", is_staff=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")

    response = client.get("/api/v1/reports/monthly/2026-03/?format=csv")

    assert response.status_code == 200
    assert_neutralised(rows_of(response.content.decode()))


def test_the_savings_report_command_writes_a_formula_named_model_as_text(formula_month):
    out = io.StringIO()
    call_command("savings_report", "--month", "2026-03", "--format", "csv", stdout=out)

    assert_neutralised(rows_of(out.getvalue()))
