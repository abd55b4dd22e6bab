"""A newcomer's first hour, the way the README's first section tells it, in headless Chromium.

`bin/run` on a machine with no API keys and no Ollama host: the shipped routing is loaded and the
dashboard says, for each provider, what to do. `bin/run --local-model`: the real local model
(llama.cpp with Gemma 3 270M) is registered the same way, and a feature for the whole team finishes
with four succeeded runs whose answers are seen arriving; a cancel shows at once; every page the
newcomer saw fits a 390 px phone.

Real parts throughout: the live server, PostgreSQL, Redis, a Celery worker process (two at a time,
as bin/run starts it) and the local model server. Nothing is faked: the Ollama host is a closed port.

Set E2E_SCREENSHOTS=<dir> to keep a screenshot of each page (named first-hour-*).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from agents.models import AgentRun, RunStatus, Workflow
from routing.models import CallOutcome, LedgerEntry, Provider
from routing.providers.base import Problem, kind_name
from routing.readiness import fix_sentence
from routing.table import invalidate_routing_cache
from tests.agents import worker
from tests.e2e.demo_pages import PHONE, shoot, wider_than_the_phone
from tests.routing.conftest_router import forget_health

pytestmark = [pytest.mark.browser, pytest.mark.worker]

ADMIN_PASSWORD = "the-password-bin-run-printed"
PROVIDERS = ["ollama", "anthropic", "openai", "local-gemma"]
FEATURE = "A health check endpoint that reports the app's version, with a Dockerfile and tests."
# Four runs of the demo model, one at a time on 2 cores (about 2 minutes on a quiet machine);
# generous, so a loaded CI machine still finishes.
FEATURE_TIMEOUT_MS = 600_000
FIRST_WORDS_TIMEOUT_MS = 240_000

worker_process = worker.worker_process  # a real `celery worker` process


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def first_start(transactional_db, monkeypatch) -> Iterator[str]:
    """What `bin/run` does on a fresh database, on a machine with no API keys and no Ollama host:
    load the shipped routing, create `admin`. Yields the (unreachable) Ollama URL."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    ollama = closed_port_url()
    monkeypatch.setenv("OLLAMA_HOST", ollama)  # config/local_provider.yaml reads it
    forget_health(PROVIDERS)  # cool-downs live in the shared Redis, across tests
    call_command("load_routing", "--if-empty", stdout=StringIO())
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", ADMIN_PASSWORD)
    call_command("createsuperuser", "--no-input", "--username", "admin", "--email", "admin@localhost", verbosity=0)
    invalidate_routing_cache()
    yield ollama
    forget_health(PROVIDERS)
    invalidate_routing_cache()


@pytest.fixture
def local_model_setup(first_start, local_model_server, worker_process) -> worker.WorkerProcess:
    """What `bin/run --local-model` adds: the model server registered as a local provider, and the
    worker bin/run starts (concurrency 2)."""
    call_command("register_local_model", "--base-url", local_model_server.base_url, stdout=StringIO())
    return worker_process(concurrency=2)


def log_in(page, live_server) -> None:
    page.goto("/")
    page.wait_for_url("**/login/**")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/")


def readiness_rows(page) -> list[tuple[str, str, str | None, str | None]]:
    """(name, status, fix, detail) of each provider row of the dashboard's panel, in its order."""
    rows = page.evaluate(
        """() => [...document.querySelectorAll("table.readiness tbody tr")].map((row) => {
          const text = (selector) => row.querySelector(selector)?.innerText ?? null;
          return [row.cells[1].innerText, text(".health"), text(".fix"), text("td:nth-child(6) .muted")];
        })"""
    )
    return [tuple(row) for row in rows]


def on_screen(sentence: str) -> str:
    """A fix sentence as the page shows it: its `commands` set as code, without the backticks."""
    return sentence.replace("`", "")


def no_key_fix(name: str) -> str:
    provider = Provider.objects.get(name=name)
    return on_screen(fix_sentence(provider.adapter_config(), provider.default_model, Problem.NO_KEY))


def refused_fix(ollama: str) -> str:
    provider = Provider.objects.get(name="ollama")
    config = provider.adapter_config()
    refused = f"{kind_name(config.kind)} at {ollama} refused the connection"  # the adapter's words
    return on_screen(fix_sentence(config, provider.default_model, Problem.REFUSED, refused))


def test_a_fresh_start_without_keys_or_ollama_shows_what_to_fix_for_each_provider(page, live_server, first_start):
    log_in(page, live_server)
    shoot(page, "first-hour-01-dashboard-fresh")

    assert readiness_rows(page) == [
        ("ollama", "down", refused_fix(first_start), None),
        ("anthropic", "no key", no_key_fix("anthropic"), None),
        ("openai", "no key", no_key_fix("openai"), None),
    ]


@pytest.mark.local_model
def test_with_the_local_model_a_feature_finishes_on_four_agents_seen_as_it_streams(
    browser, page, live_server, first_start, local_model_setup
):
    log_in(page, live_server)
    assert readiness_rows(page) == [
        ("ollama", "down", refused_fix(first_start), None),
        ("local-gemma", "not yet called", None, "it answers"),  # ready: the probe reached it
        ("anthropic", "no key", no_key_fix("anthropic"), None),
        ("openai", "no key", no_key_fix("openai"), None),
    ]
    shoot(page, "first-hour-02-dashboard-local-model")

    page.get_by_role("navigation").get_by_role("link", name="New feature").click()
    assert page.locator("input[name=agents]:checked").count() == 4  # the whole team by default
    page.fill("textarea[name=feature]", FEATURE)
    page.get_by_role("button", name="Submit feature").click()
    page.wait_for_url("**/workflows/*/")
    page.evaluate("window.__samePage = true")

    # The answers show on the workflow page as the model writes them, swapped in without a reload.
    progress = page.locator("#workflow-live .progress .snippet").first
    progress.wait_for(timeout=FIRST_WORDS_TIMEOUT_MS)
    shoot(page, "first-hour-03-workflow-streaming")
    # Then the page moves on by itself (the answer grows, a run ends, the next one starts): the
    # snippet shows an answer's first words, so on a loaded machine it may hold still for a while.
    first_seen = page.locator("#workflow-live").inner_text()
    page.wait_for_function(
        """(before) => (document.querySelector("#workflow-live")?.innerText ?? "") !== before""",
        arg=first_seen,
        timeout=FEATURE_TIMEOUT_MS,
    )
    assert page.evaluate("window.__samePage") is True

    page.locator("#workflow-live[data-finished=true]").wait_for(timeout=FEATURE_TIMEOUT_MS)
    assert page.evaluate("window.__samePage") is True
    shoot(page, "first-hour-04-workflow-finished")

    workflow = Workflow.objects.get()
    runs = list(AgentRun.objects.filter(workflow=workflow).select_related("agent").order_by("agent__slug"))
    answered = [(run.agent.slug, run.status, run.error, run.provider_name, bool(run.output.strip())) for run in runs]
    assert answered == [
        (slug, RunStatus.SUCCEEDED, "", "local-gemma", True) for slug in ("alex", "emily", "jordan", "marcus")
    ], f"worker log:\n{local_model_setup.log_tail()}"
    assert workflow.status == RunStatus.SUCCEEDED
    assert page.locator("#workflow-live .status-succeeded").count() == 5  # the workflow and its four runs

    run = runs[0]
    page.locator(f"#workflow-live a[href='{reverse('agents:run_detail', args=[run.pk])}']").click()
    page.wait_for_url(f"**/runs/{run.pk}/")
    assert page.locator("#run-live .status-succeeded").count() == 1
    assert page.locator("#run-live .output").inner_text().strip()
    shoot(page, "first-hour-05-run")

    # Every page of the first hour fits a phone.
    phone = browser.new_context(base_url=live_server.url, viewport=PHONE, storage_state=page.context.storage_state())
    small = phone.new_page()
    small.set_default_timeout(15_000)
    visited = [
        ("dashboard", reverse("home")),
        ("workflow", reverse("agents:workflow_detail", args=[workflow.pk])),
        ("run", reverse("agents:run_detail", args=[run.pk])),
        ("runs", reverse("agents:run_list")),
        ("new-task", reverse("agents:run_new")),
        ("new-feature", reverse("agents:workflow_new")),
    ]
    too_wide = {}
    for name, path in visited:
        response = small.goto(path)
        assert response.status == 200, (name, path)
        assert small.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
        too_wide[name] = wider_than_the_phone(small)
        shoot(small, f"first-hour-phone-{name}")
    phone.close()
    assert {name: found[:5] for name, found in too_wide.items() if found} == {}


@pytest.mark.local_model
def test_with_the_local_model_a_cancel_shows_at_once_and_the_answer_stops(page, live_server, local_model_setup):
    log_in(page, live_server)
    page.get_by_role("navigation").get_by_role("link", name="New task").click()
    page.select_option("select[name=agent]", "marcus")
    page.fill("textarea[name=prompt]", "Write a FastAPI endpoint that lists invoices.")
    page.get_by_role("button", name="Submit task").click()
    page.wait_for_url("**/runs/*/")
    page.locator("#run-live .streaming-note").wait_for(timeout=FIRST_WORDS_TIMEOUT_MS)  # the model is writing
    assert page.locator("#run-live .status").inner_text() == "running"
    shoot(page, "first-hour-06-run-streaming")

    page.get_by_role("button", name="Cancel run").click()
    page.locator("#run-live .status-cancelled").wait_for(timeout=5_000)  # from the cancel itself, not the worker
    shoot(page, "first-hour-07-run-cancelled")

    run = AgentRun.objects.get()
    assert run.status == RunStatus.CANCELLED
    assert "Cancelled by admin." in page.locator("#run-live .alert").inner_text()
    assert page.get_by_role("button", name="Cancel run").count() == 0
    output_at_cancel = run.output
    assert output_at_cancel.strip()  # what streamed before the cancel stays

    # The worker closes the call at its next look (every 0.5 s): metered as cancelled, nothing more written.
    call = LedgerEntry.objects.filter(run_id=run.pk, provider__name="local-gemma")
    deadline = time.monotonic() + 30
    while call.filter(outcome=CallOutcome.STARTED).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(call.values_list("outcome", flat=True)) == [CallOutcome.CANCELLED]
    time.sleep(2)  # a stream left open would have written its next piece by now
    run.refresh_from_db()
    assert (run.status, run.output) == (RunStatus.CANCELLED, output_at_cancel)
    page.reload()
    assert page.locator("#run-live .status").inner_text() == "cancelled"
    assert page.locator("#run-live .streaming-note").inner_text() == "The answer up to the cancel."
