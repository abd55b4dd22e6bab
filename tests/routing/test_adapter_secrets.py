"""An upstream's error words are stored and shown without the key, any piece of it, or anything key-shaped."""

from __future__ import annotations

import json

import pytest

from routing.providers import get_adapter
from routing.providers.base import ChatRequest, PermanentError, ProviderConfig
from routing.providers.wire import scrub
from tests.fakes.replay import ReplayServer

KEY = "sk-ant-api03-Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1JkLmNoPqRsTuVwXy-_AbCdEf"


def call_with_401(kind: str, message: str) -> PermanentError:
    body = {"type": "error", "error": {"type": "authentication_error", "message": message}}
    with ReplayServer(status=401, pieces=[json.dumps(body).encode()]) as server:
        config = ProviderConfig(
            name=kind, kind=kind, base_url=server.url, is_local=False, api_key_env="SECRETS_TEST_KEY"
        )
        with pytest.raises(PermanentError) as raised:
            get_adapter(config).chat(ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}]))
    return raised.value


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETS_TEST_KEY", KEY)


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_a_401_body_quoting_pieces_of_the_key_keeps_none_of_them(kind):
    message = f"invalid x-api-key: starts {KEY[:18]}..., ends ...{KEY[-20:]}; middle {KEY[20:34]}"

    error = call_with_401(kind, message)

    assert error.status_code == 401
    assert error.message == "401 authentication_error: invalid x-api-key: starts ***..., ends ...***; middle ***"
    for start in range(len(KEY) - 7):
        assert KEY[start : start + 8] not in error.message


@pytest.mark.parametrize(
    ("upstream", "kept"),
    [
        ("Incorrect API key provided: sk-proj-********************abcd.", "Incorrect API key provided: ***."),
        ("key sk-ant-api03-Zz9 rejected", "key *** rejected"),
        ("key sk-abcdefghijklmnop0123456789 rejected", "key *** rejected"),
        ("sent Authorization: Bearer tok.en-value_1 here", "sent Authorization: Bearer *** here"),
        ("secret 3f786850e387550fdab836ed7e6dc881de23001b leaked", "secret *** leaked"),
        ("token dGhpcyBpcyBhIHNlY3JldCBrZXkgdmFsdWUgMTIzNA== leaked", "token *** leaked"),
    ],
)
def test_key_shaped_text_that_is_not_this_key_is_hidden_too(upstream, kept):
    assert scrub(upstream, "sk-some-other-key-000000") == kept


@pytest.mark.parametrize(
    "upstream",
    [
        "model claude-sonnet-4-5-20250929 not found",
        "see https://platform.openai.com/account/api-keys for your keys",
        "the-deployment-named-something-quite-long-without-numbers is missing",
        "the sk-learn model is unknown",
    ],
)
def test_ordinary_error_words_stay_readable(upstream):
    assert scrub(upstream, KEY) == upstream


def test_an_error_echoing_the_key_in_another_case_keeps_none_of_it():
    # A key without a known prefix and shorter than the long-run rule: only its own pieces find it.
    short_key = "Zk3vQ9audit10Secret0x7Fq"
    error = scrub(f"invalid key {short_key.upper()} (lower: {short_key.lower()[3:15]})", short_key)

    assert error == "invalid key *** (lower: ***)"
