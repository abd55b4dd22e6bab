"""The adapter registry: one adapter class per provider `kind`, one live adapter per provider.

`get_adapter(config)` hands back the same adapter (and so the same keep-alive httpx client) for the
same provider settings in this process; changed settings get a fresh one. Pass `client` to use
your own httpx client (tests, benchmarks): that adapter is not cached.
"""

from __future__ import annotations

import os
import threading

import httpx

from routing.providers.anthropic import AnthropicAdapter
from routing.providers.base import PermanentError, ProviderConfig, ResponseFormat, unanswerable_format
from routing.providers.http import HTTPAdapter
from routing.providers.ollama import OllamaAdapter
from routing.providers.openai import OpenAIAdapter

ADAPTERS: dict[str, type[HTTPAdapter]] = {
    "ollama": OllamaAdapter,
    "openai": OpenAIAdapter,
    "openai_compatible": OpenAIAdapter,
    "anthropic": AnthropicAdapter,
}

_live: dict[str, HTTPAdapter] = {}  # by provider name
_live_pid = os.getpid()
_lock = threading.Lock()


def get_adapter(config: ProviderConfig, *, client: httpx.Client | None = None) -> HTTPAdapter:
    adapter_class = ADAPTERS.get(config.kind)
    if adapter_class is None:
        raise PermanentError(f"unknown provider kind {config.kind!r}")
    if client is not None:
        return adapter_class(config, client=client)
    global _live_pid
    with _lock:
        if _live_pid != os.getpid():
            # A forked worker must not share its parent's pooled sockets: start with fresh clients.
            _live.clear()
            _live_pid = os.getpid()
        adapter = _live.get(config.name)
        if adapter is None or adapter.config != config:
            # The old client (if any) is left to the garbage collector: another thread may still be using it.
            adapter = _live[config.name] = adapter_class(config)
        return adapter


def forget_host_state() -> None:
    """Every live adapter drops what it remembers about its host (e.g. Ollama's installed models)."""
    with _lock:
        adapters = list(_live.values())
    for adapter in adapters:
        adapter.forget()


def answer_format_refusal(kind: str, response_format: ResponseFormat | None) -> str:
    """Why a provider of this kind cannot be asked for this structured answer ("" when it can, or when
    plain text is asked): the plan skips it, so the router falls through to one that can."""
    adapter_class = ADAPTERS.get(kind)
    return unanswerable_format(kind, adapter_class.answer_formats if adapter_class else frozenset(), response_format)
