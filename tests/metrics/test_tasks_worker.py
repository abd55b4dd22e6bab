"""The rollup task on a real Celery worker process (PostgreSQL and Redis shared with the test)."""

import pytest
from django.db.models import Sum

from metrics.models import DailyRollup, MonthlyRollup, RollupState
from metrics.tasks import rollup_refresh_task
from routing.models import LedgerEntry
from tests.agents.worker import wait_for, worker_process
from tests.metrics.conftest import utc

__all__ = ["worker_process"]

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_it_rolls_up_exactly_on_a_worker_even_with_two_refreshes_at_once(add_entry, worker_process):
    for hour in range(24):
        add_entry(created_at=utc(2026, 3, 10, hour), prompt_tokens=hour)
    worker = worker_process(concurrency=2)

    for _ in range(2):  # both start together; the state row lock makes them take turns
        rollup_refresh_task.delay()

    wait_for(
        lambda: worker.log().count("rollup_refresh_task") >= 4 and worker.log().count("succeeded") >= 2,
        timeout_s=60,
        what="both refreshes to finish",
        worker=worker,
    )
    assert RollupState.objects.get().last_ledger_id == LedgerEntry.objects.latest("id").pk
    assert DailyRollup.objects.get().calls == 24
    assert DailyRollup.objects.aggregate(tokens=Sum("prompt_tokens"))["tokens"] == sum(range(24))
    assert MonthlyRollup.objects.get().calls == 24
