"""The router: one call in, a completion from the best provider available out, a ledger row per attempt.

Interface (the agents app and the tests rely on it; the implementation is the router issue's):

    route(request: RouteRequest, *, on_success=None) -> RouteResult

- candidates: first matching enabled rule, else providers by priority; filtered by enabled,
  capability, model offered/installed, health (cool-down); local first.
- each attempt writes one LedgerEntry (success or failure) outside any long transaction.
- `on_success(result)` is called inside the same database transaction that inserts the
  successful attempt's ledger row, so a caller can store the output atomically with the charge
  (a worker killed before that commit leaves neither; after it, both).
- raises NoProviderAvailable(reason, attempts) when every candidate failed or none fits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from routing.providers.base import Completion


@dataclass(frozen=True)
class RouteRequest:
    messages: list[dict[str, str]]
    capability: str = ""
    agent: str = ""
    user_id: int | None = None
    run_id: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    max_prompt_tokens: int | None = None  # refuse (permanent) when the estimated prompt is larger
    stream: bool = False


@dataclass
class RouteResult:
    completion: Completion
    provider: str
    model: str
    is_local: bool
    reason: str
    attempts: list = field(default_factory=list)  # the LedgerEntry rows written, in order
    entry: object | None = None  # the successful LedgerEntry


class NoProviderAvailable(Exception):
    def __init__(self, reason: str, attempts: list | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts or []


def route(request: RouteRequest, *, on_success: Callable[[RouteResult], None] | None = None) -> RouteResult:
    raise NotImplementedError("the router issue implements this")


def invalidate_routing_cache() -> None:
    """Call after any change to providers, models, prices, rules or the policy (admin, load_routing):
    every process drops its cached routing table before its next decision."""
    # The router issue implements this (a version number in the shared cache).
