"""A run on a real worker is executed once while PostgreSQL refuses new connections.

The worker process, PostgreSQL (the test database, made to refuse new connections with
ALTER DATABASE ... ALLOW_CONNECTIONS false: connections already open keep working) and Redis are
real; the upstream is the fake OpenAI server, holding the first call open. While the database
refuses, this test process (its connection open) plays the second worker a redelivered message
would reach: it finds the lease held and leaves the run alone.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents import execution
from agents.models import AgentRun, RunStatus
from routing.models import CallOutcome, LedgerEntry
from tests.agents.worker import wait_for, worker_process
from tests.fakes.server import Behaviour
from tests.routing.conftest_router import fresh_routing, make_provider

__all__ = ["fresh_routing", "worker_process"]

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

LEASE_S = 2


def allow_connections(allowed: bool) -> None:
    # PostgreSQL will not disallow connections to the database the command runs in: run it from
    # the maintenance database.
    db = connection.settings_dict
    name = connection.ops.quote_name(db["NAME"])
    params = {"host": db["HOST"] or "127.0.0.1", "port": db["PORT"] or 5432, "user": db["USER"], "dbname": "postgres"}
    if db.get("PASSWORD"):
        params["password"] = db["PASSWORD"]
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {'true' if allowed else 'false'}")


def test_a_run_is_executed_once_while_postgresql_refuses_new_connections(
    user, agents, fresh_routing, fake_openai, worker_process, settings
):
    settings.SWITCHYARD_RUN_LEASE_SECONDS = LEASE_S  # this process's claim, too, takes over after the lease
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", request_timeout_s=60)
    fake_openai.script(Behaviour("ok", delay=LEASE_S * 3 + 2))  # the first call outlasts the outage
    worker = worker_process(SWITCHYARD_RUN_LEASE_SECONDS=str(LEASE_S))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    run_id = api.post("/api/v1/runs/", {"agent": "marcus", "prompt": "Add two numbers."}, format="json").json()["id"]
    wait_for(lambda: fake_openai.requests, timeout_s=30, what="the worker to call the upstream", worker=worker)
    wait_for(
        lambda: AgentRun.objects.filter(pk=run_id, heartbeat_at__gt=AgentRun.objects.get(pk=run_id).started_at),
        timeout_s=10,
        what="the first heartbeat",
        worker=worker,
    )

    allow_connections(False)
    try:
        time.sleep(LEASE_S * 1.5)  # the lease would have lapsed by now without the heartbeats
        held = execution.run_execute(run_id=run_id)  # a redelivery reaching another worker
    finally:
        allow_connections(True)

    assert held.outcome == "busy"
    run = wait_for(
        lambda: AgentRun.objects.filter(pk=run_id, status=RunStatus.SUCCEEDED).first(),
        timeout_s=30,
        what="the run to finish",
        worker=worker,
    )
    assert run.deliveries == 1
    assert len(fake_openai.requests) == 1
    assert list(LedgerEntry.objects.filter(run_id=run_id).values_list("outcome", flat=True)) == [CallOutcome.SUCCESS]
