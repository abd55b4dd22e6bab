"""The formatters of core.formatting as template filters: {% load formatting %}{{ run.cost_usd|money }}."""

import re

from django import template
from django.utils.html import format_html, format_html_join

from core import formatting

register = template.Library()

register.filter("money", formatting.money)
register.filter("percent", formatting.percent)
register.filter("count", formatting.count)
register.filter("duration_ms", formatting.duration_ms)
register.filter("when", formatting.when)
register.filter("timestamp", formatting.timestamp)


@register.filter(name="duration_s")
def duration_s(value: float | None) -> str:
    """A duration given in seconds (a workflow's wall time), written like every other duration."""
    return formatting.duration_ms(None if value is None else value * 1000)


@register.filter(name="code_spans")
def code_spans(value: str) -> str:
    """Text with `commands` in backticks (the fix sentences) as HTML: escaped, each span a <code>."""
    pieces = re.split(r"`([^`]+)`", value or "")  # text, a command, text, ...
    return format_html_join(
        "", "{}", ((format_html("<code>{}</code>", piece) if odd % 2 else piece,) for odd, piece in enumerate(pieces))
    )
