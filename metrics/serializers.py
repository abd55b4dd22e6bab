"""The monthly report's JSON as the schema declares it: `metrics.reports.formats.report_json` writes
it, these serializers only describe it (one field per `Figures` field, typed by its kind)."""

from __future__ import annotations

from dataclasses import fields
from typing import get_type_hints

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.formatting import MONEY_PLACES
from metrics.reports.types import CHANGE_KEYS, FIGURE_KINDS, Figures
from routing.sources import Source

MONTH_PATTERN = r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])$"  # what core.months accepts: 2000-01 .. 2100-12
MONTH_LABEL = r"^[0-9]{4}-[0-9]{2}$"  # a report's own months (2000-01's previous month is 1999-12)


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "integer"}], "nullable": True})
class RowKeyField(serializers.Field):
    """A provider, model or agent name, a user id, a source, a team id or an API key id."""


def _figure_field(name: str, *, nullable: bool) -> serializers.Field:
    kind = FIGURE_KINDS[name]
    if kind in ("count", "ms"):
        return serializers.IntegerField(allow_null=nullable)
    places = {"money": MONEY_PLACES, "percent": 2, "rate": 1}[kind]
    return serializers.DecimalField(max_digits=30, decimal_places=places, allow_null=nullable)


def _figures_serializer(name: str, *, names: tuple[str, ...], all_nullable: bool) -> type[serializers.Serializer]:
    hints = get_type_hints(Figures)
    declared = {
        n: _figure_field(n, nullable=all_nullable or type(None) in getattr(hints[n], "__args__", ())) for n in names
    }
    return type(name, (serializers.Serializer,), declared)


FiguresOutput = _figures_serializer("FiguresOutput", names=tuple(f.name for f in fields(Figures)), all_nullable=False)
ReportChangeOutput = _figures_serializer("ReportChangeOutput", names=CHANGE_KEYS, all_nullable=True)


class ReportRowOutput(FiguresOutput):
    key = RowKeyField()
    label = serializers.CharField()
    provider = serializers.CharField(allow_null=True)
    is_local = serializers.BooleanField(allow_null=True)


class PreviousMonthOutput(FiguresOutput):
    month = serializers.RegexField(MONTH_LABEL)


class ReportFiltersOutput(serializers.Serializer):
    source = serializers.ChoiceField(choices=Source.choices, allow_null=True)
    team = serializers.IntegerField(allow_null=True, help_text="A team id.")
    key = serializers.IntegerField(allow_null=True, help_text="An API key id.")


class ReportOutput(FiguresOutput):
    month = serializers.RegexField(MONTH_LABEL)
    start = serializers.DateField()
    end = serializers.DateField()
    generated_at = serializers.DateTimeField()
    final = serializers.BooleanField(help_text="The month is over: these figures are its stored snapshot.")
    target_local_share = serializers.DecimalField(max_digits=5, decimal_places=2)
    by_provider = ReportRowOutput(many=True)
    by_model = ReportRowOutput(many=True)
    by_agent = ReportRowOutput(many=True)
    by_user = ReportRowOutput(many=True)
    by_source = ReportRowOutput(many=True, help_text="Agents (Switchyard's own calls) and the gateway.")
    by_team = ReportRowOutput(many=True, help_text="Calls with no team are in the row whose key is null.")
    by_key = ReportRowOutput(
        many=True, help_text="Labelled by the key's prefix and name; calls with no key (agent runs) have key null."
    )
    previous = PreviousMonthOutput()
    change = ReportChangeOutput(help_text="This month minus the previous one (points for shares).")
    filters = ReportFiltersOutput(
        help_text="The calls this report covers (null: all); a filtered report is never stored."
    )
