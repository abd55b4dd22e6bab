"""core.formatting: the one way money, shares, durations and instants are written."""

import datetime as dt
from decimal import Decimal

import pytest
from django.template import Context, Template

from core.formatting import MISSING, duration_ms, money, money_json, percent, timestamp, when


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal(0), "$0.00"),
        (Decimal("0.00004"), "<$0.0001"),
        (Decimal("-0.00004"), "-<$0.0001"),
        (Decimal("0.0001"), "$0.0001"),
        (Decimal("0.01"), "$0.0100"),
        (Decimal("0.50005"), "$0.5001"),
        (Decimal("-0.003"), "-$0.0030"),
        (Decimal("1"), "$1.00"),
        (Decimal("1234.565"), "$1,234.57"),
        (None, MISSING),
    ],
)
def test_money_reads_cents_from_a_dollar_four_places_below_and_never_shows_a_real_charge_as_free(amount, text):
    assert money(amount) == text


def test_money_for_machines_has_the_ledgers_ten_places():
    assert money_json(Decimal("3.6")) == "3.6000000000"
    assert money_json(Decimal("0.00000000004")) == "0.0000000000"
    assert money_json(None) is None


def test_a_share_has_two_places_and_no_share_is_a_dash_not_zero():
    assert percent(Decimal("66.666")) == "66.67%"
    assert percent(Decimal(0)) == "0.00%"
    assert percent(None) == MISSING


def test_a_duration_reads_in_milliseconds_under_ten_seconds_and_in_seconds_from_there():
    assert duration_ms(812) == "812 ms"
    assert duration_ms(9_999) == "9,999 ms"
    assert duration_ms(42_500) == "42.5 s"
    assert duration_ms(None) == MISSING


def test_an_instant_for_machines_is_iso_8601_utc_with_microseconds_and_z():
    paris = dt.timezone(dt.timedelta(hours=1))
    assert timestamp(dt.datetime(2026, 3, 1, 13, 0, tzinfo=paris)) == "2026-03-01T12:00:00.000000Z"
    assert timestamp(None) is None


def test_an_instant_for_people_is_written_in_utc():
    paris = dt.timezone(dt.timedelta(hours=1))
    assert when(dt.datetime(2026, 3, 1, 13, 0, 5, tzinfo=paris)) == "2026-03-01 12:00:05 UTC"


def test_the_template_filters_are_the_same_functions():
    template = Template("{% load formatting %}{{ tiny|money }} {{ share|percent }} {{ wall|duration_s }}")
    text = template.render(Context({"tiny": Decimal("0.00001"), "share": None, "wall": 42.5}))
    assert text == f"&lt;$0.0001 {MISSING} 42.5 s"


def test_code_spans_set_commands_as_code_and_escape_the_rest():
    from core.templatetags.formatting import code_spans

    assert code_spans("start `ollama serve` <now> & `a<b`") == (
        "start <code>ollama serve</code> &lt;now&gt; &amp; <code>a&lt;b</code>"
    )
    assert code_spans("an odd ` backtick") == "an odd ` backtick"
