"""Reading and cleaning what comes over the wire: stream lines, Retry-After, key-shaped text."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

from routing.providers.base import TransientError

MAX_MESSAGE_CHARS = 240


def split_lines(chunks: Iterator[bytes], *, sse: bool = False) -> Iterator[str]:
    """The lines of a byte stream, split only on the protocol's own line ends.

    NDJSON ends lines with LF (CRLF tolerated); server-sent events with CRLF, LF or a lone CR. JSON
    text may hold U+2028, U+2029, U+0085 or form feeds: `str.splitlines` (and so httpx's `iter_lines`)
    would cut a line there. Splitting bytes is safe: UTF-8 never uses CR or LF inside a character.
    """
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        start = 0
        while True:
            end = pending.find(b"\n", start)
            if sse:
                cr = pending.find(b"\r", start)
                if cr != -1 and (end == -1 or cr < end):
                    if cr + 1 == len(pending):
                        break  # a CR at the end may be the first half of CRLF: wait for the next chunk
                    end = cr
            if end == -1:
                break
            line = pending[start:end]
            start = end + 1
            if pending[end : end + 1] == b"\r" and pending[start : start + 1] == b"\n":
                start += 1
            yield decode_line(bytes(line.rstrip(b"\r")))
        del pending[:start]
    if pending.rstrip(b"\r"):
        yield decode_line(bytes(pending.rstrip(b"\r")))


def decode_line(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise TransientError("the stream was not valid UTF-8") from None


def key_problem(key: str) -> str:
    """Why this text cannot be an API key, or "" (never quotes the key)."""
    if not key.isascii():
        return "it holds a non-ASCII character"
    if key != key.strip():
        return "it starts or ends with whitespace or a line break (a newline from the file it came from?)"
    if not key.isprintable() or " " in key:
        return "it holds whitespace or a control character"
    return ""


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


# Anything shaped like a secret: provider keys (also masked, "sk-proj-****abcd"), bearer tokens,
# and long runs of hex or base64 that mix letters and digits (a long hyphenated name is no secret).
KEY_SHAPED = re.compile(
    r"(?P<key>\b(?:sk-ant-|sk-proj-)[\w*.-]*[\w*]|\bsk-[\w*.-]{16,}[\w*]|(?<=\bBearer )[^\s\"',;]+)"
    r"|(?P<long>[\w+/=-]{32,})",
    re.IGNORECASE,
)
KEY_FRAGMENT_CHARS = 8  # this many characters of the real key in a row are a leak
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def scrub(text: str, key: str) -> str:
    """`text` (an upstream's error words) with anything key-shaped, and any part of the key, as "***"."""
    text = KEY_SHAPED.sub(_key_shaped, text)
    if len(key) < KEY_FRAGMENT_CHARS:
        return text.replace(key, "***") if key else text
    # Compared without ASCII case (an upstream may echo the key upper-cased); the lengths stay the same.
    key, folded = key.translate(_ASCII_LOWER), text.translate(_ASCII_LOWER)
    pieces = {key[i : i + KEY_FRAGMENT_CHARS] for i in range(len(key) - KEY_FRAGMENT_CHARS + 1)}
    hidden = [False] * len(text)
    for i in range(len(text) - KEY_FRAGMENT_CHARS + 1):
        if folded[i : i + KEY_FRAGMENT_CHARS] in pieces:
            hidden[i : i + KEY_FRAGMENT_CHARS] = [True] * KEY_FRAGMENT_CHARS
    kept, i = [], 0
    while i < len(text):
        if hidden[i]:
            kept.append("***")
            while i < len(text) and hidden[i]:
                i += 1
        else:
            kept.append(text[i])
            i += 1
    return "".join(kept)


def _key_shaped(match: re.Match[str]) -> str:
    found = match.group()
    if match.group("long") and not (re.search("[0-9]", found) and re.search("[A-Za-z]", found)):
        return found
    return "***"


def short(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def without_credentials(url: str) -> str:
    """The URL to show people: any user:password@ taken out."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
