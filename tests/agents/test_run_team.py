"""An agent run's calls carry its author's team in the ledger (issue 12: reports and budgets per team)."""

from __future__ import annotations

from accounts.models import Membership, Team
from agents import execution
from routing.models import LedgerEntry
from tests.agents.test_run_fix import ollama_url  # noqa: F401  (a fixture)
from tests.factories import run_create
from tests.routing.conftest_router import fresh_routing

__all__ = ["fresh_routing"]


def test_an_agent_runs_calls_carry_its_authors_team(ollama_url, agents, user):  # noqa: F811
    team = Team.objects.create(name="platform")
    Membership.objects.create(user=user, team=team)
    run = run_create(agent=agents["marcus"], user=user, prompt="A health endpoint, please.")

    execution.run_execute(run_id=run.pk)

    rows = LedgerEntry.objects.filter(run_id=run.pk)
    assert rows.exists()
    assert {(row.team_id, row.api_key_id, row.endpoint) for row in rows} == {(team.pk, None, "")}
