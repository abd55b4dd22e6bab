"""A provider that fails after part of a streamed answer was sent: the client keeps what it got and
the stream ends with an error event; no other provider is called, since its answer could not be
spliced onto the part already sent. Before the first piece, a failure falls back as usual."""

from __future__ import annotations

import openai
import pytest

from routing.models import CallOutcome, LedgerEntry
from routing.table import invalidate_routing_cache
from tests.factories import provider_create
from tests.gateway.test_models_and_outages import HELLO, client
from tests.routing.conftest_router import forget_health

NAMES = ["first", "second"]


@pytest.fixture
def two_upstreams(empty_gateway, fake_server):
    forget_health(NAMES)
    first, second = fake_server("openai"), fake_server("openai")
    provider_create("first", base_url=first.base_url, model="gpt-4o-mini", priority=1, request_timeout_s=30)
    provider_create("second", base_url=second.base_url, model="gpt-4o-mini", priority=2, request_timeout_s=30)
    invalidate_routing_cache()
    yield first, second
    forget_health(NAMES)


def test_a_failure_mid_stream_ends_the_stream_with_an_error_and_calls_no_other_provider(empty_gateway, two_upstreams):
    first, second = two_upstreams
    first.behave("stream_error")

    received = ""
    with pytest.raises(openai.APIError) as raised:
        for chunk in client(empty_gateway).chat.completions.create(
            model="auto", messages=HELLO, max_tokens=16, stream=True
        ):
            if chunk.choices:
                received += chunk.choices[0].delta.content or ""

    assert received  # the part sent before the failure
    assert "failed after part of the answer was sent" in str(raised.value)
    assert second.requests == []
    rows = list(LedgerEntry.objects.order_by("id"))
    assert [(row.provider.name, row.outcome) for row in rows] == [("first", CallOutcome.TRANSIENT)]


def test_a_failure_before_the_first_piece_falls_back_to_the_next_provider(empty_gateway, two_upstreams):
    first, second = two_upstreams
    first.behave("server_error")

    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client(empty_gateway).chat.completions.create(
            model="auto", messages=HELLO, max_tokens=16, stream=True
        )
        if chunk.choices
    ]

    assert "".join(pieces) == second.reply
    rows = list(LedgerEntry.objects.order_by("id"))
    assert [(row.provider.name, row.outcome) for row in rows] == [
        ("first", CallOutcome.TRANSIENT),
        ("second", CallOutcome.SUCCESS),
    ]
