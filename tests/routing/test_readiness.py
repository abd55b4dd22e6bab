"""Issue 11 items 1-2: what stands between a provider and a working call, said as one sentence
with the fix, in the same words wherever it shows (routing.readiness.fix_sentence).

The failures come from the real adapters against the protocol fakes or a closed port, never
from hand-made error objects: the sentences are only as good as what the adapters report.
"""

from __future__ import annotations

import socket

import pytest

from routing.models import RoutingPolicy
from routing.providers import get_adapter
from routing.providers.base import ChatRequest, Problem, ProviderConfig, ProviderError
from routing.readiness import fix_sentence, probe
from routing.router import NoProviderAvailable, route
from routing.table import invalidate_routing_cache
from tests.routing.conftest_router import ask, fresh_routing, make_provider  # noqa: F401

MESSAGES = [{"role": "user", "content": "Hi"}]
START_OLLAMA = "start `ollama serve`, set OLLAMA_HOST, or run `bin/run --local-model`"


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def config(kind: str, base_url: str, *, local: bool = True, api_key_env: str = "", **fields) -> ProviderConfig:
    return ProviderConfig(
        name=kind, kind=kind, base_url=base_url, is_local=local, api_key_env=api_key_env, **fields
    )  # fmt: skip


def failure(provider: ProviderConfig, model: str = "m1") -> ProviderError:
    with pytest.raises(ProviderError) as failed:
        get_adapter(provider).chat(ChatRequest(model=model, messages=MESSAGES, max_tokens=8))
    return failed.value


def sentence(provider: ProviderConfig, model: str = "m1") -> str:
    error = failure(provider, model)
    return fix_sentence(provider, model, error.problem, error.message)


def test_an_ollama_host_that_refuses_the_connection_names_its_url_and_how_to_start_one() -> None:
    url = closed_port_url()

    assert sentence(config("ollama", url)) == f"Ollama at {url} refused the connection: {START_OLLAMA}"


def test_the_local_llama_cpp_server_that_refuses_says_to_start_it_with_bin_run() -> None:
    url = closed_port_url()

    assert sentence(config("openai_compatible", url)) == (
        f"the OpenAI-compatible server at {url} refused the connection: start it with `bin/run --local-model`"
    )


def test_a_host_name_that_does_not_resolve_is_named_with_the_url() -> None:
    url = "http://no-such-host.invalid:11434"

    assert sentence(config("ollama", url, connect_timeout_s=2)) == (
        f"Ollama at {url} could not be reached: the name no-such-host.invalid did not resolve: {START_OLLAMA}"
    )


def test_a_timeout_names_the_url(fake_ollama) -> None:
    fake_ollama.behave("ok", delay=2)

    text = sentence(config("ollama", fake_ollama.base_url, request_timeout_s=0.3), "mistral:latest")

    assert text.startswith(f"Ollama at {fake_ollama.base_url} timed out after 0.3 s: ")


def test_a_model_not_pulled_on_the_ollama_host_says_which_pull_to_run(fake_ollama) -> None:
    fake_ollama.models = ["qwen2.5-coder:7b"]

    text = sentence(config("ollama", fake_ollama.base_url), "mistral:latest")

    assert text == "mistral:latest is not pulled on the host: run `ollama pull mistral:latest` on it"


def test_a_cloud_key_the_provider_rejects_says_to_check_the_key(fake_anthropic, monkeypatch) -> None:
    monkeypatch.setenv("SWITCHYARD_TEST_ANTHROPIC_KEY", "sk-ant-test-0123456789abcdef")
    fake_anthropic.behave("unauthorized")
    claude = config("anthropic", fake_anthropic.base_url, local=False, api_key_env="SWITCHYARD_TEST_ANTHROPIC_KEY")

    assert sentence(claude, "claude-sonnet") == "SWITCHYARD_TEST_ANTHROPIC_KEY was rejected by Anthropic: check the key"


def test_a_cloud_key_that_is_not_set_says_where_to_put_it(monkeypatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    claude = config("anthropic", "https://api.anthropic.com", local=False, api_key_env="ANTHROPIC_API_KEY")

    assert sentence(claude, "claude-sonnet") == (
        "ANTHROPIC_API_KEY is not set: put it in .env or the environment of the worker"
    )


def test_a_url_with_credentials_is_named_without_them() -> None:
    port = closed_port_url().rsplit(":", 1)[1]

    text = sentence(config("ollama", f"http://admin:hunter2@127.0.0.1:{port}"))

    assert "hunter2" not in text
    assert text.startswith(f"Ollama at http://127.0.0.1:{port} refused the connection")


def test_a_probe_finds_a_refusing_host_and_a_missing_model_without_generating(fake_ollama) -> None:
    url = closed_port_url()
    fake_ollama.models = ["qwen2.5-coder:7b"]

    refused = probe(config("ollama", url), model="mistral:latest")
    missing = probe(config("ollama", fake_ollama.base_url), model="mistral:latest")
    fine = probe(config("ollama", fake_ollama.base_url), model="qwen2.5-coder:7b")

    assert (refused.problem, refused.error) == (Problem.REFUSED, f"Ollama at {url} refused the connection")
    assert (missing.problem, missing.error) == (Problem.MODEL_MISSING, "mistral:latest is not pulled on the host")
    assert fine.ok
    assert [request.path for request in fake_ollama.requests] == ["/api/tags", "/api/tags"]


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_routing")
def test_a_request_no_provider_could_serve_carries_every_fix_in_order(fake_ollama, monkeypatch) -> None:
    monkeypatch.delenv("SWITCHYARD_TEST_UNSET_KEY", raising=False)
    fake_ollama.models = ["qwen2.5-coder:7b"]
    url = closed_port_url()
    make_provider("ollama", kind="ollama", base_url=fake_ollama.base_url, model="mistral:latest", priority=1)
    make_provider("gemma", base_url=url, priority=2)
    make_provider(
        "claude", kind="anthropic", base_url=url, is_local=False, priority=3, api_key_env="SWITCHYARD_TEST_UNSET_KEY"
    )

    with pytest.raises(NoProviderAvailable) as none:
        route(ask())

    assert none.value.fix.splitlines() == [
        "mistral:latest is not pulled on the host: run `ollama pull mistral:latest` on it",
        f"the OpenAI-compatible server at {url} refused the connection: start it with `bin/run --local-model`",
        "SWITCHYARD_TEST_UNSET_KEY is not set: put it in .env or the environment of the worker",
    ]


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_routing")
def test_a_request_that_finds_the_host_cooling_down_still_carries_its_fix() -> None:
    url = closed_port_url()
    make_provider("ollama", kind="ollama", base_url=url, model="mistral:latest")
    RoutingPolicy.objects.update_or_create(pk=1, defaults={"failures_before_cooldown": 1, "cooldown_seconds": 60})
    invalidate_routing_cache()
    refused = f"Ollama at {url} refused the connection: {START_OLLAMA}"
    with pytest.raises(NoProviderAvailable) as first:
        route(ask())

    with pytest.raises(NoProviderAvailable) as second:
        route(ask())  # not called: it is cooling down after the first refusal

    assert first.value.fix == refused
    assert "ollama: cooling down for 60 s more" in second.value.reason
    assert second.value.attempts == []
    assert second.value.fix == refused
