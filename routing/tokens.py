"""Offline token estimates, for routing decisions and for providers that report no usage.

tiktoken would download its encodings on first use (no internet here), and every model family
tokenizes differently anyway, so Switchyard uses the well-known rule of thumb: about four
characters of English text or code per token, rounded up, plus a few tokens per chat message
for the role markers and separators every chat template adds. Estimates are only ever used
where a provider gave no count, and the ledger flags them (`tokens_estimated`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4  # role marker and separators around each message in a chat template


def estimate_text_tokens(text: str) -> int:
    """~1 token per 4 characters, rounded up; an empty string is 0 tokens."""
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_prompt_tokens(messages: Iterable[Mapping[str, str]]) -> int:
    return sum(TOKENS_PER_MESSAGE + estimate_text_tokens(message.get("content") or "") for message in messages)
