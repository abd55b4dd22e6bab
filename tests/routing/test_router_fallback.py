"""route() against the protocol fakes: falling back from one provider to the next, and what is recorded."""

import pytest

from routing.models import CallOutcome, LedgerEntry
from routing.router import NoProviderAvailable, RouteResult, route
from tests.routing.conftest_router import ask, fresh_routing, make_provider  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_routing")]


def rows() -> list[LedgerEntry]:
    return list(LedgerEntry.objects.order_by("attempt", "id"))


def test_it_answers_from_the_first_provider_and_records_why(fake_openai) -> None:
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini")

    result = route(
        ask(),
    )

    assert result.completion.text == fake_openai.reply
    assert (result.provider, result.model, result.is_local, result.reason) == (
        "local",
        "gpt-4o-mini",
        True,
        "priority 1, local",
    )
    [entry] = rows()
    assert (entry.outcome, entry.reason, entry.attempt) == (CallOutcome.SUCCESS, "priority 1, local", 1)


def test_it_falls_back_when_the_primary_times_out(fake_server) -> None:
    slow, spare = fake_server("openai_compatible"), fake_server("openai_compatible")
    slow.behave("ok", delay=3.0)
    make_provider("slow", base_url=slow.base_url, model="gpt-4o-mini", priority=1, request_timeout_s=0.5)
    make_provider("spare", base_url=spare.base_url, model="gpt-4o-mini", priority=2)

    result = route(ask())

    assert result.provider == "spare"
    first, second = rows()
    timed_out = f"the OpenAI-compatible server at {slow.base_url} timed out after 0.5 s"
    assert (first.provider.name, first.outcome, first.error) == ("slow", CallOutcome.TRANSIENT, timed_out)
    assert first.problem == "timeout"
    assert first.reason == "priority 1, local"
    assert first.latency_ms >= 400
    assert (second.provider.name, second.outcome, second.attempt) == ("spare", CallOutcome.SUCCESS, 2)
    assert second.reason == f"fallback: slow {timed_out}; priority 2, local"
    assert result.attempts == [first, second]


def test_it_falls_back_when_ollama_answers_503_busy(fake_ollama, fake_openai, monkeypatch) -> None:
    monkeypatch.setenv("SWITCHYARD_TEST_OPENAI_KEY", "sk-test-1234567890")
    fake_ollama.behave("busy")
    make_provider("ollama", kind="ollama", base_url=fake_ollama.base_url, model="mistral:latest", priority=1)
    make_provider(
        "openai",
        kind="openai",
        base_url=fake_openai.base_url,
        model="gpt-4o-mini",
        is_local=False,
        priority=2,
        api_key_env="SWITCHYARD_TEST_OPENAI_KEY",
        price=("0.15", "0.6"),
    )

    result = route(ask())

    assert (result.provider, result.is_local) == ("openai", False)
    busy, answered = rows()
    assert busy.outcome == CallOutcome.TRANSIENT
    assert busy.error.startswith("503")
    assert "server busy" in busy.error
    assert answered.reason.startswith("fallback: ollama 503")
    assert answered.reason.endswith("; priority 2, cloud")


def test_it_moves_on_after_a_permanent_error_and_records_it_as_permanent(fake_server) -> None:
    wrong, right = fake_server("openai_compatible"), fake_server("openai_compatible")
    make_provider("wrong", base_url=wrong.base_url, model="no-such-model", priority=1)
    make_provider("right", base_url=right.base_url, model="gpt-4o-mini", priority=2)

    result = route(ask())

    assert result.provider == "right"
    first, _ = rows()
    assert (first.outcome, first.error[:3]) == (CallOutcome.PERMANENT, "404")


def test_it_skips_an_ollama_model_that_is_not_installed_without_calling_it(fake_ollama, fake_openai) -> None:
    fake_ollama.models = ["qwen2.5-coder:7b"]
    make_provider("ollama", kind="ollama", base_url=fake_ollama.base_url, model="mistral", priority=1)
    make_provider("spare", base_url=fake_openai.base_url, model="gpt-4o-mini", priority=2)

    result = route(ask())

    assert result.provider == "spare"
    assert result.reason == "fallback: ollama has no mistral installed; priority 2, local"
    assert [r.path for r in fake_ollama.requests] == ["/api/tags"]
    assert [entry.provider.name for entry in rows()] == ["spare"]


def test_it_uses_an_installed_ollama_model_named_without_its_tag(fake_ollama) -> None:
    make_provider("ollama", kind="ollama", base_url=fake_ollama.base_url, model="mistral", priority=1)

    assert route(ask()).provider == "ollama"


def test_it_raises_with_every_reason_and_attempt_when_all_fail(fake_server) -> None:
    down, limited = fake_server("openai_compatible"), fake_server("openai_compatible")
    down.behave("server_error")
    limited.behave("rate_limited")
    make_provider("down", base_url=down.base_url, model="gpt-4o-mini", priority=1)
    make_provider("limited", base_url=limited.base_url, model="gpt-4o-mini", priority=2)

    with pytest.raises(NoProviderAvailable) as failed:
        route(ask())

    assert failed.value.reason.startswith("no provider could take the request: down: 500")
    assert "(transient); limited: 429" in failed.value.reason
    assert failed.value.attempts == rows()
    assert [entry.outcome for entry in rows()] == [CallOutcome.TRANSIENT, CallOutcome.TRANSIENT]


def test_it_records_time_to_first_token_when_streaming(fake_ollama) -> None:
    fake_ollama.behave("ok", chunk_delay=0.02)
    make_provider("ollama", kind="ollama", base_url=fake_ollama.base_url, model="mistral:latest")

    result = route(ask(stream=True))

    assert result.completion.text == fake_ollama.reply
    [entry] = rows()
    assert entry.ttft_ms is not None
    assert 0 <= entry.ttft_ms <= entry.latency_ms


def test_it_charges_the_attempt_with_the_callers_output_or_leaves_it_started(fake_openai) -> None:
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini")

    route(ask(), on_success=lambda result: None)
    [charged] = LedgerEntry.objects.all()
    assert charged.outcome == CallOutcome.SUCCESS

    def crash(result: RouteResult) -> None:
        raise RuntimeError("the caller could not save its output")

    with pytest.raises(RuntimeError):
        route(ask(), on_success=crash)
    # The call was made: its row stays, as started (the sweeper later marks it unknown), not charged.
    assert [entry.outcome for entry in LedgerEntry.objects.order_by("id")] == [CallOutcome.SUCCESS, CallOutcome.STARTED]
