"""Every API answer writes money and instants one way (core.formatting): money as a decimal string
with 10 places, an instant as ISO 8601 in UTC with microseconds and "Z".

The test walks every JSON body the API gives (runs, workflows, agents, providers, the monthly
report) and checks every field: money is any key ending in `_usd`, an instant any key ending in
`_at`; no other key may hold money or an instant under another name.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents.models import RunStatus, Workflow
from core.months import month_start
from tests.factories import agents_create, attempt_create, run_create

MONEY = re.compile(r"-?\d+\.\d{10}")
INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
# Something that reads as an instant or a money amount, whatever its key.
LOOKS_LIKE_INSTANT = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d")
MONEY_WORDS = ("cost", "price", "saving", "usd", "spend", "budget")


def fields(body: Any, path: str = "") -> list[tuple[str, str, Any]]:
    """(path, key, value) for every key of every object in the body, however deep."""
    found = []
    if isinstance(body, dict):
        for key, value in body.items():
            found.append((f"{path}.{key}", key, value))
            found += fields(value, f"{path}.{key}")
    elif isinstance(body, list):
        for index, value in enumerate(body):
            found += fields(value, f"{path}[{index}]")
    return found


def misfits(body: Any) -> tuple[list[str], int, int]:
    """The fields written another way, and how many money and instant fields were seen."""
    wrong, money, instants = [], 0, 0
    for path, key, value in fields(body):
        if key.endswith("_usd"):
            money += 1
            if value is not None and not (isinstance(value, str) and MONEY.fullmatch(value)):
                wrong.append(f"{path} = {value!r} (money)")
        elif key.endswith("_at"):
            instants += 1
            if value is not None and not (isinstance(value, str) and INSTANT.fullmatch(value)):
                wrong.append(f"{path} = {value!r} (instant)")
        elif any(word in key for word in MONEY_WORDS) and not key.endswith("_calls"):
            wrong.append(f"{path}: money under a name that does not end in _usd")
        elif isinstance(value, str) and LOOKS_LIKE_INSTANT.match(value):
            wrong.append(f"{path} = {value!r}: an instant under a name that does not end in _at")
    return wrong, money, instants


@pytest.fixture
def world(db, providers, staff_user):
    """A user's runs (finished with attempts, and queued), a finished workflow, ledger rows this
    month and last month (the one from a stored snapshot, the other computed)."""
    team = agents_create()
    now = timezone.now()
    last_month = month_start(now) - timedelta(days=3)
    workflow = Workflow.objects.create(
        feature="Search",
        created_by=staff_user,
        status=RunStatus.SUCCEEDED,
        cost_usd=Decimal("0.25"),
        baseline_cost_usd=Decimal("1.123456789012"),
    )
    Workflow.objects.filter(pk=workflow.pk).update(finished_at=now)
    done = run_create(
        agent=team["marcus"],
        user=staff_user,
        workflow=workflow,
        status=RunStatus.SUCCEEDED,
        started_at=now,
        finished_at=now,
        cost_usd=Decimal("0.00156"),
        baseline_cost_usd=Decimal("3"),
        prompt_tokens=120,
        completion_tokens=80,
    )
    run_create(agent=team["emily"], user=staff_user)
    attempt_create(run=done, provider=providers["ollama"], cost="0", prompt_tokens=120, completion_tokens=80)
    attempt_create(run=done, provider=providers["anthropic"], cost="0.00156", attempt=2, latency_ms=900)
    old = run_create(agent=team["alex"], user=staff_user, status=RunStatus.SUCCEEDED, created_at=last_month)
    attempt_create(run=old, provider=providers["openai"], cost="0.0000001", created_at=last_month)
    return {"run": done, "workflow": workflow, "months": [f"{now:%Y-%m}", f"{last_month:%Y-%m}"]}


def test_every_money_and_instant_field_of_every_api_answer_is_written_one_way(world, staff_user):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff_user).key}")
    created_run = api.post("/api/v1/runs/", {"agent": "jordan", "prompt": "A Dockerfile"}, format="json")
    created_workflow = api.post("/api/v1/workflows/", {"feature": "F", "agents": ["alex"]}, format="json")
    answers = {
        "POST runs": created_run,
        "POST workflows": created_workflow,
        "runs": api.get("/api/v1/runs/"),
        "run": api.get(f"/api/v1/runs/{world['run'].pk}/"),
        "workflows": api.get("/api/v1/workflows/"),
        "workflow": api.get(f"/api/v1/workflows/{world['workflow'].pk}/"),
        "agents": api.get("/api/v1/agents/"),
        "providers": api.get("/api/v1/providers/"),
        **{f"report {month}": api.get(f"/api/v1/reports/monthly/{month}/") for month in world["months"]},
    }
    seen = {}
    wrong = []
    for name, response in answers.items():
        assert response.status_code in (200, 201), (name, response.content)
        problems, money, instants = misfits(response.json())
        wrong += [f"{name}: {problem}" for problem in problems]
        seen[name] = (money > 0, instants > 0)
    assert wrong == []
    # The walk saw money and instants where the answers have them (else it proved nothing).
    assert seen == {
        "POST runs": (True, True),
        "POST workflows": (True, True),
        "runs": (True, True),
        "run": (True, True),
        "workflows": (True, True),
        "workflow": (True, True),
        "agents": (False, False),
        "providers": (False, False),
        **{f"report {month}": (True, True) for month in world["months"]},
    }
