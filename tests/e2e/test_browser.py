"""A person in headless Chromium: logs in, submits a task, watches it run live, reads the answer.

Everything is real except the model host: Debian's chromium driven by Playwright, the
live server, PostgreSQL, a Celery worker process on the broker, the router and the Ollama adapter.
The upstream is the Ollama protocol fake (tests/fakes), slowed down so the page is seen
updating while the run works.

Set E2E_SCREENSHOTS=<dir> to keep a screenshot of each page.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from agents.models import AgentRun, RunStatus, Workflow
from routing.models import CallOutcome, LedgerEntry, LLMModel, Price, Provider, ProviderKind, RoutingPolicy
from routing.table import invalidate_routing_cache
from tests.agents import worker
from tests.agents.views_helpers import make_team, make_user
from tests.e2e.demo_pages import (
    MEMBER,
    MEMBER_PASSWORD,
    PHONE,
    STAFF,
    STAFF_PASSWORD,
    demo_fill,
    demo_urls,
    shoot,
    wider_than_the_phone,
)

pytestmark = [pytest.mark.browser, pytest.mark.worker]

PASSWORD = "a-browser-test-password"
PRICES_FROM = datetime(2025, 1, 1, tzinfo=UTC)
ANSWER = (
    "Here is the endpoint.\n\n"
    "```python\n"
    "def add(a: int, b: int) -> int:\n"
    "    return a + b  # <script>window.__pwned = 1</script>\n"
    "```\n\n"
    "It adds two numbers."
)


worker_process = worker.worker_process  # E1's fixture: a real `celery worker` process


@pytest.fixture
def celery_worker(transactional_db, worker_process) -> worker.WorkerProcess:
    """A real Celery worker process on the broker and this test's (committed) database."""
    return worker_process()


@pytest.fixture
def local_host(fake_ollama, transactional_db) -> Provider:
    fake_ollama.reply = ANSWER
    fake_ollama.behave("ok", delay=2.5)  # long enough to see the run unfinished on the page
    provider = Provider.objects.create(
        name="ollama",
        kind=ProviderKind.OLLAMA,
        base_url=fake_ollama.base_url,
        is_local=True,
        priority=1,
        default_model="mistral:latest",
        capabilities=["code_generation", "testing", "devops"],
    )
    model = LLMModel.objects.create(provider=provider, name="mistral:latest", capabilities=["code_generation"])
    Price.objects.create(model=model, effective_from=PRICES_FROM, input_per_mtok=0, output_per_mtok=0)
    # Savings are measured against a cloud model; with no key in the environment it is never called.
    cloud = Provider.objects.create(
        name="openai", kind=ProviderKind.OPENAI, base_url="http://127.0.0.1:9", api_key_env="E2E_NO_SUCH_KEY",
        priority=2, default_model="gpt-4o",
    )  # fmt: skip
    baseline = LLMModel.objects.create(provider=cloud, name="gpt-4o")
    Price.objects.create(model=baseline, effective_from=PRICES_FROM, input_per_mtok=2.5, output_per_mtok=10)
    RoutingPolicy.objects.update_or_create(pk=1, defaults={"baseline_model": baseline})
    invalidate_routing_cache()
    return provider


def log_in(page, live_server, *, screenshot: bool = False) -> None:
    make_user("ana", password=PASSWORD)
    page.goto("/")
    assert "/login/" in page.url
    if screenshot:
        shoot(page, "01-login")
    page.fill("input[name=username]", "ana")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/")


def test_a_staff_member_tests_a_provider_and_reads_the_result_in_place(page, live_server, local_host, fake_ollama):
    # Issue 11 item 1: the Test button posts in the background (static/routing/provider_test.js).
    fake_ollama.behave("ok")
    make_user("boss", staff=True, password=PASSWORD)
    page.goto("/")
    page.fill("input[name=username]", "boss")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/")
    page.evaluate("window.__same_page = true")

    page.locator("form[data-provider-test='test-ollama'] button").click()

    result = page.locator("#test-ollama")
    result.filter(has_text="tokens/s").wait_for()
    assert result.inner_text().startswith("ollama: up, ")
    assert page.evaluate("window.__same_page") is True  # shown in place, not after a reload
    shoot(page, "09-provider-test")
    assert LedgerEntry.objects.filter(agent="check_providers", outcome=CallOutcome.SUCCESS).count() == 1


def test_it_logs_in_submits_a_task_and_watches_it_finish(page, live_server, celery_worker, local_host):
    make_team()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    log_in(page, live_server, screenshot=True)
    shoot(page, "02-dashboard-empty")

    page.get_by_role("navigation").get_by_role("link", name="New task").click()
    page.select_option("select[name=agent]", "marcus")
    page.get_by_role("button", name="Submit task").click()  # no prompt: the form says so
    assert page.locator(".errorlist").inner_text() == "Write a prompt."
    shoot(page, "03-new-task-error")
    page.fill("textarea[name=prompt]", "Write a Python function that adds two numbers.")
    page.get_by_role("button", name="Submit task").click()

    page.wait_for_url("**/runs/*/")
    run = AgentRun.objects.get()
    page.locator("#run-live .status-running").wait_for(timeout=10_000)  # the upstream takes 2.5 s to answer
    assert page.get_by_role("button", name="Cancel run").is_visible()
    shoot(page, "04-run-live")

    page.evaluate("window.__samePage = true")
    page.locator("#run-live .status-succeeded").wait_for(timeout=30_000)
    assert page.evaluate("window.__samePage") is True  # swapped in by live.js, not a reload
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if "/live/" in request.url else None)
    page.wait_for_timeout(1500)
    assert polls == []  # the poller stopped once the run ended
    shoot(page, "05-run-finished")

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert page.get_by_role("button", name="Cancel run").count() == 0
    assert page.locator(".live .pulse").count() == 0
    code = page.locator(".output pre code")
    assert "def add(a: int, b: int) -> int:" in code.inner_text()
    assert "<script>window.__pwned = 1</script>" in code.inner_text()  # shown as text ...
    assert page.evaluate("window.__pwned") is None  # ... never run
    assert dialogs == []
    attempts = page.locator("table.attempts tbody tr")
    assert attempts.count() == 1
    assert "ollama" in attempts.inner_text() and "success" in attempts.inner_text()

    page.get_by_role("navigation").get_by_role("link", name="Runs").click()
    assert page.locator("table.runs tbody tr").count() == 1
    shoot(page, "06-runs")
    page.get_by_role("navigation").get_by_role("link", name="Dashboard").click()
    assert "100.00%" in page.locator(".cards").inner_text()
    shoot(page, "07-dashboard")


def test_it_shows_the_answer_as_it_streams(page, live_server, celery_worker, local_host, fake_ollama):
    make_team()
    fake_ollama.behave("ok", chunk_delay=0.2)  # the answer's ~20 pieces over ~4 s
    log_in(page, live_server)
    page.get_by_role("navigation").get_by_role("link", name="New task").click()
    page.select_option("select[name=agent]", "marcus")
    page.fill("textarea[name=prompt]", "Write a Python function that adds two numbers.")
    page.get_by_role("button", name="Submit task").click()
    page.wait_for_url("**/runs/*/")

    page.locator("#run-live .streaming-note").wait_for(timeout=15_000)
    assert page.locator("#run-live .status-running").count() == 1
    partial = page.locator("#run-live .output").inner_text()
    assert partial and "It adds two numbers." not in partial  # the start of the answer, before its end
    shoot(page, "04b-run-streaming")

    page.locator("#run-live .status-succeeded").wait_for(timeout=30_000)
    assert "It adds two numbers." in page.locator("#run-live .output").inner_text()
    assert page.locator("#run-live .streaming-note").count() == 0


def test_it_submits_a_feature_to_the_team_and_shows_the_totals_when_all_finish(
    page, live_server, celery_worker, local_host, fake_ollama
):
    make_team()
    fake_ollama.behave("ok", delay=0.3)
    log_in(page, live_server)

    page.get_by_role("navigation").get_by_role("link", name="New feature").click()
    assert page.locator("input[name=agents]:checked").count() == 4  # the whole team by default
    page.fill("textarea[name=feature]", "A health check endpoint with a Dockerfile and tests.")
    shoot(page, "08-new-feature")
    page.get_by_role("button", name="Submit feature").click()

    page.wait_for_url("**/workflows/*/")
    page.locator("#workflow-live[data-finished=true]").wait_for(timeout=30_000)
    shoot(page, "09-workflow-finished")

    workflow = Workflow.objects.get()
    assert workflow.status == RunStatus.SUCCEEDED
    assert page.locator("#workflow-live .status-succeeded").count() == 5  # the workflow and its four runs
    assert "Total cost" in page.locator("#workflow-live .cards").text_content()


def test_it_cancels_a_running_task_from_its_button(page, live_server, celery_worker, local_host, fake_ollama):
    make_team()
    fake_ollama.behave("ok", delay=4.0)  # time to click Cancel while the call is on
    log_in(page, live_server)
    page.get_by_role("navigation").get_by_role("link", name="New task").click()
    page.select_option("select[name=agent]", "jordan")
    page.fill("textarea[name=prompt]", "Write a Dockerfile for a Django app.")
    page.get_by_role("button", name="Submit task").click()
    page.wait_for_url("**/runs/*/")
    page.locator("#run-live .status-running").wait_for()  # a worker has it

    page.get_by_role("button", name="Cancel run").click()

    page.locator("#run-live .status-cancelled").wait_for()
    assert "Cancelled by ana." in page.locator(".alert").inner_text()
    assert page.get_by_role("button", name="Cancel run").count() == 0
    shoot(page, "10-run-cancelled")

    # The worker closes the call at its first chunk: metered as cancelled, never as a success.
    deadline = time.monotonic() + 15
    while not LedgerEntry.objects.exclude(outcome=CallOutcome.STARTED).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    run = AgentRun.objects.get()
    assert [entry.outcome for entry in LedgerEntry.objects.filter(run_id=run.pk)] == [CallOutcome.CANCELLED]
    assert (run.status, run.output) == (RunStatus.CANCELLED, "")
    page.reload()
    assert page.locator("#run-live .status").inner_text() == "cancelled"
    assert page.locator(".output").count() == 0


def log_in_as(page, live_server, username: str, password: str) -> None:
    page.goto("/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/")


def test_every_page_fits_a_phone_screen_with_long_content(browser, live_server, transactional_db):
    """At 390 px nothing reaches past the screen's edge: wide tables scroll in their own box or become cards."""
    pages = demo_urls(demo_fill())
    context = browser.new_context(base_url=live_server.url, viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(15_000)
    too_wide = {}

    for name, path in (("login", "/login/"), ("admin login", "/admin/login/")):
        page.goto(path)
        too_wide[name] = wider_than_the_phone(page)
    log_in_as(page, live_server, STAFF, STAFF_PASSWORD)
    for name, path in pages:
        response = page.goto(path)
        assert response.status == 200, (name, path)
        too_wide[name] = wider_than_the_phone(page)
    context.close()

    member = browser.new_context(base_url=live_server.url, viewport=PHONE).new_page()
    log_in_as(member, live_server, MEMBER, MEMBER_PASSWORD)
    member.goto("/metrics/")
    too_wide["metrics for a non-staff member"] = wider_than_the_phone(member)
    member.context.close()

    assert {name: found[:5] for name, found in too_wide.items() if found} == {}
    assert len(too_wide) == len(pages) + 3


def test_the_admin_looks_like_the_app_and_leads_back_to_it(page, live_server, transactional_db):
    demo_fill()
    log_in_as(page, live_server, STAFF, STAFF_PASSWORD)
    app_header = page.evaluate("getComputedStyle(document.querySelector('header.topbar')).backgroundColor")

    page.get_by_role("navigation").get_by_role("link", name="Admin").click()
    page.wait_for_url("**/admin/")
    assert page.evaluate("getComputedStyle(document.querySelector('#header')).backgroundColor") == app_header
    assert page.evaluate("getComputedStyle(document.body).fontFamily").startswith("system-ui")

    page.get_by_role("navigation", name="Switchyard").get_by_role("link", name="Savings report").click()
    page.wait_for_url("**/metrics/reports/*/")
    page.goto("/admin/agents/agentrun/")
    page.get_by_role("link", name="Switchyard").click()  # the brand goes back to the dashboard
    page.wait_for_url(f"{live_server.url}/")


def test_a_username_in_the_runs_tables_is_never_broken_over_two_lines(browser, live_server, transactional_db):
    """At 1280 px a running workflow's table (with its Cancel column) read "admi / n" in the User column."""
    demo = demo_fill()
    demo.workflow.created_by.username = "admin"  # the user bin/run makes
    demo.workflow.created_by.save(update_fields=["username"])
    page = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900}).new_page()
    log_in_as(page, live_server, STAFF, STAFF_PASSWORD)
    broken = {}

    for path in (reverse("agents:workflow_detail", args=[demo.workflow.pk]), reverse("agents:run_list"), "/"):
        page.goto(path)
        broken[path] = page.evaluate(
            """() => [...document.querySelectorAll('td[data-label=User]')].filter(td => {
                const range = document.createRange();
                range.selectNodeContents(td);
                return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size > 1;
            }).map(td => td.textContent.trim())"""
        )
    page.context.close()

    assert {path: users for path, users in broken.items() if users} == {}
