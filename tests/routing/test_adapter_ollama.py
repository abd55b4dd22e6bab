"""The Ollama adapter against a fake Ollama host speaking the documented /api protocol."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import httpx
import pytest

from routing.providers import get_adapter
from routing.providers.base import ChatRequest, PermanentError, Problem, ProviderConfig, TransientError

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write a FastAPI endpoint"}]


def adapter(server, **overrides):
    settings = {"name": "ollama", "kind": "ollama", "base_url": server.base_url, "is_local": True, **overrides}
    return get_adapter(ProviderConfig(**settings))


def ask(server, *, stream=False, model="mistral:latest", **overrides):
    request = ChatRequest(model=model, messages=MESSAGES, stream=stream, max_tokens=64, temperature=0.2)
    return adapter(server, **overrides).chat(request)


def test_it_returns_the_text_and_the_counts_the_host_reports(fake_ollama):
    completion = ask(fake_ollama)

    assert completion.text == fake_ollama.reply
    assert completion.model == "mistral:latest"
    assert (completion.prompt_tokens, completion.completion_tokens) == (14, 8)
    assert completion.finish_reason == "stop"
    assert completion.raw_usage["eval_duration"] == 1_000_000_000
    assert completion.ttft_ms is None


def test_it_streams_the_reply_and_measures_the_time_to_first_token(fake_ollama):
    fake_ollama.behave("ok", delay=0.05, chunk_delay=0.02)

    completion = ask(fake_ollama, stream=True)

    assert completion.text == fake_ollama.reply
    assert (completion.prompt_tokens, completion.completion_tokens) == (14, 8)
    assert 50 <= completion.ttft_ms < completion.latency_ms
    assert completion.latency_ms >= 50 + 7 * 20


def test_it_passes_keep_alive_and_the_options(fake_ollama):
    ask(fake_ollama, keep_alive="30m")

    body = fake_ollama.requests[-1].json
    assert body["keep_alive"] == "30m"
    assert body["options"] == {"num_predict": 64, "temperature": 0.2}
    assert body["stream"] is False and body["messages"] == MESSAGES


def test_it_lists_the_models_installed_on_the_host(fake_ollama):
    fake_ollama.models = ["qwen2.5-coder:7b", "mistral"]

    assert adapter(fake_ollama).list_models() == ["qwen2.5-coder:7b", "mistral:latest"]


def own_adapter(server):
    """An adapter of this test's own (not the process's cached one), so nothing it remembers leaks out."""
    config = ProviderConfig(name="ollama", kind="ollama", base_url=server.base_url, is_local=True)
    return get_adapter(config, client=httpx.Client())


def test_it_can_serve_only_the_models_installed_on_the_host_named_with_or_without_their_tag(fake_ollama):
    fake_ollama.models = ["qwen2.5-coder:7b", "mistral"]
    ollama = own_adapter(fake_ollama)

    answers = [ollama.can_serve(name) for name in ("mistral", "mistral:latest", "qwen2.5-coder:7b", "llama3")]

    assert answers == [True, True, True, False]
    assert [request.path for request in fake_ollama.requests] == ["/api/tags"]  # asked once, remembered


def test_it_asks_the_host_again_after_the_configuration_changed(fake_ollama):
    ollama = own_adapter(fake_ollama)
    assert ollama.can_serve("llama3") is False

    fake_ollama.models = ["llama3"]
    ollama.forget()

    assert ollama.can_serve("llama3") is True
    assert [request.path for request in fake_ollama.requests] == ["/api/tags", "/api/tags"]


def test_it_asks_the_host_again_once_what_it_remembers_is_30_seconds_old(fake_ollama, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("routing.providers.ollama.time", SimpleNamespace(monotonic=lambda: clock[0]))
    ollama = own_adapter(fake_ollama)
    assert ollama.can_serve("llama3") is False
    fake_ollama.models = ["llama3"]

    clock[0] += 29.5
    assert ollama.can_serve("llama3") is False
    clock[0] += 0.5
    assert ollama.can_serve("llama3") is True

    assert [request.path for request in fake_ollama.requests] == ["/api/tags", "/api/tags"]


def test_it_cannot_tell_whether_a_host_that_does_not_answer_has_a_model():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = ProviderConfig(name="ollama", kind="ollama", base_url=closed, is_local=True, connect_timeout_s=1.0)

    assert get_adapter(config, client=httpx.Client()).can_serve("mistral") is None


def test_it_reports_a_busy_host_as_transient(fake_ollama):
    fake_ollama.behave("busy")

    with pytest.raises(TransientError) as error:
        ask(fake_ollama)

    assert error.value.status_code == 503
    assert error.value.message == "503 server busy, please try again. maximum pending requests exceeded"


@pytest.mark.parametrize(("mode", "status"), [("rate_limited", 429), ("server_error", 500)])
def test_it_reports_overload_and_server_errors_as_transient(fake_ollama, mode, status):
    fake_ollama.behave(mode)

    with pytest.raises(TransientError) as error:
        ask(fake_ollama, stream=True)

    assert error.value.status_code == status


@pytest.mark.parametrize(("mode", "status"), [("bad_request", 400), ("unauthorized", 401), ("forbidden", 403)])
def test_it_reports_refused_requests_as_permanent(fake_ollama, mode, status):
    fake_ollama.behave(mode)

    with pytest.raises(PermanentError) as error:
        ask(fake_ollama)

    assert error.value.status_code == status


def test_it_reports_a_model_that_is_not_pulled_as_permanent(fake_ollama):
    with pytest.raises(PermanentError) as error:
        ask(fake_ollama, model="llama3.3:70b")

    assert error.value.message == '404 model "llama3.3:70b" not found, try pulling it first'


def test_it_reports_a_timeout_as_transient_with_the_seconds(fake_ollama):
    fake_ollama.behave("ok", delay=2)

    with pytest.raises(TransientError, match=rf"^Ollama at {fake_ollama.base_url} timed out after 0\.3 s$"):
        ask(fake_ollama, request_timeout_s=0.3)


def test_it_bounds_a_stream_that_trickles_past_the_timeout(fake_ollama):
    fake_ollama.behave("ok", chunk_delay=0.1)

    with pytest.raises(TransientError, match=r"timed out after 0\.25 s"):
        ask(fake_ollama, stream=True, request_timeout_s=0.25)


def test_it_reports_a_host_that_is_down_as_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    config = ProviderConfig(name="down", kind="ollama", base_url=f"http://127.0.0.1:{port}", is_local=True)

    with pytest.raises(
        TransientError, match=rf"^Ollama at http://127\.0\.0\.1:{port} refused the connection$"
    ) as refused:
        get_adapter(config).chat(ChatRequest(model="m", messages=MESSAGES))
    assert refused.value.problem == Problem.REFUSED
    with pytest.raises(TransientError):
        get_adapter(config).list_models()


def test_it_reports_an_error_line_in_the_middle_of_a_stream_as_transient(fake_ollama):
    fake_ollama.behave("stream_error")

    with pytest.raises(TransientError, match=r"^stream broke: an error was encountered while running the model"):
        ask(fake_ollama, stream=True)


@pytest.mark.parametrize("stream", [True, False])
def test_it_reports_a_connection_dropped_mid_reply_as_transient(fake_ollama, stream):
    fake_ollama.behave("broken_stream")

    with pytest.raises(TransientError, match=r"^the connection broke mid-response$"):
        ask(fake_ollama, stream=stream)


def test_it_reports_a_body_that_is_not_json_as_transient(fake_ollama):
    fake_ollama.behave("invalid_json")

    with pytest.raises(TransientError, match="not valid JSON"):
        ask(fake_ollama)


def test_it_keeps_one_adapter_per_provider_until_its_settings_change(fake_ollama):
    first = adapter(fake_ollama)

    assert adapter(fake_ollama) is first
    assert adapter(fake_ollama, request_timeout_s=30) is not first


def test_it_reuses_the_connection_between_calls(fake_ollama):
    ports = set()
    for _ in range(3):
        ask(fake_ollama)
        ports.add(fake_ollama.requests[-1].client_port)

    assert len(ports) == 1


@pytest.mark.parametrize("stream", [True, False])
def test_it_reports_json_that_is_not_the_protocol_as_transient(fake_ollama, stream):
    fake_ollama.behave("wrong_shape")

    with pytest.raises(TransientError):
        ask(fake_ollama, stream=stream)
    with pytest.raises(TransientError, match="not in the expected format"):
        adapter(fake_ollama).list_models()


def test_it_serves_calls_from_several_threads_at_once_on_its_one_client(fake_ollama):
    fake_ollama.behave("ok", delay=0.2)

    with ThreadPoolExecutor(max_workers=4) as pool:
        completions = list(pool.map(lambda _: ask(fake_ollama), range(4)))

    assert [c.text for c in completions] == [fake_ollama.reply] * 4
    assert fake_ollama.max_in_flight == 4


def test_it_refuses_a_provider_kind_it_does_not_know():
    config = ProviderConfig(name="x", kind="bedrock", base_url="http://127.0.0.1:1", is_local=False)

    with pytest.raises(PermanentError, match="unknown provider kind 'bedrock'"):
        get_adapter(config)


def test_it_passes_top_p_stop_and_seed_as_options(fake_ollama):
    request = ChatRequest(model="mistral:latest", messages=MESSAGES, top_p=0.5, stop=("END",), seed=7)
    adapter(fake_ollama).chat(request)

    options = fake_ollama.requests[-1].json["options"]
    assert (options["top_p"], options["stop"], options["seed"]) == (0.5, ["END"], 7)
