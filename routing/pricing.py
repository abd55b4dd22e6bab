"""Prices in force and what a call cost.

A price row is in force from its `effective_from` until the next row for the same model starts.
Costs are Decimal USD, computed exactly and then quantized to 10 decimal places (the ledger's
`cost_usd` precision), rounding half up: one token at $0.000001 per million tokens is
0.000000000001 USD, which rounds to 0, while anything a provider actually bills survives intact.
No price in force means the cost is unknown (None, stored as NULL), never a silent zero.

Prompt tokens include what the provider's prompt cache wrote or read (Anthropic's
cache_creation/cache_read_input_tokens, OpenAI's cached_tokens): those parts are priced at the
cache write and read prices, the rest at the input price. A price without a cache price charges
those tokens the input price.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from routing.models import LLMModel, Price

COST_QUANTUM = Decimal("0.0000000001")  # LedgerEntry.cost_usd has decimal_places=10
MILLION = Decimal(1_000_000)


class PerMillionPrice(Protocol):
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_write_per_mtok: Decimal | None
    cache_read_per_mtok: Decimal | None


def price_at(model: LLMModel, when: datetime) -> Price | None:
    """The price row in force for `model` at `when` (one query), or None when none had started."""
    return model.prices.filter(effective_from__lte=when).order_by("-effective_from").first()


def in_force(starts: Sequence[datetime], when: datetime) -> int | None:
    """Index of the price in force at `when`, given the start times sorted oldest first (no query)."""
    index = bisect.bisect_right(starts, when) - 1
    return index if index >= 0 else None


def cost(
    price: PerMillionPrice | None,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    cache_write_tokens: int = 0,
    cache_read_tokens: int = 0,
) -> Decimal | None:
    """USD for these tokens at this price; None when there is no price.

    `prompt_tokens` counts all input; the cache write and read tokens are parts of it.
    """
    if price is None:
        return None
    write_price = price.input_per_mtok if price.cache_write_per_mtok is None else price.cache_write_per_mtok
    read_price = price.input_per_mtok if price.cache_read_per_mtok is None else price.cache_read_per_mtok
    uncached = max(0, prompt_tokens - cache_write_tokens - cache_read_tokens)
    exact = (
        Decimal(uncached) * price.input_per_mtok
        + Decimal(cache_write_tokens) * write_price
        + Decimal(cache_read_tokens) * read_price
        + Decimal(completion_tokens) * price.output_per_mtok
    ) / MILLION
    return exact.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)
