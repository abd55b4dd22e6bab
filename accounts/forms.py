from __future__ import annotations

import re
from datetime import timedelta

from django import forms
from django.utils import timezone

EXPIRY_CHOICES = [("", "Never"), ("7", "In 7 days"), ("30", "In 30 days"), ("90", "In 90 days"), ("365", "In a year")]


class KeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="To tell the key from your others, e.g. “laptop” or “CI”.")
    expires_in = forms.TypedChoiceField(
        label="Expires", choices=EXPIRY_CHOICES, coerce=int, empty_value=None, required=False
    )
    allowed_models = forms.CharField(
        label="Only these models",
        required=False,
        max_length=5000,
        help_text="Model names the gateway (/v1/) serves with this key, separated by commas or spaces; "
        "empty: every model.",
    )
    requests_per_minute = forms.IntegerField(
        label="Requests per minute",
        required=False,
        min_value=1,
        help_text="At the gateway; empty: the server's default (it is also the most you can set).",
    )
    tokens_per_minute = forms.IntegerField(
        label="Tokens per minute",
        required=False,
        min_value=1,
        help_text="Prompt and completion tokens at the gateway; empty: the server's default (also the most).",
    )

    def expires_at(self):
        days = self.cleaned_data.get("expires_in")
        return timezone.now() + timedelta(days=days) if days else None

    def models(self) -> list[str]:
        return [name for name in re.split(r"[\s,]+", self.cleaned_data.get("allowed_models", "")) if name]
