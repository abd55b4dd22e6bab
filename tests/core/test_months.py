"""core.months: the one place that counts months."""

import datetime as dt

import pytest

from core.months import (
    month_bounds,
    month_label,
    month_next,
    month_parse,
    month_periods,
    month_previous,
    month_start,
)


def test_it_reads_a_month_as_its_first_day():
    assert month_parse("2026-03") == dt.date(2026, 3, 1)
    assert month_parse("2000-01") == dt.date(2000, 1, 1)
    assert month_parse("2100-12") == dt.date(2100, 12, 1)


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "26-03", "2026-3", "march", "", "2026-03-01"])
def test_it_refuses_a_malformed_month_with_an_example_of_a_good_one(text):
    with pytest.raises(ValueError, match=r"Month must look like 2026-03 \(YYYY-MM\)"):
        month_parse(text)


@pytest.mark.parametrize("text", ["1999-12", "0001-01", "2101-01", "9999-12"])
def test_it_refuses_a_month_outside_2000_to_2100(text):
    with pytest.raises(ValueError, match="between 2000-01 and 2100-12"):
        month_parse(text)


def test_it_knows_the_first_and_last_day_of_every_month():
    assert month_bounds(dt.date(2024, 2, 17)) == (dt.date(2024, 2, 1), dt.date(2024, 2, 29))
    assert month_bounds(dt.date(2026, 12, 31)) == (dt.date(2026, 12, 1), dt.date(2026, 12, 31))


def test_it_steps_across_a_year_both_ways():
    assert month_next(dt.date(2026, 12, 31)) == dt.date(2027, 1, 1)
    assert month_previous(dt.date(2026, 1, 31)) == dt.date(2025, 12, 1)
    assert month_label(month_next(dt.date(2100, 11, 30))) == "2100-12"


def test_it_lists_the_months_a_range_touches():
    assert month_periods(dt.date(2025, 11, 20), dt.date(2026, 2, 1)) == [
        dt.date(2025, 11, 1),
        dt.date(2025, 12, 1),
        dt.date(2026, 1, 1),
        dt.date(2026, 2, 1),
    ]


def test_a_month_starts_at_midnight_utc_whatever_the_zone_of_the_moment():
    # 00:30 on December 1st in UTC+1 is still November in UTC.
    moment = dt.datetime(2026, 12, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert month_start(moment) == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
