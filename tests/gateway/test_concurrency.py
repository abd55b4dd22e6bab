"""Gateway calls run in a thread pool of their own (settings.SWITCHYARD_GATEWAY_CONCURRENCY), not
the event loop's default pool, which allows 6 on two cores: slow calls do not queue behind each other."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from routing.table import invalidate_routing_cache
from tests.factories import provider_create
from tests.gateway.test_models_and_outages import HELLO, client
from tests.routing.conftest_router import forget_health

CALLS = 12


def test_a_dozen_slow_calls_are_at_the_upstream_at_once(empty_gateway, fake_openai):
    forget_health(["upstream"])
    provider_create(
        "upstream", base_url=fake_openai.base_url, model="gpt-4o-mini", connect_timeout_s=5, request_timeout_s=30
    )
    invalidate_routing_cache()
    fake_openai.behave("ok", delay=1.5)
    openai_client = client(empty_gateway)

    def ask(_: int) -> str:
        answer = openai_client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, max_tokens=4)
        return answer.choices[0].message.content

    with ThreadPoolExecutor(CALLS) as pool:
        answers = list(pool.map(ask, range(CALLS)))

    assert len(answers) == CALLS and all(answers)
    assert fake_openai.max_in_flight == CALLS
    forget_health(["upstream"])
