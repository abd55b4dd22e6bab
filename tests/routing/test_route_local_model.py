"""End to end: real generations from the local model (llama.cpp + Gemma 3 270M) through route()."""

import re
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from routing.models import CallOutcome, LedgerEntry
from routing.router import RouteRequest, route
from routing.tokens import estimate_text_tokens
from tests.routing.conftest_router import ask, fresh_routing, make_provider, set_baseline  # noqa: F401

pytestmark = [pytest.mark.local_model, pytest.mark.django_db, pytest.mark.usefixtures("fresh_routing")]


@pytest.fixture
def local_gemma(local_model_server):
    """The local model as the team's first provider (free), with a cloud baseline ($3 / $15) never called."""
    make_provider(
        "local-gemma", base_url=local_model_server.base_url, model=local_model_server.model, request_timeout_s=120
    )
    claude = make_provider(
        "claude", kind="anthropic", base_url="http://127.0.0.1:9", model="claude-sonnet", is_local=False, priority=2,
        api_key_env="SWITCHYARD_TEST_UNSET_KEY", price=("3", "15"),
    )  # fmt: skip
    set_baseline(claude, "claude-sonnet")
    return local_model_server


def test_it_generates_locally_and_meters_the_servers_own_counts(local_gemma) -> None:
    result = route(ask("What is the capital of France? One word.", max_tokens=12, temperature=0))

    assert result.completion.text.strip()
    assert (result.provider, result.is_local, result.reason) == ("local-gemma", True, "priority 1, local")
    entry = LedgerEntry.objects.get()
    assert entry.outcome == CallOutcome.SUCCESS
    assert entry.prompt_tokens == result.completion.prompt_tokens > 0
    assert entry.completion_tokens == result.completion.completion_tokens > 0
    assert entry.tokens_estimated is False
    assert entry.latency_ms > 0
    assert entry.cost_usd == Decimal(0)
    assert entry.baseline_cost_usd > 0


def test_it_streams_locally_and_records_the_time_to_first_token(local_gemma) -> None:
    result = route(ask("Name one colour.", max_tokens=8, temperature=0, stream=True))

    entry = LedgerEntry.objects.get()
    assert result.completion.text.strip()
    assert 0 < entry.ttft_ms <= entry.latency_ms
    # llama-cpp-python's server sends no usage in a stream (include_usage is ignored): the ledger
    # holds the offline estimates (pinned in test_tokens.py), flagged as such.
    assert (result.completion.prompt_tokens, result.completion.completion_tokens) == (None, None)
    assert entry.tokens_estimated is True
    assert entry.prompt_tokens == 4 + 4  # "Name one colour." is 16 characters, plus the message's 4
    assert entry.completion_tokens == estimate_text_tokens(result.completion.text) > 0


def test_check_providers_reports_the_local_model_speed(local_gemma) -> None:
    out = StringIO()

    call_command("check_providers", "--max-tokens", "8", stdout=out)

    local = next(line for line in out.getvalue().splitlines() if " local-gemma " in line)
    # Its latency in ms, or in s when the loaded machine made the short generation slow.
    assert " up " in local and re.search(r" \d[\d.,]* m?s ", local) and "100%" in local


INSTRUCTIONS = (
    "You are Marcus, a senior backend engineer. Answer with one short Python function that uses type hints, "
    "validates its input, raises ValueError on bad input, has a docstring, and never prints anything. "
    "No prose before or after the code."
)  # 40 words


def test_the_system_prompt_reaches_a_model_whose_template_has_no_system_role(local_model_server) -> None:
    # register_local_model marks Gemma as taking no system prompt: its chat format drops system messages.
    call_command("register_local_model", "--base-url", local_model_server.base_url, "--model", local_model_server.model)
    question = [{"role": "user", "content": "Add two numbers."}]

    bare = route(RouteRequest(messages=question, max_tokens=1, temperature=0)).completion.prompt_tokens
    system = [{"role": "system", "content": INSTRUCTIONS}]
    instructed = route(RouteRequest(messages=system + question, max_tokens=1, temperature=0)).completion.prompt_tokens

    assert instructed - bare >= 40  # the 40 words arrived (dropped, the counts were equal: 14 and 14)


def test_the_demo_model_is_prompted_as_a_base_model_and_its_answer_opens_the_code_block(local_model_server) -> None:
    # Chat turns, this base model mostly repeats (BENCHMARKS.md, "The demo model"); a document that has
    # opened the answer's code block, it continues with code.
    call_command("register_local_model", "--base-url", local_model_server.base_url, stdout=StringIO())
    texts: list[str] = []
    request = RouteRequest(
        messages=[
            {"role": "system", "content": "You write Python. Reply with one ```python code block."},
            {"role": "user", "content": "A function that adds two numbers."},
        ],
        max_tokens=24,
        temperature=0,
        stream=True,
        on_text=texts.append,
        answer_start="```python\n",
    )

    result = route(request)

    assert result.completion.text.startswith("```python\n")
    assert len(result.completion.text) > len("```python\n")
    assert texts[0].startswith("```python\n")  # the live answer shows it from the first chunk
    assert "POST /v1/completions" in local_model_server.log_tail(5)
