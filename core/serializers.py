"""Serializer pieces every app's API shares."""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers


class ClosedInput(serializers.Serializer):
    """A request body that refuses fields it does not know, as the lists refuse unknown query
    parameters: a misspelt `max_token` or a `where` the API does not take was dropped in silence,
    and the run went ahead without the limit its caller asked for."""

    def to_internal_value(self, data: object) -> dict:
        if isinstance(data, Mapping):
            if unknown := sorted(set(data) - set(self.fields)):
                hint = f"Unknown field; known: {', '.join(sorted(self.fields))}."
                raise serializers.ValidationError({str(name): [hint] for name in unknown})
        return super().to_internal_value(data)
