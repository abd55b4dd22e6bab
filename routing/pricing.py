"""Prices in force and what a call cost.

A price row is in force from its `effective_from` until the next row for the same model starts.
Costs are Decimal USD, computed exactly and then quantized to 10 decimal places (the ledger's
`cost_usd` precision), rounding half up: one token at $0.000001 per million tokens is
0.000000000001 USD, which rounds to 0, while anything a provider actually bills survives intact.
No price in force means the cost is unknown (None, stored as NULL), never a silent zero.
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


def price_at(model: LLMModel, when: datetime) -> Price | None:
    """The price row in force for `model` at `when` (one query), or None when none had started."""
    return model.prices.filter(effective_from__lte=when).order_by("-effective_from").first()


def in_force(starts: Sequence[datetime], when: datetime) -> int | None:
    """Index of the price in force at `when`, given the start times sorted oldest first (no query)."""
    index = bisect.bisect_right(starts, when) - 1
    return index if index >= 0 else None


def cost(price: PerMillionPrice | None, *, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
    """USD for these tokens at this price; None when there is no price."""
    if price is None:
        return None
    exact = (
        Decimal(prompt_tokens) * price.input_per_mtok + Decimal(completion_tokens) * price.output_per_mtok
    ) / MILLION
    return exact.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)
