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
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpx

from routing.providers.base import (
    AnswerFormat,
    ChatRequest,
    ChunkHook,
    Completion,
    PermanentError,
    Problem,
    ProviderConfig,
    ProviderError,
    TransientError,
    kind_name,
    unanswerable_format,
)
from routing.providers.deadline import Deadline
from routing.providers.wire import key_problem, retry_after, scrub, short, split_lines, without_credentials
from routing.rules import api_key_env_refusal, provider_endpoint_refusal

TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})
KEY_STATUSES = frozenset({401, 403})
# What the resolver says when a host name does not resolve (glibc, macOS, Windows).
NAME_NOT_RESOLVED = ("name or service not known", "name resolution", "nodename nor servname", "getaddrinfo failed")
KEEPALIVE = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=60)


class HTTPAdapter:
    """Base for one protocol. Subclasses implement `send_chat` and `fetch_models` with the helpers below."""

    # The structured answers (response_format) this protocol can be asked for; the plan skips the
    # provider for any other (routing.providers.answer_format_refusal).
    answer_formats: frozenset[AnswerFormat] = frozenset()

    def __init__(self, config: ProviderConfig, *, client: httpx.Client | None = None) -> None:
        self.config = config
        self.timeout = httpx.Timeout(config.request_timeout_s, connect=config.connect_timeout_s)
        # One client per provider: its pool keeps connections alive between calls.
        self.client = client or httpx.Client(timeout=self.timeout, limits=KEEPALIVE)

    def chat(self, request: ChatRequest, *, on_chunk: ChunkHook | None = None) -> Completion:
        """One completion; a streamed one calls `on_chunk` per event, which may cut it (CallCancelled)."""
        # The plan never sends such a request here; a direct caller gets a refusal rather than plain text.
        if refusal := unanswerable_format(self.config.kind, self.answer_formats, request.response_format):
            raise PermanentError(refusal)
        with self.errors():
            return self.send_chat(request, on_chunk=on_chunk)

    def list_models(self) -> list[str]:
        with self.errors():
            return self.fetch_models()

    def can_serve(self, model: str) -> bool | None:
        """Whether the host has `model` right now; None when this protocol cannot tell cheaply
        (the call itself then finds out). The router asks before every attempt, so it must be fast."""
        return None

    def forget(self) -> None:
        """Drop what this adapter remembers about its host (the routing configuration changed)."""

    def send_chat(
        self, request: ChatRequest, *, on_chunk: ChunkHook | None = None
    ) -> Completion:  # pragma: no cover - every protocol implements it
        raise NotImplementedError

    def fetch_models(self) -> list[str]:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        self.client.close()

    # -- keys ------------------------------------------------------------------------------
    def api_key(self, *, required: bool) -> str:
        """The key from the environment, read at call time so a rotated key is picked up without a restart."""
        name = self.config.api_key_env
        if refusal := api_key_env_refusal(name):
            # Stored before the rule, or under other settings: the variable is never read, let alone sent.
            if required:
                raise PermanentError(f"no key ({refusal})")
            return ""
        key = os.environ.get(name, "") if name else ""
        if required and not key:
            raise PermanentError(
                f"no key ({name} is not set)" if name else "no API key variable configured", problem=Problem.NO_KEY
            )
        if key and (problem := key_problem(key)):
            # Sent as a header it would fail deep in the HTTP client (or as an unreadable 401); say which variable.
            raise PermanentError(f"{name} is not a usable API key: {problem}")
        return key

    # -- requests --------------------------------------------------------------------------
    def get_json(self, url: str, *, headers: dict[str, str] | None = None, key: str = "") -> Any:
        with self.request("GET", url, headers=headers, key=key) as response:
            return self.parse(b"".join(response.chunks))

    def post_json(self, url: str, body: dict, *, headers: dict[str, str] | None = None, key: str = "") -> Any:
        with self.request("POST", url, body=body, headers=headers, key=key) as response:
            return self.parse(b"".join(response.chunks))

    @contextmanager
    def stream_lines(
        self, url: str, body: dict, *, headers: dict[str, str] | None = None, key: str = "", sse: bool = False
    ) -> Iterator[Iterator[str]]:
        """POST and yield the response's lines, split only where the protocol says (see `split_lines`).

        A caller that stops at the protocol's last event leaves the body's end unread (the chunked
        terminator, a trailing blank line): it is read here, so the connection goes back to the pool
        instead of being closed. The answer is complete by then: a tail that breaks or outlasts the
        deadline only costs the connection. A caller leaving with an exception (an error, a cancel)
        closes it.
        """
        with self.request("POST", url, body=body, headers=headers, key=key) as response:
            yield split_lines(response.chunks, sse=sse)
            with suppress(ProviderError, httpx.HTTPError):
                for _ in response.chunks:
                    pass

    @contextmanager
    def request(
        self, method: str, url: str, *, body: dict | None = None, headers: dict[str, str] | None = None, key: str = ""
    ) -> Iterator[Exchange]:
        """One exchange under a hard deadline of `request_timeout_s` from start to the last byte.

        httpx's read timeout bounds each read, not the whole: a body that trickles in, or a stream that
        keeps sending, would run on. A watchdog cuts the connection when the deadline passes, which
        ends a read blocked at that moment too.
        """
        if refusal := provider_endpoint_refusal(url):
            # Checked on every call, before anything is sent: the host's address may have changed since it was saved.
            raise PermanentError(refusal)
        deadline = Deadline(self.config.request_timeout_s)
        timeout = httpx.Timeout(self.config.request_timeout_s, connect=self.config.connect_timeout_s)
        try:
            with (
                self.errors(key),
                self.client.stream(method, url, json=body, headers=headers, timeout=timeout) as response,
                deadline.watching(response),
            ):
                if response.status_code >= 400:
                    self.raise_for_status(response, key, body=b"".join(deadline.bounded(response.iter_bytes())))
                yield Exchange(response, deadline.bounded(response.iter_bytes()))
        except ProviderError:
            if deadline.expired:
                raise self.timed_out() from None
            raise
        finally:
            deadline.hand_over()

    def timed_out(self) -> TransientError:
        return TransientError(
            f"{self.where} timed out after {self.config.request_timeout_s:g} s", problem=Problem.TIMEOUT
        )

    @property
    def where(self) -> str:
        """The other end, for messages about reaching it: "Ollama at http://localhost:11434"."""
        return f"{kind_name(self.config.kind)} at {without_credentials(self.config.base_url)}"

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
        except UnicodeError:
            # A header value httpx cannot encode (api_key() refuses such keys; this guards every other header).
            raise PermanentError("a request header holds characters HTTP cannot send") from None
        except (KeyError, IndexError, TypeError, AttributeError):
            # Valid JSON in the wrong shape: not the protocol we expected (a proxy's page, another API).
            raise TransientError("the response was not in the expected format") from None

    def transport_error(self, error: Exception) -> ProviderError:
        if isinstance(error, httpx.ConnectTimeout):
            return TransientError(
                f"{self.where} did not accept a connection within {self.config.connect_timeout_s:g} s",
                problem=Problem.UNREACHABLE,
            )
        if isinstance(error, httpx.TimeoutException):
            return self.timed_out()
        if isinstance(error, httpx.ConnectError):
            text = str(error).lower()
            if "refused" in text:
                return TransientError(f"{self.where} refused the connection", problem=Problem.REFUSED)
            if any(words in text for words in NAME_NOT_RESOLVED):
                host = httpx.URL(self.config.base_url).host
                return TransientError(
                    f"{self.where} could not be reached: the name {host} did not resolve", problem=Problem.UNREACHABLE
                )
            return TransientError(f"{self.where} could not be reached", problem=Problem.UNREACHABLE)
        if isinstance(error, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
            return TransientError("the connection broke mid-response")
        if isinstance(error, httpx.InvalidURL | httpx.UnsupportedProtocol):
            return PermanentError("the base URL is not a valid http(s) URL")
        return TransientError(f"HTTP failure ({type(error).__name__})")

    def raise_for_status(self, response: httpx.Response, key: str = "", *, body: bytes = b"") -> None:
        if response.status_code < 400:
            return
        status = response.status_code
        detail = scrub(self.error_detail(status, body), key)
        message = short(f"{status} {detail}".strip())
        transient = self.is_transient(status, body)
        raise (TransientError if transient else PermanentError)(
            message,
            status_code=status,
            retry_after=retry_after(response.headers.get("retry-after")),
            problem=self.problem_for(status, body),
        )

    def problem_for(self, status: int, body: bytes) -> Problem | None:
        """The problem an error status stands for, when it has a fix of its own."""
        return Problem.KEY_REJECTED if status in KEY_STATUSES else None

    def is_transient(self, status: int, body: bytes) -> bool:
        """Worth trying again later; subclasses know the permanent cases hidden behind a 429 or 5xx."""
        return status in TRANSIENT_STATUSES or status >= 500

    def error_detail(self, status: int, body: bytes) -> str:
        """The protocol's own words for the error; subclasses know where they are in the body."""
        return short(body.decode("utf-8", "replace"))


@dataclass
class Exchange:
    """A response whose headers have arrived, and its body as raw chunks under the call's deadline."""

    response: httpx.Response
    chunks: Iterator[bytes]


def elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def v1_url(base_url: str, path: str) -> str:
    """`https://api.openai.com` and `https://api.openai.com/v1` both name the same API."""
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return f"{base}/{path.lstrip('/')}"
