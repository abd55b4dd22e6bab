import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Max, Min, Sum

from agents.models import AgentRun, RunStatus
from metrics.models import DailyRollup
from routing.models import LedgerEntry

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="fill_ledger generates rows in PostgreSQL")


def fill(**options) -> str:
    out = io.StringIO()
    call_command("fill_ledger", stdout=out, **options)
    return out.getvalue()


@pytest.mark.django_db
def test_it_fills_a_realistic_ledger_and_rolls_it_up():
    output = fill(rows=3000, months=2, seed=0.5)

    assert "Inserted 3,000 ledger rows" in output
    entries = LedgerEntry.objects.all()
    assert entries.count() == 3000
    local_share = entries.filter(is_local=True).count() / 3000
    assert 0.7 < local_share < 0.9
    assert entries.filter(is_local=False, outcome="success", cost_usd__gt=0).exists()
    assert not entries.filter(is_local=True, cost_usd__gt=0).exists()
    assert entries.exclude(outcome="success").exists()
    assert entries.values("agent").distinct().count() == 4
    assert entries.values("run_id").distinct().count() < 3000  # some runs took two attempts
    rolled = DailyRollup.objects.aggregate(calls=Sum("calls"), cost=Sum("cost_usd"))
    direct = entries.aggregate(calls=Count("id"), cost=Sum("cost_usd"))
    assert rolled == direct


@pytest.mark.django_db
def test_it_makes_an_agent_run_of_every_run_and_some_that_failed_before_any_call():
    fill(rows=3000, seed=0.5, no_rollup=True)

    run_ids = set(LedgerEntry.objects.values_list("run_id", flat=True))
    runs = AgentRun.objects.all()
    assert set(runs.filter(pk__in=run_ids).values_list("pk", flat=True)) == run_ids
    assert runs.exclude(pk__in=run_ids).filter(status=RunStatus.FAILED).count() == 15  # one in 200 rows
    assert runs.filter(status=RunStatus.SUCCEEDED, quality_ok=False).exists()
    assert runs.filter(status=RunStatus.SUCCEEDED, quality_ok=True).exists()
    later = AgentRun.objects.create(agent=runs.first().agent, prompt="a real run, after the synthetic ones")
    assert later.pk > max(run_ids)


@pytest.mark.django_db
def test_it_gives_the_same_ledger_for_the_same_seed():
    fill(rows=500, seed=0.25, no_rollup=True)
    first = LedgerEntry.objects.aggregate(tokens=Sum("prompt_tokens"), cost=Sum("cost_usd"))
    LedgerEntry.objects.all().delete()

    fill(rows=500, seed=0.25, no_rollup=True)

    assert LedgerEntry.objects.aggregate(tokens=Sum("prompt_tokens"), cost=Sum("cost_usd")) == first
    assert not DailyRollup.objects.exists()


@pytest.mark.django_db
def test_it_adds_to_an_existing_ledger_without_reusing_run_ids():
    fill(rows=200, no_rollup=True)
    first_batch = LedgerEntry.objects.aggregate(last_id=Max("id"), last_run=Max("run_id"))

    fill(rows=200, no_rollup=True)

    second_batch = LedgerEntry.objects.filter(id__gt=first_batch["last_id"])
    assert second_batch.count() == 200
    assert second_batch.aggregate(first_run=Min("run_id"))["first_run"] > first_batch["last_run"]
