"""Ollama's wire format, pure: requests read into the gateway's request, answers with Ollama's counts
and nanosecond durations, refusals by name."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from gateway import ollama_format as wire
from gateway.openai_format import ChatParams, OpenAIError
from routing.models import LedgerEntry
from routing.providers.base import AnswerFormat, ResponseFormat

NOW = dt.datetime(2026, 11, 30, 18, 0, 0, 123456, tzinfo=dt.UTC)


def body(**given) -> bytes:
    return json.dumps(given).encode()


def refusal(read, raw: bytes) -> str:
    with pytest.raises(wire.OllamaError) as raised:
        read(raw)
    assert raised.value.status == 400
    return raised.value.message


def test_a_chat_streams_unless_told_not_to_and_its_options_become_the_routed_request():
    params = wire.chat_params(
        body(
            model="auto",
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi", "thinking": "x"}],
            options={"temperature": 0.2, "top_p": 0.9, "seed": 7, "stop": "\n", "num_predict": 40, "num_ctx": 4096},
            keep_alive="5m",
        )
    )

    assert params == ChatParams(
        model="auto",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        max_tokens=40,
        temperature=0.2,
        top_p=0.9,
        stop=("\n",),
        seed=7,
        stream=True,
    )
    assert wire.chat_params(body(model="auto", messages=[], stream=False)).stream is False


def test_num_predict_minus_one_or_two_means_no_limit_of_the_callers():
    for unlimited in (-1, -2):
        assert wire.chat_params(body(model="m", options={"num_predict": unlimited})).max_tokens is None
    assert "options.num_predict" in refusal(wire.chat_params, body(model="m", options={"num_predict": 0}))


def test_generate_is_the_system_message_then_the_prompt_as_the_users():
    params = wire.generate_params(body(model="m", prompt="Why?", system="Be brief.", stream=False))

    assert params.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}]
    assert params.stream is False
    assert wire.generate_params(body(model="m")).messages == []  # Ollama's "load the model"


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"tools": [{"type": "function"}]}, "tools are not supported"),
        ({"think": True}, "think is not supported"),
        ({"format": "xml"}, 'invalid format: expected "json" or a JSON schema object, got "xml"'),
        ({"messages": [{"role": "user", "content": "hi", "images": ["aGk="]}]}, "images are not supported"),
        ({"messages": [{"role": "tool", "content": "42"}]}, "invalid messages[0].role"),
        ({"options": {"temperature": 7}}, "invalid options.temperature: expected a number from 0 to 2, got 7"),
        ({"options": {"stop": ["a", "b", "c", "d", "e"]}}, "invalid options.stop"),
        ({"stream": "yes"}, "invalid stream"),
    ],
)
def test_a_chat_the_router_cannot_honour_is_refused_by_name(given, words):
    assert words in refusal(wire.chat_params, body(model="auto", **given))


def test_the_ollama_package_defaults_are_accepted():
    # What ollama.Client.chat sends when nothing is set: an empty tools list, no format.
    params = wire.chat_params(body(model="auto", messages=[{"role": "user", "content": "hi"}], tools=[], stream=False))

    assert params.messages == [{"role": "user", "content": "hi"}]


def test_format_asks_for_json_or_an_answer_matching_a_schema():
    schema = {"type": "object", "properties": {"wet": {"type": "boolean"}}}

    as_json = wire.chat_params(body(model="auto", messages=[{"role": "user", "content": "hi"}], format="json"))
    as_schema = wire.generate_params(body(model="auto", prompt="hi", format=schema))
    as_text = wire.generate_params(body(model="auto", prompt="hi", format=""))

    assert as_json.response_format == ResponseFormat(AnswerFormat.JSON_OBJECT)
    assert as_schema.response_format == ResponseFormat(AnswerFormat.JSON_SCHEMA, schema=schema)
    assert as_text.response_format is None


@pytest.mark.parametrize("name", ["raw", "suffix", "template", "context", "images"])
def test_generate_refuses_what_needs_a_models_own_template_or_inputs(name):
    value = True if name == "raw" else ["x"] if name in ("context", "images") else "x"
    assert name in refusal(wire.generate_params, body(model="m", prompt="hi", **{name: value}))


def test_a_request_without_a_model_or_a_body_is_refused():
    assert refusal(wire.chat_params, b"") == "missing request body"
    assert refusal(wire.chat_params, b"{") == "invalid JSON in the request body: send a JSON object"
    assert refusal(wire.chat_params, body(messages=[])) == "model is required"
    assert refusal(wire.show_model, body()) == "model is required"
    assert wire.show_model(body(name="auto")) == "auto"


def test_a_service_refusal_keeps_its_status_and_an_unknown_model_is_said_as_ollama_says_it():
    unknown = OpenAIError(404, "The model `x` does not exist.", code="model_not_found")
    assert (wire.refused(unknown, model="x").status, wire.refused(unknown, model="x").body()) == (
        404,
        {"error": "model 'x' not found"},
    )
    limited = wire.refused(OpenAIError(429, "Slow down.", code="rate_limited"))
    assert (limited.status, limited.body()) == (429, {"error": "Slow down."})


def row(**given) -> LedgerEntry:
    fields = {"prompt_tokens": 12, "completion_tokens": 30, "latency_ms": 800, "ttft_ms": 50, "finish_reason": "length"}
    return LedgerEntry(**(fields | given))


def test_the_last_chat_object_carries_counts_and_nanosecond_durations():
    last = wire.final("chat", model="gemma3-270m", text="", entry=row(), upstream={}, total_ns=900_000_000, now=NOW)

    assert last == {
        "model": "gemma3-270m",
        "created_at": "2026-11-30T18:00:00.123456Z",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "length",
        "total_duration": 900_000_000,
        "load_duration": 0,
        "prompt_eval_count": 12,
        "prompt_eval_duration": 50_000_000,
        "eval_count": 30,
        "eval_duration": 750_000_000,
    }


def test_an_upstream_ollamas_own_durations_pass_through():
    upstream = {"load_duration": 5, "prompt_eval_duration": 6, "eval_duration": 7, "total_duration": 99}
    last = wire.final(
        "generate", model="m", text="Hi.", entry=row(finish_reason="stop"), upstream=upstream, total_ns=1, now=NOW
    )

    assert (last["response"], last["done_reason"]) == ("Hi.", "stop")
    assert (last["total_duration"], last["load_duration"], last["prompt_eval_duration"], last["eval_duration"]) == (
        1,
        5,
        6,
        7,
    )


def test_a_piece_is_one_ndjson_line():
    assert wire.line(wire.piece("chat", model="m", text="Hi", now=NOW)) == (
        b'{"model":"m","created_at":"2026-11-30T18:00:00.123456Z",'
        b'"message":{"role":"assistant","content":"Hi"},"done":false}\n'
    )
    assert wire.piece("generate", model="m", text="Hi", now=NOW)["response"] == "Hi"


def test_a_listed_name_has_ollamas_tag_shape():
    tag = wire.tag("auto")

    assert set(tag) == {"name", "model", "modified_at", "size", "digest", "details"}
    assert (tag["name"], tag["model"], tag["size"], len(tag["digest"])) == ("auto", "auto", 0, 64)
    assert tag["modified_at"] == "1970-01-01T00:00:00.000000Z"
