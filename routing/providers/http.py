"""What every HTTP adapter shares: one keep-alive client, timeouts, and turning failures into our errors.

No httpx exception leaves this module's callers: a transport failure, a timeout, a broken stream
or a body that is not JSON becomes a `TransientError`; an HTTP error status becomes transient
(408, 409, 425, 429, 5xx, Anthropic's 529) or permanent (every other 4xx). Messages are short and
human, never contain the API key, and leave out the provider's name (the router adds it).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from routing.providers.base import (
    ChatRequest,
    Completion,
    PermanentError,
    ProviderConfig,
    ProviderError,
    TransientError,
)

MAX_MESSAGE_CHARS = 240
TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})
KEEPALIVE = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=60)


class HTTPAdapter:
    """Base for one protocol. Subclasses implement `send_chat` and `fetch_models` with the helpers below."""

    def __init__(self, config: ProviderConfig, *, client: httpx.Client | None = None) -> None:
        self.config = config
        self.timeout = httpx.Timeout(config.request_timeout_s, connect=config.connect_timeout_s)
        # One client per provider: its pool keeps connections alive between calls.
        self.client = client or httpx.Client(timeout=self.timeout, limits=KEEPALIVE)

    def chat(self, request: ChatRequest) -> Completion:
        with self.errors():
            return self.send_chat(request)

    def list_models(self) -> list[str]:
        with self.errors():
            return self.fetch_models()

    def can_serve(self, model: str) -> bool | None:
        """Whether the host has `model` right now; None when this protocol cannot tell cheaply
        (the call itself then finds out). The router asks before every attempt, so it must be fast."""
        return None

    def forget(self) -> None:
        """Drop what this adapter remembers about its host (the routing configuration changed)."""

    def send_chat(self, request: ChatRequest) -> Completion:  # pragma: no cover - every protocol implements it
        raise NotImplementedError

    def fetch_models(self) -> list[str]:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        self.client.close()

    # -- keys ------------------------------------------------------------------------------
    def api_key(self, *, required: bool) -> str:
        """The key from the environment, read at call time so a rotated key is picked up without a restart."""
        name = self.config.api_key_env
        key = os.environ.get(name, "") if name else ""
        if required and not key:
            raise PermanentError(f"no key ({name} is not set)" if name else "no API key variable configured")
        return key

    # -- requests --------------------------------------------------------------------------
    def get_json(self, url: str, *, headers: dict[str, str] | None = None, key: str = "") -> Any:
        with self.errors(key):
            response = self.client.get(url, headers=headers, timeout=self.timeout)
            self.raise_for_status(response, key)
            return self.parse(response.content)

    def post_json(self, url: str, body: dict, *, headers: dict[str, str] | None = None, key: str = "") -> Any:
        with self.errors(key):
            response = self.client.post(url, json=body, headers=headers, timeout=self.timeout)
            self.raise_for_status(response, key)
            return self.parse(response.content)

    @contextmanager
    def stream_lines(
        self, url: str, body: dict, *, headers: dict[str, str] | None = None, key: str = ""
    ) -> Iterator[Iterator[str]]:
        """POST and yield the response's lines; the whole exchange is bounded by the request timeout."""
        deadline = time.monotonic() + self.config.request_timeout_s
        with (
            self.errors(key),
            self.client.stream("POST", url, json=body, headers=headers, timeout=self.timeout) as response,
        ):
            if response.status_code >= 400:
                response.read()
                self.raise_for_status(response, key)
            yield self._bounded(response.iter_lines(), deadline)

    def _bounded(self, lines: Iterator[str], deadline: float) -> Iterator[str]:
        for line in lines:
            if time.monotonic() > deadline:
                raise TransientError(f"timed out after {self.config.request_timeout_s:g} s")
            yield line

    @staticmethod
    def parse(content: bytes | str) -> Any:
        try:
            return json.loads(content)
        except ValueError:
            raise TransientError("the response was not valid JSON") from None

    # -- errors ----------------------------------------------------------------------------
    @contextmanager
    def errors(self, key: str = "") -> Iterator[None]:
        try:
            yield
        except ProviderError as error:
            error.message = scrub(error.message, key or self.api_key(required=False))
            error.args = (error.message,)
            raise
        except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as error:
            raise self.transport_error(error) from None
        except (KeyError, IndexError, TypeError, AttributeError):
            # Valid JSON in the wrong shape: not the protocol we expected (a proxy's page, another API).
            raise TransientError("the response was not in the expected format") from None

    def transport_error(self, error: Exception) -> ProviderError:
        if isinstance(error, httpx.ConnectTimeout):
            return TransientError(f"could not connect within {self.config.connect_timeout_s:g} s")
        if isinstance(error, httpx.TimeoutException):
            return TransientError(f"timed out after {self.config.request_timeout_s:g} s")
        if isinstance(error, httpx.ConnectError):
            refused = "refused" in str(error).lower()
            return TransientError("connection refused" if refused else "could not connect")
        if isinstance(error, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
            return TransientError("the connection broke mid-response")
        if isinstance(error, httpx.InvalidURL | httpx.UnsupportedProtocol):
            return PermanentError("the base URL is not a valid http(s) URL")
        return TransientError(f"HTTP failure ({type(error).__name__})")

    def raise_for_status(self, response: httpx.Response, key: str = "") -> None:
        if response.status_code < 400:
            return
        detail = scrub(self.error_detail(response), key)
        message = short(f"{response.status_code} {detail}".strip())
        status = response.status_code
        transient = status in TRANSIENT_STATUSES or status >= 500
        raise (TransientError if transient else PermanentError)(message, status_code=status)

    def error_detail(self, response: httpx.Response) -> str:
        """The protocol's own words for the error; subclasses know where they are in the body."""
        return short(response.text)


def scrub(text: str, key: str) -> str:
    return text.replace(key, "***") if key else text


def short(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def v1_url(base_url: str, path: str) -> str:
    """`https://api.openai.com` and `https://api.openai.com/v1` both name the same API."""
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return f"{base}/{path.lstrip('/')}"
