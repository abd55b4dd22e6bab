"""pytest fixtures for the protocol fakes (registered in tests/conftest.py).

    def test_it_falls_back(fake_ollama, fake_openai):
        fake_ollama.behave("busy")
        ...base_url=fake_ollama.base_url...

`fake_ollama`, `fake_openai` and `fake_anthropic` are one fresh server each per test. For more
than one server of a kind (two Ollama hosts), use `fake_server`:

    first, second = fake_server("ollama"), fake_server("ollama")

Every server is stopped when the test ends. See tests/fakes/server.py for the behaviours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import FakeProvider

FAKES: dict[str, type[FakeProvider]] = {
    "ollama": FakeOllama,
    "openai": FakeOpenAI,
    "openai_compatible": FakeOpenAI,
    "anthropic": FakeAnthropic,
}


@pytest.fixture
def fake_server() -> Iterator[Callable[[str], FakeProvider]]:
    started: list[FakeProvider] = []

    def start(kind: str) -> FakeProvider:
        server = FAKES[kind]().start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def fake_ollama(fake_server: Callable[[str], FakeProvider]) -> FakeOllama:
    return fake_server("ollama")  # type: ignore[return-value]


@pytest.fixture
def fake_openai(fake_server: Callable[[str], FakeProvider]) -> FakeOpenAI:
    return fake_server("openai")  # type: ignore[return-value]


@pytest.fixture
def fake_anthropic(fake_server: Callable[[str], FakeProvider]) -> FakeAnthropic:
    return fake_server("anthropic")  # type: ignore[return-value]
