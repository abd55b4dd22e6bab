"""The offline token estimate, pinned to fixed numbers: ~4 characters a token, rounded up, plus 4
tokens per chat message. Each figure here was counted by hand from the strings' lengths."""

from __future__ import annotations

import pytest

from routing.tokens import estimate_prompt_tokens, estimate_text_tokens


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("a", 1),
        ("abcd", 1),
        ("abcde", 2),
        ("Write a haiku about routers.", 7),  # 28 characters
        ("def add(a, b):\n    return a + b\n", 8),  # 32 characters, whitespace counts
        ("héllo wörld", 3),  # 11 characters, not bytes
        pytest.param("x" * 4800, 1200, id="4800 characters"),
    ],
)
def test_it_estimates_a_text_at_four_characters_a_token_rounded_up(text: str, tokens: int) -> None:
    assert estimate_text_tokens(text) == tokens


def test_it_adds_four_tokens_per_message_for_the_chat_template() -> None:
    messages = [
        {"role": "system", "content": "You are Marcus, a backend engineer."},  # 35 characters: 9 + 4
        {"role": "user", "content": "Write a FastAPI endpoint that lists invoices."},  # 45 characters: 12 + 4
    ]

    assert estimate_prompt_tokens(messages) == 29


def test_a_message_without_content_still_costs_its_four_template_tokens() -> None:
    assert estimate_prompt_tokens([{"role": "assistant"}, {"role": "user", "content": ""}]) == 8


def test_no_messages_are_no_tokens() -> None:
    assert estimate_prompt_tokens([]) == 0
