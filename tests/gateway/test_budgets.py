"""Monthly cloud budgets at the gateway, through the official `openai` package against uvicorn: a
team's budget holds when two keys of two of its users race for the last of it, a refusal is
OpenAI's 429 `insufficient_quota` (RateLimitError), the remaining budget is in the headers, and
the alert is mailed once. The cloud is the OpenAI fake (its real protocol, with usage)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal

import httpx
import ollama
import openai
import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import ApiKey, Membership, Team
from accounts.services import key_create
from routing import budget
from routing.models import LedgerEntry, Provider
from tests.gateway.conftest import LOCAL
from tests.routing.conftest_router import fresh_routing, make_provider  # noqa: F401  (a fixture)

KEY_ENV = "SWITCHYARD_TEST_OPENAI_KEY"
CLOUD_MODEL = "gpt-4o-mini"  # one the fake serves
ASK = [{"role": "user", "content": "Write a haiku about routers."}]  # 28 characters: 7 tokens, and 4 per message
MAX_TOKENS = 1000
# At $3 / $15 per million: the worst case (11 prompt tokens estimated, 1,000 answer tokens) and the
# real cost (the fake reports 9 prompt tokens and 1,000 answer tokens).
WORST = Decimal(11 * 3 + 1000 * 15) / Decimal(1_000_000)
REAL = Decimal(9 * 3 + 1000 * 15) / Decimal(1_000_000)
LIMIT = Decimal("1.00")
SPENT = Decimal("0.95")  # room for three calls at their worst case ($0.0451), not four ($0.0601)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_routing")]


def client(gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30)


@pytest.fixture
def cloud(empty_gateway, fake_openai, monkeypatch: pytest.MonkeyPatch):
    """The only provider: a cloud one (the OpenAI fake) at $3 / $15 per million tokens."""
    monkeypatch.setenv(KEY_ENV, "sk-test-1234567890")
    fake_openai.usage = {"prompt_tokens": 9, "completion_tokens": 1000, "total_tokens": 1009}
    make_provider(
        "cloud",
        kind="openai",
        base_url=fake_openai.base_url,
        model=CLOUD_MODEL,
        is_local=False,
        api_key_env=KEY_ENV,
        price=("3", "15"),
    )
    return fake_openai


@pytest.fixture
def platform(cloud) -> dict[str, str]:
    """Team platform ($1.00 a month, $0.95 of it spent), its members ana and ben, a key each."""
    team = Team.objects.create(name="platform", monthly_cloud_budget_usd=LIMIT)
    users = get_user_model().objects
    secrets = {}
    for name in ("ana", "ben"):
        user = users.create_user(username=name, password="x", email=f"{name}@example.com")
        Membership.objects.create(user=user, team=team)
        secrets[name] = key_create(user=user, name="laptop").secret
    LedgerEntry.objects.create(
        created_at=timezone.now() - timedelta(seconds=5),
        provider=Provider.objects.get(name="cloud"),
        model_name=CLOUD_MODEL,
        is_local=False,
        outcome="success",
        cost_usd=SPENT,
        user=users.get(username="ana"),
        team=team,
    )
    return secrets


def team_spend() -> Decimal:
    rows = LedgerEntry.objects.filter(team__name="platform", is_local=False)
    return rows.aggregate(total=Sum(Coalesce("reserved_usd", "cost_usd")))["total"]


CALLS_PER_KEY = 4


@pytest.fixture
def slow_budget_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each reservation takes 0.2 s between reading what its budgets have left and holding its
    worst case (a loaded database): a window the concurrent requests all fall into, unless the
    budget's lock makes them take turns."""
    read = budget._statuses

    def slowly(*args, **kwargs):
        statuses = read(*args, **kwargs)
        time.sleep(0.2)
        return statuses

    monkeypatch.setattr(budget, "_statuses", slowly)


def test_two_keys_of_one_team_racing_for_the_last_of_its_budget_overspend_by_at_most_one_call(
    empty_gateway, cloud, platform, slow_budget_reads
):
    """Eight requests at once, four per key of two users, against the team's last $0.05: each could
    cost $0.0150. Without the lock on the team's budget every one would see $0.05 left and go."""
    cloud.behave("ok", delay=0.3)  # the calls overlap: none has settled before the others reserve
    start = threading.Barrier(2 * CALLS_PER_KEY)
    served: list[str] = []
    refused: list[openai.RateLimitError] = []

    def call(secret: str) -> None:
        start.wait()
        try:
            answer = client(empty_gateway, secret).chat.completions.create(
                model=CLOUD_MODEL, messages=ASK, max_tokens=MAX_TOKENS
            )
            served.append(answer.id)
        except openai.RateLimitError as error:
            refused.append(error)

    threads = [
        threading.Thread(target=call, args=(secret,)) for secret in platform.values() for _ in range(CALLS_PER_KEY)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(cloud.requests) == 3  # the upstream calls made: all that fit, no more
    assert (len(served), len(refused)) == (3, 5)
    assert {error.code for error in refused} == {"insufficient_quota"}
    spent = team_spend()
    assert spent == SPENT + 3 * REAL
    assert spent <= LIMIT + WORST
    assert not LedgerEntry.objects.filter(outcome="started").exists()  # every reservation settled


def spend_all_but(amount: str) -> None:
    """The team's spend so far this month leaves `amount`."""
    LedgerEntry.objects.filter(team__name="platform").update(cost_usd=LIMIT - Decimal(amount))


def test_a_call_a_budget_refuses_is_openais_429_insufficient_quota_and_is_not_made(empty_gateway, cloud, platform):
    spend_all_but("0.01")

    with pytest.raises(openai.RateLimitError) as raised:
        client(empty_gateway, platform["ben"]).chat.completions.create(
            model=CLOUD_MODEL, messages=ASK, max_tokens=MAX_TOKENS
        )

    error = raised.value
    assert (error.status_code, error.code, error.type) == (429, "insufficient_quota", "insufficient_quota")
    assert "team platform's cloud budget: $0.0100 of $1.00 left this month, this call could cost $0.0150" in (
        error.message
    )
    assert error.response.headers["x-should-retry"] == "false"  # the official clients do not retry it
    assert error.response.headers["x-switchyard-budget-scope"] == "team"
    assert error.response.headers["x-switchyard-budget-remaining-usd"] == "0.0100000000"
    assert cloud.requests == []
    assert not LedgerEntry.objects.filter(user__username="ben").exists()


def test_a_streamed_call_a_budget_refuses_is_the_same_429(empty_gateway, cloud, platform):
    spend_all_but("0.01")

    with pytest.raises(openai.RateLimitError) as raised:
        client(empty_gateway, platform["ben"]).chat.completions.create(
            model=CLOUD_MODEL, messages=ASK, max_tokens=MAX_TOKENS, stream=True
        )

    assert raised.value.code == "insufficient_quota"
    assert cloud.requests == []


def test_the_remaining_budgets_are_in_the_headers_after_the_call(empty_gateway, cloud, platform):
    raw = client(empty_gateway, platform["ben"]).chat.completions.with_raw_response.create(
        model=CLOUD_MODEL, messages=ASK, max_tokens=MAX_TOKENS
    )

    left = LIMIT - SPENT - REAL  # the team's: its spend, and this call at its real cost
    assert raw.headers["x-switchyard-budget-remaining-usd"] == f"{left:.10f}"
    assert raw.headers["x-switchyard-budget-scope"] == "team"
    assert raw.headers["x-switchyard-budget-remaining-team-usd"] == f"{left:.10f}"
    assert raw.headers["x-switchyard-budget-remaining-user-usd"] == f"{Decimal(20) - REAL:.10f}"  # the policy's
    assert "x-switchyard-budget-remaining-key-usd" not in raw.headers  # the key has no limit of its own


def test_a_streamed_answer_has_the_budgets_left_as_it_started(empty_gateway, cloud, platform):
    with client(empty_gateway, platform["ben"]).chat.completions.with_streaming_response.create(
        model=CLOUD_MODEL, messages=ASK, max_tokens=MAX_TOKENS, stream=True
    ) as response:
        headers = response.headers
        text = "".join(chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices)

    assert text == cloud.reply
    assert headers["x-switchyard-budget-remaining-usd"] == f"{LIMIT - SPENT:.10f}"
    assert headers["x-switchyard-budget-scope"] == "team"


def test_a_keys_own_budget_is_the_tightest_when_it_has_least_left(empty_gateway, cloud, platform):
    key = ApiKey.objects.get(user__username="ben")
    key.monthly_cloud_budget_usd = Decimal("0.02")
    key.save()

    raw = client(empty_gateway, platform["ben"]).chat.completions.with_raw_response.create(
        model=CLOUD_MODEL, messages=ASK, max_tokens=MAX_TOKENS
    )
    assert raw.headers["x-switchyard-budget-scope"] == "key"
    assert raw.headers["x-switchyard-budget-remaining-usd"] == f"{Decimal('0.02') - REAL:.10f}"

    with pytest.raises(openai.RateLimitError) as raised:
        client(empty_gateway, platform["ben"]).chat.completions.create(
            model=CLOUD_MODEL, messages=ASK, max_tokens=MAX_TOKENS
        )
    assert f"API key {key.prefix}'s cloud budget: " in raised.value.message
    assert len(cloud.requests) == 1


def test_the_alert_is_mailed_once_to_the_teams_members_when_its_budget_reaches_the_share(
    empty_gateway, cloud, platform
):
    spend_all_but("0.21")  # $0.79 of $1.00 spent: one call's worst case takes it past 80%
    ana = client(empty_gateway, platform["ana"])

    ana.chat.completions.create(model=CLOUD_MODEL, messages=ASK, max_tokens=MAX_TOKENS)
    ana.chat.completions.create(model=CLOUD_MODEL, messages=ASK, max_tokens=MAX_TOKENS)

    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sorted(sent.to) == ["ana@example.com", "ben@example.com"]
    assert sent.subject == "Switchyard: your team platform's cloud budget is 80.50% used this month"
    assert "At the limit Switchyard makes no more cloud calls for it until the month ends; local calls go on." in (
        sent.body
    )


@pytest.mark.local_model
def test_a_spent_budget_stops_the_cloud_but_not_the_local_model(gateway, cloud, platform):
    spend_all_but("0")
    ben = client(gateway, platform["ben"])

    with pytest.raises(openai.RateLimitError):
        ben.chat.completions.create(model=CLOUD_MODEL, messages=ASK, max_tokens=MAX_TOKENS)
    raw = ben.chat.completions.with_raw_response.create(model="auto", messages=ASK, max_tokens=4)

    assert raw.headers["x-switchyard-provider"] == LOCAL
    assert raw.parse().choices[0].message.content is not None
    assert raw.headers["x-switchyard-budget-remaining-team-usd"] == "0.0000000000"
    assert cloud.requests == []


def test_the_ollama_endpoints_refuse_a_call_a_budget_stops_with_the_same_429(empty_gateway, cloud, platform):
    spend_all_but("0.01")
    host = empty_gateway.base_url.removesuffix("/v1")
    ben = ollama.Client(host=host, headers={"Authorization": f"Bearer {platform['ben']}"}, timeout=30)

    with pytest.raises(ollama.ResponseError) as raised:
        ben.chat(model=CLOUD_MODEL, messages=ASK, stream=False, options={"num_predict": MAX_TOKENS})

    assert raised.value.status_code == 429
    assert "team platform's cloud budget: $0.0100 of $1.00 left this month" in raised.value.error
    assert cloud.requests == []


def test_a_streams_budget_headers_count_the_cloud_calls_this_process_made_just_before(empty_gateway, cloud, platform):
    """The headers a caller's stream starts with are remembered a few seconds (a local call spends no
    budget), but not past a cloud call: ben's own earlier stream and ana's call on the team's budget
    are in ben's next headers, as in ana's and as on the pages."""

    def streamed_headers(secret: str):
        with client(empty_gateway, secret).chat.completions.with_streaming_response.create(
            model=CLOUD_MODEL, messages=ASK, max_tokens=MAX_TOKENS, stream=True
        ) as response:
            "".join(chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices)
            return response.headers

    streamed_headers(platform["ben"])
    ana = client(empty_gateway, platform["ana"]).chat.completions.with_raw_response.create(
        model=CLOUD_MODEL, messages=ASK, max_tokens=MAX_TOKENS
    )
    ben = streamed_headers(platform["ben"])

    left = LIMIT - SPENT - 2 * REAL  # as ben's second stream starts
    assert ana.headers["x-switchyard-budget-remaining-team-usd"] == f"{left:.10f}"
    assert ben["x-switchyard-budget-remaining-team-usd"] == f"{left:.10f}"
    ben_id = get_user_model().objects.get(username="ben").pk
    team = next(status for status in budget.budget_overview(user_id=ben_id) if status.scope == "team")
    assert team.remaining_usd == left - REAL  # the pages, after the stream: the same figure


def test_the_ollama_answers_carry_the_remaining_budgets_as_the_openai_ones_do(empty_gateway, cloud, platform):
    host = empty_gateway.base_url.removesuffix("/v1")
    auth = {"Authorization": f"Bearer {platform['ben']}"}
    options = {"num_predict": MAX_TOKENS}
    answered = httpx.post(
        f"{host}/api/chat",
        json={"model": CLOUD_MODEL, "messages": ASK, "stream": False, "options": options},
        headers=auth,
        timeout=30,
    )
    with httpx.stream(
        "POST",
        f"{host}/api/generate",
        json={"model": CLOUD_MODEL, "prompt": ASK[0]["content"], "options": options},
        headers=auth,
        timeout=30,
    ) as streamed:
        streamed.read()

    assert answered.status_code == streamed.status_code == 200
    left = LIMIT - SPENT - REAL  # after the chat; the stream's headers are as it started
    assert answered.headers["x-switchyard-budget-remaining-team-usd"] == f"{left:.10f}"
    assert answered.headers["x-switchyard-budget-scope"] == "team"
    assert streamed.headers["x-switchyard-budget-remaining-team-usd"] == f"{left:.10f}"
