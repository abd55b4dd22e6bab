"""The first hour: `bin/run --local-model` on a 2-core machine, a four-agent feature, every run finishes.

Set up exactly as bin/run does it: the routing in config/ (an Ollama host that does not answer, the
cloud providers with no keys) and the demo model registered by `register_local_model`, the real
llama.cpp server with Gemma 3 270M, and a real Celery worker with bin/run's concurrency of 2. The
four agents ask for 1,500 (Jordan 1,024) tokens each; the demo model's cap, one-at-a-time slot and
slot wait are what let every run finish. Figures: BENCHMARKS.md, "The demo model".
"""

from __future__ import annotations

import time
from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents.models import AgentRun, RunStatus, Workflow
from routing.models import CallOutcome, LedgerEntry
from tests.agents.worker import wait_for, worker_process
from tests.routing.conftest_router import forget_health, fresh_routing

__all__ = ["fresh_routing", "worker_process"]

pytestmark = [pytest.mark.worker, pytest.mark.local_model, pytest.mark.django_db(transaction=True)]
BIN_RUN_CONCURRENCY = "2"  # bin/run: celery worker --concurrency 2
UNANSWERED = "http://127.0.0.1:9"  # no Ollama host here: connections are refused


def test_every_run_of_a_feature_finishes_on_the_demo_model(
    user, fresh_routing, local_model_server, worker_process, monkeypatch, settings
):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings.OLLAMA_HOST = UNANSWERED
    call_command("load_routing", stdout=StringIO())
    call_command("register_local_model", "--base-url", local_model_server.base_url, stdout=StringIO())
    forget_health(["ollama", "anthropic", "openai", "local-gemma"])
    worker = worker_process(concurrency=int(BIN_RUN_CONCURRENCY))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")

    started = time.monotonic()
    response = api.post(
        "/api/v1/workflows/", {"feature": "invoices: list, create and fetch a customer's invoices"}, format="json"
    )
    assert response.status_code == 201, response.content
    workflow_id = response.json()["id"]
    workflow = wait_for(
        lambda: Workflow.objects.filter(pk=workflow_id, finished_at__isnull=False).first(),
        timeout_s=900,
        what="the workflow to finish",
        worker=worker,
    )
    wall_s = time.monotonic() - started

    runs = list(AgentRun.objects.filter(workflow=workflow).select_related("agent").order_by("started_at"))
    report = [
        f"{run.agent.slug}: {run.status}, {run.completion_tokens} tokens in {run.latency_ms / 1000:.1f} s "
        f"({run.completion_tokens / (run.latency_ms / 1000):.1f} tok/s), waited "
        f"{(run.started_at - run.created_at).total_seconds():.1f} s to start, quality {run.quality_ok}"
        for run in runs
        if run.latency_ms
    ]
    print(f"\nworkflow {workflow.status} in {wall_s:.1f} s:\n  " + "\n  ".join(report))
    assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * 4, [run.error for run in runs]
    assert workflow.status == RunStatus.SUCCEEDED
    assert {(run.provider_name, run.model_name) for run in runs} == {("local-gemma", "gemma3-270m")}
    # Each answer ended (the cap of 300 tokens, not the agents' 1,500: test_router_max_output_tokens.py),
    # none was cut short by another run's request.
    assert all(run.finish_reason in ("length", "stop") and run.completion_tokens > 0 for run in runs)
    # Prompted as the base model it is: each answer opens the code block in the agent's language.
    assert sorted(run.output.partition("\n")[0] for run in runs) == [
        "```dockerfile",
        "```python",
        "```python",
        "```tsx",
    ]
    successes = LedgerEntry.objects.filter(run_id__in=[run.pk for run in runs], outcome=CallOutcome.SUCCESS)
    assert successes.count() == 4  # one charged call per run: nothing timed out and was tried again
