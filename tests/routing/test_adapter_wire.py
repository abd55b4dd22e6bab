"""The adapters against exact bytes on the wire: the providers' documented bodies, cut at odd places.

Each stream below is what the provider's docs show, sent as raw UTF-8 (as the APIs do) with text
that holds U+2028, U+2029 and U+0085: JSON allows them unescaped inside strings, and a splitter that
treats them as line breaks cuts the JSON in half after the tokens were generated and paid for.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from routing.providers import get_adapter
from routing.providers.base import ChatRequest, PermanentError, ProviderConfig, TransientError
from routing.providers.wire import retry_after, split_lines
from tests.fakes.replay import ReplayServer, odd_pieces

TRICKY = "line\u2028sep para\u2029sep next\u0085line form\x0cfeed é"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}]


def raw(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False)


def sse(data: dict, event: str | None = None) -> str:
    return (f"event: {event}\r\n" if event else "") + f"data: {raw(data)}\r\n\r\n"


def openai_stream(text: str) -> bytes:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    parts = [
        sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}),
        sse({**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}),
        sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        sse({**base, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}}),
        "data: [DONE]\r\n\r\n",
    ]
    return "".join(parts).encode()


def anthropic_stream(text: str) -> bytes:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-sonnet-4-5",
        "stop_reason": None,
        "usage": {"input_tokens": 25, "output_tokens": 1},
    }
    parts = [
        sse({"type": "message_start", "message": message}, "message_start"),
        sse(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        ),
        sse({"type": "ping"}, "ping"),
        sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
            "content_block_delta",
        ),
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse(
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}},
            "message_delta",
        ),
        sse({"type": "message_stop"}, "message_stop"),
    ]
    return "".join(parts).encode()


def ollama_stream(text: str) -> bytes:
    lines = [
        {
            "model": "llama3.2",
            "created_at": "2026-11-30T12:00:00Z",
            "message": {"role": "assistant", "content": text},
            "done": False,
        },
        {
            "model": "llama3.2",
            "created_at": "2026-11-30T12:00:01Z",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "total_duration": 4883583458,
            "load_duration": 1334875,
            "prompt_eval_count": 26,
            "prompt_eval_duration": 342546000,
            "eval_count": 282,
            "eval_duration": 4535599000,
        },
    ]
    return "".join(raw(line) + "\n" for line in lines).encode()


STREAMS = {
    "openai": (openai_stream, "text/event-stream", 5),
    "anthropic": (anthropic_stream, "text/event-stream", 15),
    "ollama": (ollama_stream, "application/x-ndjson", 282),
}


def adapter(kind: str, url: str, **overrides):
    config = {"name": f"wire-{kind}", "kind": kind, "base_url": url, "is_local": kind == "ollama", **overrides}
    if kind != "ollama":
        config.setdefault("api_key_env", "WIRE_TEST_KEY")
    return get_adapter(ProviderConfig(**config))


def ask(kind: str, url: str, *, stream: bool = True, **overrides):
    return adapter(kind, url, **overrides).chat(ChatRequest(model="m", messages=MESSAGES, stream=stream, max_tokens=50))


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIRE_TEST_KEY", "sk-test-0123456789abcdef")


@pytest.mark.parametrize("kind", sorted(STREAMS))
def test_a_stream_keeps_text_with_unicode_line_separators_whole(kind: str):
    build, content_type, completion_tokens = STREAMS[kind]
    with ReplayServer(pieces=odd_pieces(build(TRICKY)), content_type=content_type) as server:
        completion = ask(kind, server.url)

    assert completion.text == TRICKY
    assert completion.completion_tokens == completion_tokens


@pytest.mark.parametrize("kind", sorted(STREAMS))
def test_a_stream_cut_after_every_byte_reads_the_same(kind: str):
    build, content_type, _ = STREAMS[kind]
    body = build("héllo wörld")
    with ReplayServer(pieces=[body[i : i + 1] for i in range(len(body))], content_type=content_type) as server:
        completion = ask(kind, server.url)

    assert completion.text == "héllo wörld"


def test_server_sent_events_may_end_lines_with_a_lone_cr():
    lines = list(
        split_lines(iter([b"event: a\r", b"data: 1\r\rdata: 2\n", b"\ndata: \xe2\x80", b"\xa8x\r\n"]), sse=True)
    )

    assert lines == ["event: a", "data: 1", "", "data: 2", "", "data: \u2028x"]


def test_ndjson_splits_on_newlines_only():
    lines = list(split_lines(iter([b'{"a": "x\r', b'y\xc2\x85z"}\r\n{"b": 1}']), sse=False))

    assert lines == ['{"a": "x\ry\u0085z"}', '{"b": 1}']


# -- keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [("sk-ant-clé-123", "non-ASCII"), ("sk-ant-123\n", "line break"), ("sk ant 123", "whitespace")],
)
@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_an_unusable_key_is_a_permanent_error_naming_its_variable(monkeypatch, kind, value, problem):
    monkeypatch.setenv("WIRE_TEST_KEY", value)
    with ReplayServer(pieces=[b"{}"]) as server:
        with pytest.raises(PermanentError) as raised:
            ask(kind, server.url, stream=False)

        assert server.requests == 0  # refused before anything was sent
    assert "WIRE_TEST_KEY is not a usable API key" in raised.value.message
    assert problem in raised.value.message
    assert value.strip() not in raised.value.message


# -- deadlines ---------------------------------------------------------------------------------


def test_a_body_that_trickles_in_stops_at_the_request_timeout():
    body = b'{"model": "m", "message": {"role": "assistant", "content": "slow"}, "done": true}'
    with ReplayServer(pieces=[body[i : i + 2] for i in range(0, len(body), 2)], gap=0.1) as server:
        started = time.monotonic()
        with pytest.raises(TransientError, match=r"timed out after 1 s"):
            ask("ollama", server.url, stream=False, request_timeout_s=1.0)
        took = time.monotonic() - started

    assert took < 1.5  # the trickle alone would take 4 s; each read was well under the timeout


@pytest.mark.parametrize("kind", sorted(STREAMS))
def test_a_stream_that_never_ends_stops_at_the_request_timeout(kind: str):
    build, content_type, _ = STREAMS[kind]
    body = build("x" * 400)
    head, rest = body[:200], body[200:]
    pieces = [head, *(rest[i : i + 1] for i in range(len(rest)))]
    with ReplayServer(pieces=pieces, gap=0.05, content_type=content_type) as server:
        started = time.monotonic()
        with pytest.raises(TransientError, match=r"timed out after 1 s"):
            ask(kind, server.url, request_timeout_s=1.0)
        took = time.monotonic() - started

    assert took < 1.5


def test_a_stream_that_stalls_stops_at_the_deadline_not_a_read_timeout_later():
    body = ollama_stream("stalled")
    with ReplayServer(pieces=[body[:40], body[40:]], gap=10.0, content_type="application/x-ndjson") as server:
        started = time.monotonic()
        with pytest.raises(TransientError, match=r"timed out after 1.5 s"):
            ask("ollama", server.url, request_timeout_s=1.5)
        took = time.monotonic() - started

    assert 1.4 < took < 2.0


def test_calls_under_a_deadline_start_no_thread_each(monkeypatch: pytest.MonkeyPatch):
    caller = threading.current_thread()
    started_by_caller: list[str] = []
    start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        if threading.current_thread() is caller:
            started_by_caller.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    with ReplayServer(pieces=[openai_stream("ok")], content_type="text/event-stream") as server:
        for _ in range(10):
            assert ask("openai", server.url).text == "ok"

    assert len(started_by_caller) <= 1  # the process's one watchdog, if no earlier call started it


def test_a_forked_process_still_cuts_a_slow_stream_at_the_deadline():
    body = ollama_stream("slow")
    pieces = [body[:40], body[40:80], body[80:]]  # at 0, 0.9 and 1.8 s: no read waits a whole second
    with ReplayServer(pieces=pieces, gap=0.9, content_type="application/x-ndjson") as server:
        with ReplayServer(pieces=[openai_stream("ok")], content_type="text/event-stream") as warm:
            ask("openai", warm.url)  # the parent's watchdog runs before the fork
        pid = os.fork()
        if pid == 0:  # a Celery prefork pool process starts like this
            code = 1
            try:
                started = time.monotonic()
                ask("ollama", server.url, request_timeout_s=1.0)
            except TransientError:
                code = 0 if time.monotonic() - started < 1.5 else 2  # cut at 1.0 s (+ the wake grace)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0


# -- errors ------------------------------------------------------------------------------------


def test_retry_after_is_read_in_seconds_and_as_a_date():
    assert retry_after("7") == 7.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: no wait
    assert retry_after("soon") is None
    assert retry_after(None) is None


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_a_rate_limit_carries_the_providers_retry_after(kind: str):
    if kind == "anthropic":
        body = {
            "type": "error",
            "error": {"type": "rate_limit_error", "message": "Number of requests has exceeded your rate limit"},
        }
    else:
        body = {
            "error": {"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit_exceeded"}
        }
    with ReplayServer(status=429, pieces=[raw(body).encode()], headers={"retry-after": "12"}, chunked=False) as server:
        with pytest.raises(TransientError) as raised:
            ask(kind, server.url, stream=False)

    assert raised.value.retry_after == 12.0
    assert raised.value.status_code == 429


def test_an_exhausted_openai_quota_is_permanent():
    body = {
        "error": {
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
    }
    with ReplayServer(status=429, pieces=[raw(body).encode()], chunked=False) as server:
        with pytest.raises(PermanentError, match="insufficient_quota: You exceeded your current quota"):
            ask("openai", server.url, stream=False)


def test_an_ollama_200_with_an_error_keeps_the_hosts_words():
    body = raw({"error": "model requires more system memory (5.6 GiB) than is available (2.1 GiB)"}).encode()
    with ReplayServer(pieces=[body], chunked=False) as server:
        with pytest.raises(TransientError, match=r"model requires more system memory \(5.6 GiB\)"):
            ask("ollama", server.url, stream=False)


# -- usage -------------------------------------------------------------------------------------


def test_anthropic_cache_writes_and_reads_are_counted_apart_and_in_the_prompt():
    # The usage block of Anthropic's prompt caching example (docs: "Prompt caching").
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 21,
            "cache_creation_input_tokens": 188086,
            "cache_read_input_tokens": 0,
            "output_tokens": 393,
        },
    }
    with ReplayServer(pieces=[raw(body).encode()], chunked=False) as server:
        completion = ask("anthropic", server.url, stream=False)

    assert completion.prompt_tokens == 21 + 188086
    assert (completion.cache_write_tokens, completion.cache_read_tokens) == (188086, 0)
    assert completion.completion_tokens == 393


def test_openai_cached_prompt_tokens_are_reported_as_cache_reads():
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "length"}],
        "usage": {
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920},
        },
    }
    with ReplayServer(pieces=[raw(body).encode()], chunked=False) as server:
        completion = ask("openai", server.url, stream=False)

    assert (completion.prompt_tokens, completion.cache_read_tokens) == (2006, 1920)
    assert completion.truncated
