"""A person in headless Chromium: logs in, submits a task, watches it run live, reads the answer.

Everything is real except the model host: Debian's chromium driven by Playwright, the
live server, PostgreSQL, a Celery worker on the Redis broker, the router and the Ollama adapter.
The upstream is the Ollama protocol fake (tests/fakes), slowed down so the page is seen
updating while the run works.

Set E2E_SCREENSHOTS=<dir> to keep a screenshot of each page.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone

from agents.models import AgentRun, RunStatus
from routing.models import LLMModel, Price, Provider, ProviderKind
from routing.router import invalidate_routing_cache
from tests.agents.views_helpers import make_team, make_user

pytestmark = [pytest.mark.browser, pytest.mark.worker]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
PASSWORD = "a-browser-test-password"
ANSWER = (
    "Here is the endpoint.\n\n"
    "```python\n"
    "def add(a: int, b: int) -> int:\n"
    "    return a + b  # <script>window.__pwned = 1</script>\n"
    "```\n\n"
    "It adds two numbers."
)


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop on this thread, which makes Django refuse
    # database calls from it; the test code itself is plain synchronous code, so that is safe.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def celery_worker(transactional_db) -> Iterator[None]:
    """A real Celery worker (a thread in this process, so it shares the test database) on the broker."""
    from celery.contrib.testing.worker import start_worker

    from project.celery import app

    with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
        yield


@pytest.fixture
def local_host(fake_ollama, transactional_db) -> Provider:
    fake_ollama.reply = ANSWER
    fake_ollama.behave("ok", delay=1.5)  # long enough to see "running" on the page
    provider = Provider.objects.create(
        name="ollama",
        kind=ProviderKind.OLLAMA,
        base_url=fake_ollama.base_url,
        is_local=True,
        priority=1,
        default_model="mistral:latest",
        capabilities=["code_generation", "testing"],
    )
    model = LLMModel.objects.create(provider=provider, name="mistral:latest", capabilities=["code_generation"])
    Price.objects.create(
        model=model, effective_from=timezone.now().replace(year=2025), input_per_mtok=Decimal(0), output_per_mtok=0
    )
    invalidate_routing_cache()
    return provider


def shoot(page, name: str) -> None:
    folder = os.environ.get("E2E_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_it_logs_in_submits_a_task_and_watches_it_finish(page, live_server, celery_worker, local_host):
    make_team()
    make_user("ana", password=PASSWORD)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    page.goto("/")
    assert "/login/" in page.url
    shoot(page, "01-login")
    page.fill("input[name=username]", "ana")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/")
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
    status = page.locator("#run-live .status")
    assert status.inner_text() in {"queued", "running"}  # the worker takes 1.5 s to answer
    assert page.get_by_role("button", name="Cancel run").is_visible()
    shoot(page, "04-run-live")

    page.locator("#run-live .status-succeeded").wait_for(timeout=30_000)  # swapped in by live.js, no reload
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
    assert "100.0%" in page.locator(".cards").inner_text()
    shoot(page, "07-dashboard")
