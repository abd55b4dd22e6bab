"""Validation of the metrics pages' GET parameters. Forms only validate; the views read selectors."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.utils import timezone

from core.months import EARLIEST, LATEST, month_parse
from metrics.selectors import GRANULARITIES

DEFAULT_DAYS = 30
# A day-by-day chart with more points than this is unreadable and slow to draw.
MAX_DAILY_DAYS = 731
MAX_RANGE_DAYS = 3660


def utc_today() -> dt.date:
    return timezone.now().astimezone(dt.UTC).date()


class SourceTeamKeyForm(forms.Form):
    """The filters the history pages and the monthly report share: source, team and API key.

    Choices are what the ledger has (`metrics.selectors.filter_choices`): any other value is a form
    error that names the field, never a 500. Empty means all."""

    source = forms.ChoiceField(required=False)
    team = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    key = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="API key")

    def __init__(self, data: Any = None, *, choices: dict[str, list], **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        self.fields["source"].choices = [("", "All sources"), *((s, s.capitalize()) for s in choices["sources"])]
        self.fields["team"].choices = [("", "All teams"), *((str(t["id"]), t["name"]) for t in choices["teams"])]
        self.fields["key"].choices = [("", "All keys"), *((str(k["id"]), k["label"]) for k in choices["keys"])]

    def source_team_key(self) -> dict[str, Any]:
        """The selectors' keyword arguments for these filters, from a valid form."""
        data = self.cleaned_data
        return {"source": data.get("source") or None, "team_id": data.get("team"), "key_id": data.get("key")}


class HistoryFilterForm(SourceTeamKeyForm):
    """Date range, granularity and the filters. Empty fields mean "the last 30 days" / "all"."""

    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    granularity = forms.ChoiceField(choices=[(g, g.capitalize()) for g in GRANULARITIES], required=False)
    provider = forms.ChoiceField(required=False)
    model = forms.ChoiceField(required=False)
    agent = forms.ChoiceField(required=False)
    user = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    format = forms.ChoiceField(choices=[("", "page"), ("html", "page"), ("csv", "CSV")], required=False)

    field_order = ("start", "end", "granularity", "provider", "model", "agent", "user", "source", "team", "key")

    def __init__(self, data: Any = None, *, choices: dict[str, list], **kwargs: Any) -> None:
        super().__init__(data, choices=choices, **kwargs)
        self.fields["provider"].choices = [("", "All providers"), *((p, p) for p in choices["providers"])]
        self.fields["model"].choices = [("", "All models"), *((m, m) for m in choices["models"])]
        self.fields["agent"].choices = [("", "All agents"), *((a, a) for a in choices["agents"])]
        self.fields["user"].choices = [("", "All users"), *((str(u["id"]), u["username"]) for u in choices["users"])]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        end = cleaned.get("end") or utc_today()
        start = cleaned.get("start") or end - dt.timedelta(days=DEFAULT_DAYS - 1)
        cleaned["end"], cleaned["start"] = end, start
        cleaned["granularity"] = cleaned.get("granularity") or "day"
        if "start" in self.errors or "end" in self.errors:
            return cleaned
        if start < EARLIEST:
            self.add_error("start", f"Choose a date from {EARLIEST:%Y-%m-%d} on.")
        elif end > LATEST:
            self.add_error("end", f"Choose a date up to {LATEST:%Y-%m-%d}.")
        elif start > end:
            self.add_error("end", "The end date must not be before the start date.")
        elif (end - start).days >= MAX_RANGE_DAYS:
            self.add_error("start", "Choose a range of at most ten years.")
        elif cleaned["granularity"] == "day" and (end - start).days >= MAX_DAILY_DAYS:
            self.add_error("granularity", "Day by day covers at most two years: choose week or month.")
        return cleaned

    def selector_filters(self) -> dict[str, Any]:
        """The keyword arguments every selector takes, from a valid form."""
        data = self.cleaned_data
        return {
            "start": data["start"],
            "end": data["end"],
            "provider": data.get("provider") or None,
            "model": data.get("model") or None,
            "agent": data.get("agent") or None,
            "user_id": data.get("user"),
            **self.source_team_key(),
        }


class MonthPickerForm(forms.Form):
    """The report's month picker: an <input type="month"> gives "YYYY-MM"."""

    month = forms.CharField(
        error_messages={"required": "Choose a month (YYYY-MM)."},
        widget=forms.TextInput(attrs={"type": "month"}),
    )

    def clean_month(self) -> str:
        month = self.cleaned_data["month"]
        try:
            month_parse(month)  # the one reading of "YYYY-MM", with its range and its message
        except ValueError as error:
            raise forms.ValidationError(str(error)) from error
        return month
