"""A team's month of work with long content, and the list of every page to look at.

Shared by the phone-width browser tests (tests/e2e/) and bench/screenshots.py,
so the screenshots show exactly the pages and data the test checks. The content is made long on
purpose: long prompts (one with a URL-like word that cannot wrap), long model names, a page of
runs and more, failed quality checks, fallbacks and failures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.urls import reverse
from django.utils import timezone

from agents.models import AgentRun, RunStatus, Workflow
from routing.models import CallOutcome, Price, RoutingPolicy
from routing.table import invalidate_routing_cache
from tests.factories import agents_create, attempt_create, provider_create, run_create, user_create

STAFF, STAFF_PASSWORD = "olivia", "olivia-demo-password"
MEMBER, MEMBER_PASSWORD = "ana", "ana-demo-password"
LONG_LOCAL_MODEL = "hf.co/unsloth/Qwen2.5-Coder-32B-Instruct-GGUF:Q4_K_M-with-a-very-long-quantisation-tag"
LONG_CLOUD_MODEL = "claude-sonnet-4-20250514-extended-thinking-preview-long-name"
UNBREAKABLE = "https://example.com/" + "a-very-long-path-segment-" * 12
LONG_PROMPT = (
    "Write a FastAPI endpoint that lists the invoices of a customer, paginated, filtered by status and "
    "by date range, with OpenAPI docs and tests. The data comes from " + UNBREAKABLE + " and each "
    "invoice has lines, taxes and a currency. " * 4
)
PROMPTS = (
    LONG_PROMPT,
    "A React component that shows a sortable table of invoices with a search box.",
    "Unit tests for the invoice total calculator, including rounding and currency edge cases.",
    "A multi-stage Dockerfile for a Django app served by gunicorn, non-root, with a health check.",
)
RUNS = 60  # more than a page of the run list


@dataclass(frozen=True)
class DemoPages:
    run: AgentRun  # a run with a long prompt, a fallback and a failed quality check
    workflow: Workflow


def demo_fill() -> DemoPages:
    """The rows every page needs, spread over the current month; returns the ones pages are about."""
    staff = user_create(STAFF, staff=True, password=STAFF_PASSWORD)
    staff.is_superuser = True
    staff.save(update_fields=["is_superuser"])
    member = user_create(MEMBER, password=MEMBER_PASSWORD)
    local = provider_create(
        "ollama-mac-mini-in-the-office", kind="ollama", model=LONG_LOCAL_MODEL, base_url="http://127.0.0.1:9"
    )
    cloud = provider_create(
        "anthropic", kind="anthropic", is_local=False, priority=2, model=LONG_CLOUD_MODEL, price=("3", "15"),
        api_key_env="DEMO_NO_SUCH_KEY",
    )  # fmt: skip
    baseline = cloud.models.get()
    RoutingPolicy.objects.update_or_create(pk=1, defaults={"baseline_model": baseline})
    invalidate_routing_cache()
    team = list(agents_create().values())

    now = timezone.now()
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    span = max((now - month_start).total_seconds(), 3600)
    statuses = (RunStatus.SUCCEEDED,) * 6 + (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.QUEUED)
    for i in range(RUNS):
        agent = team[i % len(team)]
        status = statuses[i % len(statuses)]
        at = month_start + timedelta(minutes=5, seconds=span * i / RUNS)
        _demo_run(agent=agent, user=(staff, member)[i % 2], status=status, prompt=PROMPTS[i % len(PROMPTS)],
                  at=at, local=local, cloud=cloud, check_failed=i % 7 == 3, fallback=i % 5 == 0)  # fmt: skip

    run = _demo_run(agent=team[0], user=member, status=RunStatus.SUCCEEDED, prompt=LONG_PROMPT, at=now,
                    local=local, cloud=cloud, check_failed=True, fallback=True)  # fmt: skip
    workflow = Workflow.objects.create(feature=LONG_PROMPT, created_by=member, status=RunStatus.RUNNING)
    for i, agent in enumerate(team):
        status = (RunStatus.SUCCEEDED, RunStatus.SUCCEEDED, RunStatus.RUNNING, RunStatus.FAILED)[i]
        _demo_run(agent=agent, user=member, status=status, prompt=PROMPTS[i], at=now, local=local, cloud=cloud,
                  check_failed=i == 1, fallback=False, workflow=workflow)  # fmt: skip
    return DemoPages(run=run, workflow=workflow)


def _demo_run(*, agent, user, status, prompt, at, local, cloud, check_failed, fallback, workflow=None) -> AgentRun:
    succeeded = status == RunStatus.SUCCEEDED
    served_by = cloud if fallback else local
    run = run_create(
        agent=agent, user=user, status=status, prompt=prompt, created_at=at, workflow=workflow,
        provider_name=served_by.name if succeeded else "", model_name=served_by.default_model if succeeded else "",
        prompt_tokens=412 if succeeded else 0, completion_tokens=1876 if succeeded else 0,
        latency_ms=8123 if succeeded else None,
        cost_usd=Decimal("0.0294") if succeeded and fallback else Decimal(0) if succeeded else None,
        baseline_cost_usd=Decimal("0.0294") if succeeded else None,
        quality_ok=(not check_failed) if succeeded else None,
        quality_detail=(
            "the code block does not parse as Python: invalid syntax at line 12 (an unclosed bracket)"
            if check_failed else "the code block parses as Python (40 lines)"
        ) if succeeded else "",
        output="Here is the endpoint.\n\n```python\ndef " + "very_long_function_name_" * 6 + "():\n    return "
        + repr(UNBREAKABLE) + "\n```\n\nIt lists the invoices." if succeeded else "",
        error="every provider failed: ollama-mac-mini-in-the-office timed out after 120 s; anthropic: no API key"
        if status == RunStatus.FAILED else "Cancelled by ana." if status == RunStatus.CANCELLED else "",
    )  # fmt: skip
    if status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.CANCELLED):
        return run
    attempt_create(
        run=run, provider=local, outcome=CallOutcome.TRANSIENT if fallback or not succeeded else CallOutcome.SUCCESS,
        error="" if succeeded and not fallback else "timed out after 120 s waiting for the first token",
        reason="local first: the agent's capability is served locally", cost="0", baseline="0.0294",
        prompt_tokens=412, completion_tokens=0 if fallback else 1876, latency_ms=8123,
        created_at=at - timedelta(minutes=2) if fallback else at,
    )  # fmt: skip
    if fallback and succeeded:
        attempt_create(
            run=run, provider=cloud, attempt=2, reason="fallback after ollama-mac-mini-in-the-office failed",
            cost="0.0294", baseline="0.0294", prompt_tokens=412, completion_tokens=1876, latency_ms=9120,
            created_at=at, price=Price.objects.filter(model__provider=cloud).first(),
        )  # fmt: skip
    return run


def demo_urls(demo: DemoPages) -> list[tuple[str, str]]:
    """(name, path) of every page, as staff sees them; the login page is looked at logged out."""
    month = timezone.now().strftime("%Y-%m")
    return [
        ("dashboard", reverse("home")),
        ("runs", reverse("agents:run_list")),
        ("run", reverse("agents:run_detail", args=[demo.run.pk])),
        ("new-task", reverse("agents:run_new")),
        ("workflow", reverse("agents:workflow_detail", args=[demo.workflow.pk])),
        ("new-feature", reverse("agents:workflow_new")),
        ("metrics-cost", reverse("metrics:cost")),
        ("metrics-usage", reverse("metrics:usage")),
        ("metrics-latency", reverse("metrics:latency")),
        ("metrics-local-share", reverse("metrics:local_share")),
        ("report", reverse("metrics:report", kwargs={"month": month})),
        ("admin", reverse("admin:index")),
        ("admin-runs", reverse("admin:agents_agentrun_changelist")),
        ("admin-providers", reverse("admin:routing_provider_changelist")),
        ("admin-run", reverse("admin:agents_agentrun_change", args=[demo.run.pk])),
    ]


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

# The page's width, and every visible element that reaches past the viewport's right edge (or
# before its left) other than inside a box that scrolls or clips it, itself within the viewport.
OVERFLOW_JS = """
() => {
  const viewport = document.documentElement.clientWidth;
  const inside = (r) => r.left >= -1 && r.right <= viewport + 1;
  const describe = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\\s+/).join(".") : "");
  const wide = [];
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if ((r.width === 0 && r.height === 0) || inside(r)) continue;
    let box = el.parentElement, held = false;
    while (box && box !== document.body) {
      if (/(auto|scroll|hidden|clip)/.test(getComputedStyle(box).overflowX)) {
        held = inside(box.getBoundingClientRect());
        break;
      }
      box = box.parentElement;
    }
    if (!held) wide.push(describe(el) + " " + Math.round(r.left) + ".." + Math.round(r.right));
  }
  return {scrollWidth: document.documentElement.scrollWidth, wide: wide};
}
"""

PHONE = {"width": 390, "height": 844}


def wider_than_the_phone(page) -> list[str]:
    """The page's width if it scrolls sideways, and each element past the screen's edge outside a scroll box."""
    found = page.evaluate(OVERFLOW_JS)
    page_width = [f"page {found['scrollWidth']} px"] if found["scrollWidth"] > PHONE["width"] else []
    return page_width + found["wide"]


def shoot(page, name: str) -> None:
    """A full-page screenshot into E2E_SCREENSHOTS, when that names a folder."""
    folder = os.environ.get("E2E_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)
