"""The names the page tests used before tests/factories.py; each is that module's builder."""

from __future__ import annotations

from agents.models import Agent
from routing.models import Provider
from tests.factories import agents_create, attempt_create, provider_create, run_create, user_create

__all__ = ["make_attempt", "make_provider", "make_run", "make_team", "make_user"]

make_user = user_create
make_run = run_create
make_attempt = attempt_create


def make_team() -> dict[str, Agent]:
    return agents_create()


def make_provider(name: str = "ollama-local", *, is_local: bool = True, priority: int = 1, **fields) -> Provider:
    """A local Ollama host or a cloud OpenAI provider, unpriced."""
    if is_local:
        where = {"kind": "ollama", "base_url": "http://127.0.0.1:11434", "model": "gemma3:270m"}
    else:
        where = {"kind": "openai", "base_url": "https://api.openai.com", "model": "gpt-4o-mini"}
    return provider_create(name, is_local=is_local, priority=priority, price=None, **{**where, **fields})
