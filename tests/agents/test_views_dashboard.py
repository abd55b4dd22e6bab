import socket
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from agents.models import RunStatus
from core.months import month_start
from metrics import selectors as metrics_selectors
from routing import health
from routing.models import CallOutcome, Provider, RoutingPolicy
from tests.agents.views_helpers import make_attempt, make_provider, make_run, make_team, make_user

pytestmark = pytest.mark.django_db
URL = reverse("home")


@pytest.fixture(autouse=True)
def clean_cache():
    cache.clear()  # cool-downs live in the shared cache
    yield
    cache.clear()


@pytest.fixture
def ana(client):
    user = make_user("ana")
    client.force_login(user)
    return user


@pytest.fixture
def team():
    return make_team()


def test_it_sends_anonymous_visitors_to_log_in(client):
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_it_renders_with_nothing_yet(client, ana):
    response = client.get(URL)

    assert response.status_code == 200
    assert "No runs yet" in response.content.decode()
    assert "load_routing" in response.content.decode()


def test_it_shows_the_local_share_against_the_target_with_the_error_rate_beside(client, ana, team):
    RoutingPolicy.objects.update_or_create(pk=1, defaults={"target_local_share": Decimal("85")})
    local, cloud = make_provider("ollama-local"), make_provider("openai", is_local=False, priority=2)
    run = make_run(agent=team["marcus"], user=ana, status=RunStatus.SUCCEEDED)
    for _ in range(3):
        make_attempt(run=run, provider=local)
    make_attempt(run=run, provider=cloud, cost="0.01", baseline="0.01")
    make_attempt(run=run, provider=local, outcome=CallOutcome.TRANSIENT, cost=None, baseline=None)  # not a success

    response = client.get(URL)

    page = response.content.decode()
    assert "75.00%" in page
    assert "target 85%" in page
    assert "3 of 4 successful calls local" in page
    assert "errors 20.00%" in page
    assert response.context["on_target"] is False


def test_it_shows_the_figures_the_metrics_selectors_give_for_this_utc_month(client, ana, team):
    local, cloud = make_provider("ollama-local"), make_provider("openai", is_local=False, priority=2)
    run = make_run(agent=team["marcus"], user=ana)
    now = timezone.now()
    first = month_start(now)
    make_attempt(run=run, provider=local, cost="0", baseline="0.0040", created_at=first)
    make_attempt(run=run, provider=cloud, cost="0.0100", baseline="0.0100", created_at=now)
    make_attempt(run=run, provider=local, cost=None, baseline="0.5", created_at=now)  # no price: no savings claimed
    make_attempt(run=run, provider=cloud, cost="9", baseline="9", created_at=first - timedelta(microseconds=1))

    month = client.get(URL).context["month"]

    assert month == metrics_selectors.totals(start=first.date(), end=now.astimezone(UTC).date())
    assert month["cost_usd"] == Decimal("0.0100")
    assert month["savings_usd"] == Decimal("0.0040")
    assert month["calls"] == 3
    assert month["local_share"] == Decimal("66.67")
    assert month["unpriced_calls"] == 1


def test_it_shows_my_recent_runs_but_not_other_peoples(client, ana, team):
    mine = make_run(agent=team["marcus"], user=ana)
    theirs = make_run(agent=team["marcus"], user=make_user("bo"))

    page = client.get(URL).content.decode()

    assert reverse("agents:run_detail", args=[mine.pk]) in page
    assert reverse("agents:run_detail", args=[theirs.pk]) not in page


def test_it_shows_each_providers_status_with_its_detail(client, ana, team, monkeypatch, fake_ollama):
    monkeypatch.delenv("SWITCHYARD_TEST_UNSET_KEY", raising=False)
    host = {"base_url": fake_ollama.base_url, "model": "mistral:latest"}  # the local hosts answer the probe
    up, cooling, down = (
        make_provider("ollama-local", **host),
        make_provider("llama", priority=2, **host),
        make_provider("gpu", priority=3, **host),
    )
    make_provider("new", priority=4, **host)
    make_provider("anthropic", is_local=False, priority=5, api_key_env="SWITCHYARD_TEST_UNSET_KEY")
    make_provider("openai", is_local=False, priority=6, enabled=False)
    run = make_run(agent=team["marcus"], user=ana)
    make_attempt(run=run, provider=up)
    make_attempt(run=run, provider=down, outcome=CallOutcome.TRANSIENT, cost=None, baseline=None, error="503 busy")
    cooldown = health.record_transient_failure(cooling.name, failures_before_cooldown=1, cooldown_seconds=60)
    monkeypatch.setattr("routing.selectors.time", SimpleNamespace(time=lambda: cooldown.until - 42.4))

    response = client.get(URL)

    statuses = {provider.name: (provider.status, provider.detail) for provider in response.context["providers"]}
    assert statuses == {
        "ollama-local": ("up", ""),
        "llama": ("cooling", "42 s left after 1 transient failures in a row"),
        "gpu": ("down", "503 busy"),
        "new": ("not yet called", "it answers, with mistral:latest"),  # the probe found it
        "anthropic": ("no key", "SWITCHYARD_TEST_UNSET_KEY is not set"),
        "openai": ("disabled", "the router does not use it"),
    }
    page = response.content.decode()
    assert '<span class="health health-no-key">no key</span>' in page
    assert '<span class="muted small">503 busy</span>' in page


def test_it_never_shows_an_api_key(client, ana, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-very-secret")
    make_provider("openai", is_local=False, api_key_env="OPENAI_API_KEY")

    page = client.get(URL).content.decode()

    assert "sk-test-very-secret" not in page


def test_it_counts_the_month_in_utc_not_local_time():
    # 00:30 on Dec 1 at UTC+1 is still November in UTC.
    assert month_start(datetime(2026, 12, 1, 0, 30, tzinfo=timezone.get_fixed_timezone(60))) == datetime(
        2026, 11, 1, tzinfo=UTC
    )


def test_it_links_staff_to_the_metrics_pages(client):
    client.force_login(make_user("boss", staff=True))

    page = client.get(URL).content.decode()

    assert reverse("metrics:cost") in page
    assert reverse("metrics:report_latest") in page


def test_it_does_not_link_others_to_the_metrics_pages(client, ana):
    assert reverse("metrics:cost") not in client.get(URL).content.decode()


# -- issue 11 item 1: provider readiness ---------------------------------------------------------


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_fresh_setup_without_keys_or_an_ollama_host_says_what_to_do_for_each_provider(
    client, ana, providers, monkeypatch
):
    # Before: ollama read "not yet called" (nothing said it could not be reached) and the cloud
    # providers "no key" with the variable's name, but not where to put it.
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    url = closed_port_url()
    Provider.objects.filter(name="ollama").update(base_url=url)

    page = client.get(URL).content.decode()

    assert (
        f"Ollama at {url} refused the connection: start <code>ollama serve</code>, set OLLAMA_HOST, "
        "or run <code>bin/run --local-model</code>" in page
    )
    assert "ANTHROPIC_API_KEY is not set: put it in .env or the environment of the worker" in page
    assert "OPENAI_API_KEY is not set: put it in .env or the environment of the worker" in page
    assert "not yet called" not in page


def test_an_ollama_host_without_the_model_says_which_pull_to_run(client, ana, fake_ollama):
    fake_ollama.models = ["qwen2.5-coder:7b"]
    make_provider("ollama", base_url=fake_ollama.base_url, model="mistral:latest")

    response = client.get(URL)

    [shown] = response.context["providers"]
    assert (shown.status, shown.detail) == ("down", "mistral:latest is not pulled on the host")
    assert (
        "mistral:latest is not pulled on the host: run <code>ollama pull mistral:latest</code> on it"
        in response.content.decode()
    )


def test_a_host_started_since_its_last_call_was_refused_reads_up_without_a_fix(client, ana, team, fake_ollama):
    provider = make_provider("ollama", base_url=fake_ollama.base_url, model="mistral:latest")
    run = make_run(agent=team["marcus"], user=ana)
    refused = f"Ollama at {fake_ollama.base_url} refused the connection"
    make_attempt(run=run, provider=provider, outcome=CallOutcome.TRANSIENT, error=refused, problem="refused")

    [shown] = client.get(URL).context["providers"]

    assert (shown.status, shown.fix) == ("up", "")


def test_the_test_button_is_shown_to_staff_only(client, ana, fake_ollama):
    make_provider("ollama", base_url=fake_ollama.base_url, model="mistral:latest")
    action = reverse("routing:provider_test", args=["ollama"])

    assert action not in client.get(URL).content.decode()
    client.force_login(make_user("boss", staff=True))
    assert f'action="{action}"' in client.get(URL).content.decode()
