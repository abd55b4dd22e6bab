"""Show model output with its fenced code blocks as code, every byte of it escaped.

Model output is untrusted text: it is escaped here piece by piece and only the markup this
module writes itself (<p>, <pre>, <code>) is trusted.
"""

import re

from django import template
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# An opening fence, an optional language word, then everything up to the closing fence or the
# end of the text (a truncated answer leaves its last block unclosed).
FENCE_RE = re.compile(r"^[ \t]*```[ \t]*([\w#+.-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)


def _prose(text: str) -> SafeString:
    paragraphs = [part.strip("\n") for part in re.split(r"\n\s*\n", text) if part.strip()]
    # escape() first, then the only markup added is <br> and <p>.
    return format_html_join(
        "\n",
        "<p>{}</p>",
        ((mark_safe(escape(part).replace("\n", "<br>")),) for part in paragraphs),  # noqa: S308
    )


def _code(language: str, code: str) -> SafeString:
    label = format_html('<span class="code-lang">{}</span>', language) if language else ""
    css = format_html(' class="language-{}"', language) if language else ""
    return format_html('<div class="code">{}<pre><code{}>{}</code></pre></div>', label, css, code.rstrip("\n"))


@register.filter(name="render_output")
def render_output(text: str | None) -> SafeString:
    """Prose as paragraphs, ``` fenced blocks as <pre><code>; all model text escaped."""
    if not text:
        return mark_safe("")
    pieces: list[SafeString] = []
    position = 0
    for match in FENCE_RE.finditer(text):
        pieces.append(_prose(text[position : match.start()]))
        pieces.append(_code(match.group(1), match.group(2)))
        position = match.end()
    pieces.append(_prose(text[position:]))
    return mark_safe("\n".join(piece for piece in pieces if piece))  # noqa: S308 - every piece is built with escaping


@register.filter(name="subtract")
def subtract(value: object, other: object) -> object:
    """value - other, for Decimals in templates (the saving of one attempt)."""
    try:
        return value - other  # type: ignore[operator]
    except TypeError:
        return None
