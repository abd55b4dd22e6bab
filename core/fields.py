"""API fields that write money and instants the one way the project writes them for machines."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from rest_framework import serializers

from core.formatting import MONEY_PLACES, money_json, timestamp


class MoneyField(serializers.DecimalField):
    """US dollars as a decimal string with MONEY_PLACES places, like the monthly report's."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("read_only", True)
        super().__init__(max_digits=18, decimal_places=MONEY_PLACES, **kwargs)

    def to_representation(self, value: Decimal) -> str | None:
        return money_json(value)


class TimestampField(serializers.DateTimeField):
    """An instant as ISO 8601 in UTC with "Z", like the monthly report's `generated_at`."""

    def to_representation(self, value: dt.datetime) -> str | None:
        return timestamp(value)


class AsciiIntegerField(serializers.IntegerField):
    """An integer written with ASCII digits. DRF's IntegerField reads text with Python's int(),
    which takes any Unicode digits: `?workflow=%D9%A1` (an Arabic-Indic one) named workflow 1, as ids in
    paths once did (agents.api._pk)."""

    def to_internal_value(self, data: object) -> int:
        if isinstance(data, str) and not data.isascii():
            self.fail("invalid")
        return super().to_internal_value(data)


MAX_ID = 2**63 - 1  # larger ids would overflow PostgreSQL's bigint


def path_id(value: str) -> int | None:
    """An id written in a URL path, or None when it cannot name a row: ASCII digits only (str.isdigit()
    also takes "²", which int() refuses, and Arabic-Indic digits, which int() reads), within a bigint."""
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_ID:
        return None
    return int(value)


class TextField(serializers.CharField):
    """Text in a JSON body, and only text: DRF's CharField also takes a number (42 becomes "42"),
    which the schema (type string) refuses, so a client generated from it and the server disagreed."""

    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)
