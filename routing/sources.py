"""Where a ledger row's call came from: the one rule, read from the row's agent slug.

Every call through the gateway is metered under the agent slug `GATEWAY_AGENT`; every other row
is Switchyard's own work (agent runs, and the operator's provider checks). The metrics filter and
break down by source through `source_of` (a row or rollup row in Python) and `source_filter` (a
query), which read the same slug, so a filter and a breakdown never disagree.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

GATEWAY_AGENT = "gateway"  # the ledger's agent slug for calls that came through the gateway


class Source(models.TextChoices):
    AGENTS = "agents", "Agents"
    GATEWAY = "gateway", "Gateway"


def source_of(agent: str) -> Source:
    """The source of a ledger row (or a rollup row) with this agent slug."""
    return Source.GATEWAY if agent == GATEWAY_AGENT else Source.AGENTS


def source_filter(source: Source | str, *, field: str = "agent") -> Q:
    """The rows of this source, for a queryset whose agent slug is in `field` (the ledger's and the rollups')."""
    gateway = Q(**{field: GATEWAY_AGENT})
    return gateway if Source(source) == Source.GATEWAY else ~gateway
