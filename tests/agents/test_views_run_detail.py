from decimal import Decimal

import pytest
from django.urls import reverse

from agents.models import RunStatus
from routing.models import CallOutcome
from tests.factories import agents_create, attempt_create, provider_create, run_create, user_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def ana(client):
    user = user_create("ana")
    client.force_login(user)
    return user


@pytest.fixture
def marcus():
    return agents_create()["marcus"]


def test_it_shows_each_attempt_with_why_it_was_chosen(client, ana, marcus):
    run = run_create(
        agent=marcus, user=ana, status=RunStatus.SUCCEEDED, provider_name="openai", model_name="gpt-4o-mini"
    )
    local, cloud = (
        provider_create("ollama-local", kind="ollama"),
        provider_create("openai", kind="openai", is_local=False, priority=2, model="gpt-4o-mini"),
    )
    attempt_create(
        run=run, provider=local, outcome=CallOutcome.TRANSIENT, error="503 server busy", reason="local first", cost="0"
    )
    attempt_create(
        run=run, provider=cloud, attempt=2, reason="fallback after ollama-local failed", cost="0.0012",
        baseline="0.0012", prompt_tokens=1234, completion_tokens=56, latency_ms=812,
    )  # fmt: skip

    response = client.get(reverse("agents:run_detail", args=[run.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "local first" in page
    assert "503 server busy" in page
    assert "fallback after ollama-local failed" in page
    assert "1,234 / 56" in page
    assert "812 ms" in page
    assert "$0.0012" in page


def test_it_shows_status_provider_tokens_cost_and_savings(client, ana, marcus):
    run = run_create(
        agent=marcus, user=ana, status=RunStatus.SUCCEEDED, provider_name="ollama-local", model_name="gemma3:270m",
        prompt_tokens=40, completion_tokens=120, latency_ms=950,
        cost_usd=Decimal(0), baseline_cost_usd=Decimal("0.0031"),
    )  # fmt: skip

    page = client.get(reverse("agents:run_detail", args=[run.pk])).content.decode()

    assert 'class="status status-succeeded"' in page
    assert "ollama-local" in page and "gemma3:270m" in page
    assert "40 / 120" in page
    assert "950 ms" in page
    assert "$0.0031" in page  # saved vs the cloud baseline


def test_it_shows_code_blocks_as_code(client, ana, marcus):
    output = "Here you go:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\nDone."
    run = run_create(agent=marcus, user=ana, status=RunStatus.SUCCEEDED, output=output)

    page = client.get(reverse("agents:run_detail", args=[run.pk])).content.decode()

    assert '<pre><code class="language-python">def add(a, b):\n    return a + b</code></pre>' in page
    assert "<p>Here you go:</p>" in page


def test_it_escapes_model_output(client, ana, marcus):
    output = "<script>alert('x')</script>\n```html\n<img src=x onerror=alert(1)>\n```"
    run = run_create(agent=marcus, user=ana, status=RunStatus.SUCCEEDED, output=output)

    page = client.get(reverse("agents:run_detail", args=[run.pk])).content.decode()

    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_it_escapes_the_prompt_and_the_error(client, ana, marcus):
    run = run_create(
        agent=marcus, user=ana, status=RunStatus.FAILED, prompt="<b>bold</b>", error="<i>upstream</i> said no"
    )

    page = client.get(reverse("agents:run_detail", args=[run.pk])).content.decode()

    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "&lt;i&gt;upstream&lt;/i&gt; said no" in page


def test_it_shows_the_quality_check(client, ana, marcus):
    run = run_create(
        agent=marcus, user=ana, status=RunStatus.SUCCEEDED, quality_ok=False, quality_detail="SyntaxError on line 3"
    )

    page = client.get(reverse("agents:run_detail", args=[run.pk])).content.decode()

    assert "Code block parses as Python" in page
    assert "failed" in page
    assert "SyntaxError on line 3" in page


def test_it_offers_cancel_only_while_the_run_can_be_cancelled(client, ana, marcus):
    queued = run_create(agent=marcus, user=ana, status=RunStatus.QUEUED)
    done = run_create(agent=marcus, user=ana, status=RunStatus.SUCCEEDED)
    cancel_url = reverse("agents:run_cancel", args=[queued.pk])

    assert cancel_url in client.get(reverse("agents:run_detail", args=[queued.pk])).content.decode()
    assert "Cancel run" not in client.get(reverse("agents:run_detail", args=[done.pk])).content.decode()


def test_it_polls_until_the_run_ends(client, ana, marcus):
    run = run_create(agent=marcus, user=ana, status=RunStatus.RUNNING)
    live_url = reverse("agents:run_live", args=[run.pk])

    page = client.get(reverse("agents:run_detail", args=[run.pk])).content.decode()
    assert f'data-live-url="{live_url}" data-finished="false"' in page
    assert "/static/agents/live.js" in page

    run.status, run.output = RunStatus.SUCCEEDED, "all done"
    run.save()
    fragment = client.get(live_url)
    assert fragment.status_code == 200
    assert 'data-finished="true"' in fragment.content.decode()
    assert "all done" in fragment.content.decode()
    assert "<html" not in fragment.content.decode()  # a fragment, not a page
    assert "no-cache" in fragment["Cache-Control"]


def test_it_answers_404_for_another_users_run(client, ana, marcus):
    other = run_create(agent=marcus, user=user_create("bo"), status=RunStatus.SUCCEEDED, output="secret")

    assert client.get(reverse("agents:run_detail", args=[other.pk])).status_code == 404
    assert client.get(reverse("agents:run_live", args=[other.pk])).status_code == 404


def test_it_lets_staff_see_anyones_run(client, marcus):
    run = run_create(agent=marcus, user=user_create("bo"), status=RunStatus.SUCCEEDED, output="shared")
    client.force_login(user_create("boss", staff=True))

    response = client.get(reverse("agents:run_detail", args=[run.pk]))

    assert response.status_code == 200
    assert "shared" in response.content.decode()


def test_it_sends_anonymous_visitors_to_log_in(client, marcus):
    run = run_create(agent=marcus, user=user_create("bo"))

    for name in ("agents:run_detail", "agents:run_live"):
        response = client.get(reverse(name, args=[run.pk]))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_it_shows_a_negative_saving_as_a_loss(client, ana, marcus):
    run = run_create(
        agent=marcus,
        user=ana,
        status=RunStatus.SUCCEEDED,
        cost_usd=Decimal("0.0050"),
        baseline_cost_usd=Decimal("0.0020"),
    )

    page = client.get(reverse("agents:run_detail", args=[run.pk])).content.decode()

    assert "-$0.0030" in page


def test_it_shows_a_cut_off_code_block_as_code(client, ana, marcus):
    run = run_create(
        agent=marcus, user=ana, status=RunStatus.SUCCEEDED, output="Start:\n```\nFROM python:3.11\nRUN pip <x>"
    )

    page = client.get(reverse("agents:run_detail", args=[run.pk])).content.decode()

    assert "<pre><code>FROM python:3.11\nRUN pip &lt;x&gt;</code></pre>" in page


def test_it_never_shows_a_tiny_charge_as_free(client, ana, marcus):
    run = run_create(
        agent=marcus, user=ana, status=RunStatus.SUCCEEDED, cost_usd=Decimal("0.000012"), baseline_cost_usd=Decimal(0)
    )

    page = client.get(reverse("agents:run_detail", args=[run.pk])).content.decode()

    assert "&lt;$0.0001" in page
