"""What a provider needs before it can take calls, in sentences a newcomer can act on.

`fix_sentence` is the one place these sentences are written. The dashboard's provider panel, the
providers API (`fix`), the admin's status column, `check_providers` and a failed run's `fix` all
come through it (by way of `routing.selectors.provider_state` and the router), so they say the
same words: "ANTHROPIC_API_KEY is not set: put it in .env or the environment of the worker".

`probe` asks a local host, for free, whether it answers and (Ollama) has the model pulled: a
model listing with short timeouts, no generation. The pages that say whether a provider can take
calls now use it; cloud providers are never probed (they are not free to ask, and a listing says
little about a key's quota).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace

import httpx

from routing.providers import get_adapter
from routing.providers.base import Problem, ProviderConfig, ProviderError, kind_name
from routing.providers.ollama import tagged
from routing.providers.wire import short, without_credentials
from routing.rules import api_key_env_refusal

PROBE_CONNECT_S = 1.0
PROBE_TIMEOUT_S = 2.0


def fix_sentence(config: ProviderConfig, model: str, problem: Problem | str | None, message: str = "") -> str:
    """What is wrong with the provider (`config`, serving `model`) and what to do about it, as one
    sentence; "" when the problem has no fix of ours.

    `message` is the adapter's own words for a failure to reach the provider (they name its URL).
    """
    if not problem:
        return ""
    env, name = config.api_key_env, kind_name(config.kind)
    where = f"{name} at {without_credentials(config.base_url)}"
    if problem == Problem.NO_KEY:
        if refusal := api_key_env_refusal(env):
            return f"{refusal}: name an allowed variable in the provider's api_key_env (admin), or allow this one"
        return f"{env} is not set: put it in .env or the environment of the worker"
    if problem == Problem.KEY_REJECTED:
        if env:
            return f"{env} was rejected by {name}: check the key"
        return f"{where} asks for an API key: name the variable that holds it in the provider's api_key_env (admin)"
    if problem == Problem.MODEL_MISSING:
        return f"{model} is not pulled on the host: run `ollama pull {model}` on it"
    if problem in (Problem.REFUSED, Problem.UNREACHABLE):
        return f"{message or where + ' could not be reached'}: {_how_to_reach(config)}"
    if problem == Problem.TIMEOUT:
        if config.is_local:
            todo = "it may be loading the model or busy; try again, or raise the provider's request timeout (admin)"
        else:
            todo = "try again later, or raise the provider's request timeout (admin)"
        return f"{message or where + ' timed out'}: {todo}"
    return ""


def _how_to_reach(config: ProviderConfig) -> str:
    if config.kind == "ollama":
        return "start `ollama serve`, set OLLAMA_HOST, or run `bin/run --local-model`"
    if config.kind == "openai_compatible" and config.is_local:
        return "start it with `bin/run --local-model`"
    if config.is_local:
        return "start the server, or correct its base URL (admin)"
    return "check this machine's network connection and proxy"


@dataclass(frozen=True)
class Probe:
    """What asking a host just now found: nothing wrong (`error` empty), or the failure."""

    error: str = ""
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return not self.error


def probe(config: ProviderConfig, *, model: str) -> Probe:
    """Does the host answer, and (Ollama) has it pulled `model`? One model listing, with short timeouts."""
    quick = replace(
        config,
        connect_timeout_s=min(config.connect_timeout_s, PROBE_CONNECT_S),
        request_timeout_s=min(config.request_timeout_s, PROBE_TIMEOUT_S),
    )
    # A client of its own: the router's live adapter keeps its settings (and its remembered models).
    try:
        names = get_adapter(quick, client=_client()).list_models()
    except ProviderError as error:
        return Probe(short(error.message), error.problem)
    if config.kind == "ollama" and tagged(model) not in {tagged(name) for name in names}:
        return Probe(f"{model} is not pulled on the host", Problem.MODEL_MISSING)
    return Probe()


_clients: dict[int, httpx.Client] = {}  # by process id: a forked process must not share its parent's sockets
_clients_lock = threading.Lock()


def _client() -> httpx.Client:
    """The probes' one client in this process: making one costs tens of milliseconds (its TLS
    context), more than the probe of a local host itself. Timeouts are given per request."""
    pid = os.getpid()
    with _clients_lock:
        client = _clients.get(pid)
        if client is None:
            _clients.clear()
            client = _clients[pid] = httpx.Client()
        return client
