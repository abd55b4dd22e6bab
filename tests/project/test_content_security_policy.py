"""Every response carries a Content-Security-Policy, and every page works under it: no inline code."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from agents.models import RunStatus, Workflow
from tests.agents.views_helpers import make_provider, make_run, make_team, make_user

BASE_DIR = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PASSWORD = "a-csp-test-password"


@pytest.mark.parametrize("url", ["/login/", "/admin/login/", "/api/v1/runs/", "/healthz"])
def test_every_response_carries_the_policy(client, db, url):
    assert client.get(url)["Content-Security-Policy"] == POLICY


def test_a_signed_in_page_carries_the_policy(client, db):
    client.force_login(make_user("ana"))

    response = client.get("/")

    assert response.status_code == 200
    assert response["Content-Security-Policy"] == POLICY


def test_the_templates_hold_no_inline_script_style_or_event_handler():
    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=", re.IGNORECASE)
    found = [
        f"{path.relative_to(BASE_DIR)}: {match.group()}"
        for path in (BASE_DIR / "templates").rglob("*.html")
        for match in inline.finditer(path.read_text())
    ]
    assert found == []


# --- In Chromium: every kind of page renders with no policy violation and no script error.


@pytest.fixture
def site(transactional_db):
    """Rows for the pages, written before Playwright starts (its loop makes the ORM refuse later)."""
    agents = make_team()
    admin = make_user("root", staff=True, password=PASSWORD)
    admin.is_superuser = True
    admin.save()
    make_provider()
    workflow = Workflow.objects.create(feature="A login page", created_by=admin, status=RunStatus.SUCCEEDED)
    run = make_run(
        agent=agents["marcus"],
        user=admin,
        status=RunStatus.SUCCEEDED,
        workflow=workflow,
        output="```python\nx = 1\n```",
    )
    return {"run": run.pk, "workflow": workflow.pk}


@pytest.fixture
def chromium(live_server, site):
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop on this thread; the test is sync code
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
            )
            page = browser.new_page(base_url=live_server.url)
            page.set_default_timeout(15_000)
            page.problems = []
            page.on("pageerror", lambda error: page.problems.append(f"{page.url}: script error: {error}"))
            page.on(
                "console",
                lambda m: (
                    m.type == "error"
                    and not m.text.startswith("Failed to load resource")
                    and page.problems.append(f"{page.url}: {m.text}")
                ),
            )
            page.on(
                "response",
                lambda r: (
                    r.status >= 400
                    and not r.url.endswith("/favicon.ico")  # the admin names no icon; browsers ask anyway
                    and page.problems.append(f"{r.url}: HTTP {r.status}")
                ),
            )
            # A violation the console does not report (a blocked style attribute, say) still fires this event.
            page.add_init_script(
                "document.addEventListener('securitypolicyviolation', e => console.error("
                "'CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI))"
            )
            yield page
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.mark.browser
def test_every_page_renders_under_the_policy_with_no_violation(chromium, site):
    page = chromium
    page.goto("/login/")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url("**/")
    pages = [
        "/",
        "/runs/",
        "/runs/new/",
        f"/runs/{site['run']}/",
        "/workflows/new/",
        f"/workflows/{site['workflow']}/",
        "/metrics/",
        "/metrics/usage/",
        "/metrics/latency/",
        "/metrics/local-share/",
        "/metrics/reports/",
        "/admin/",
        "/admin/agents/agentrun/",
        f"/admin/agents/agentrun/{site['run']}/change/",
        "/admin/routing/provider/add/",
        "/admin/axes/accessattempt/",
        "/api/docs/",
        "/api/v1/runs/",
    ]
    for url in pages:
        response = page.goto(url)
        assert response.status < 400, url
        page.wait_for_load_state("networkidle")
        if url == "/api/docs/":  # Swagger UI built the page from the schema with its own script
            page.wait_for_selector(".swagger-ui .opblock")
    assert page.problems == [], "\n".join(page.problems)
