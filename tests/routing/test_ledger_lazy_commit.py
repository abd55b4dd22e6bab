"""A gateway call's ledger rows are written without waiting for the database's disk: committed all
the same, once each, leaving the connection's own setting as it was."""

from __future__ import annotations

import pytest
from django.db import connection

from routing.ledger import attempt_complete, attempt_start
from routing.models import CallOutcome, LedgerEntry
from routing.providers.base import Completion
from tests.routing.conftest_router import fresh_routing, make_provider  # noqa: F401
from tests.routing.test_ledger_attempts import attempt_for

MESSAGES = [{"role": "user", "content": "hello"}]


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_routing")
def test_rows_written_lazily_are_committed_once_and_the_setting_stays_the_connection_s():
    attempt = attempt_for(make_provider("local", base_url="http://127.0.0.1:9", model="m1"))
    started = attempt_start(attempt=attempt, messages=MESSAGES, durable=False)
    assert attempt_start(attempt=attempt, messages=MESSAGES, durable=False).pk == started.pk  # one row an attempt
    entry = attempt.success_entry(
        Completion(text="hi", model="m1", prompt_tokens=5, completion_tokens=1, latency_ms=3), messages=MESSAGES
    )
    entry.pk = started.pk

    assert attempt_complete(entry=entry, durable=False) is True
    assert attempt_complete(entry=entry, durable=False) is False  # completed already

    row = LedgerEntry.objects.get()
    assert (row.outcome, row.prompt_tokens, row.completion_tokens) == (CallOutcome.SUCCESS, 5, 1)
    assert synchronous_commit() == "on"
