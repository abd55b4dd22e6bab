"""Fixtures for agents tests: the team's four agents, and the run ids handed to Celery.

Users and providers come from tests/conftest.py; every row from tests/factories.py.
"""

from __future__ import annotations

import pytest

from agents.models import Agent
from routing.table import bump_version
from tests.factories import agents_create


@pytest.fixture
def agents(db) -> dict[str, Agent]:
    """Marcus, Emily, Alex and Jordan as config/llm_routing.yaml defines them, keyed by slug."""
    return agents_create()


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Run ids sent to the broker, recorded instead of sent (the worker tests send them for real)."""
    sent: list[int] = []
    monkeypatch.setattr("agents.queue.run_enqueue", lambda *, run_id: sent.append(run_id))
    return sent


@pytest.fixture(autouse=True)
def routing_table_reread() -> None:
    """Submitting checks the request against this process's cached routing table
    (routing.limits): drop it, so each test's providers are read afresh, not an earlier test's."""
    bump_version()
